package pcapng

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const wiresharkHint = "apt-get install -y tshark (preseed wireshark-common/install-setuid false)"

// wireshark runs a Wireshark tool on a file and returns its output; it
// fails the test on an error or on anything said on stderr but the
// warning every run as root gets.
func wireshark(t *testing.T, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(nettest.RequireTool(t, tool, wiresharkHint), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var warn []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, "Running as user ") {
			warn = append(warn, l)
		}
	}
	if err != nil || len(warn) > 0 {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, strings.Join(warn, "\n"))
	}
	return string(out)
}

// TestTsharkReadsEveryField writes a trace of two hops on two nodes'
// agents, its frames out of time order, of lengths that need padding, one
// cut short of its length on the wire, the probe's request and answer
// commented, and checks every field of the file as Wireshark's own tools
// read it: tshark per frame (interface, nanosecond time, lengths, the
// bytes' MD5, comment), capinfos per interface (name, description, link
// type, snap length, resolution, filter, OS) and for the section (the
// application, hardware and OS that wrote it). The expected values are the
// input's, spelled out here.
func TestTsharkReadsEveryField(t *testing.T) {
	podA := &trace.AgentInfo{ID: "a", Role: "pod", Name: "default/pod-a", Node: "node-1", Hello: &wire.Hello{Snaplen: 192, Filter: "icmp or arp"}}
	node2 := &trace.AgentInfo{ID: "n", Role: "node", Name: "node-2", Node: "node-2", Hello: &wire.Hello{Snaplen: 65535}}
	eth0 := &trace.Iface{Name: "eth0", Role: "pod eth0", Agent: podA}
	veth := &trace.Iface{Name: "vethé1", Role: "host veth", Owner: "default/pod-b", Agent: node2}
	frame := func(n, fill int) []byte { return bytes.Repeat([]byte{byte(fill)}, n) }
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC) // 1767323045.123456789
	obs := []*trace.Obs{
		{Agent: node2, If: veth, P: &wire.Packet{TS: t0.Add(1001), Len: 98, Frame: frame(98, 2)}}, // 1767323045.123457790
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0, Len: 98, Frame: frame(98, 1)}},
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0.Add(2 * time.Second), Len: 1514, Frame: frame(54, 3)}}, // cut: 54 of 1514
		{Agent: node2, If: veth, P: &wire.Packet{TS: t0.Add(time.Second + 1), Len: 43, Frame: frame(43, 4)}},  // 1767323046.123456790
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0.Add(3 * time.Second), Len: 61, Frame: frame(61, 5)}},
	}
	tr := &trace.Trace{Packets: obs, Journeys: []*trace.Journey{
		{FP: "c0ffee", Probe: "icmp/7", Obs: []*trace.Obs{obs[1], obs[0]}},
		{FP: "c0ffee", Probe: "icmp/7", IsReply: true, Obs: []*trace.Obs{obs[3]}},
		{FP: "abcd", Obs: []*trace.Obs{obs[2], obs[4]}},
	}}
	file := filepath.Join(t.TempDir(), "trace.pcapng")
	var buf bytes.Buffer
	if n, err := Write(&buf, tr); err != nil || n != 5 {
		t.Fatalf("Write: %d frames, %v; want 5", n, err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	md5hex := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }
	out := wireshark(t, "tshark", "-r", file, "-o", "frame.generate_md5_hash:TRUE", "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_id", "-e", "frame.interface_name", "-e", "frame.interface_description",
		"-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.md5_hash", "-e", "frame.comment")
	want := []string{
		"0|node-1/default:pod-a/eth0|pod eth0|1767323045.123456789|98|98|" + md5hex(frame(98, 1)) +
			"|podtrace probe icmp/7 request · hop 1/2 node-1/default:pod-a/eth0 (pod eth0) · fp c0ffee",
		"1|node-2/root/vethé1|host veth of default/pod-b|1767323045.123457790|98|98|" + md5hex(frame(98, 2)) +
			"|podtrace probe icmp/7 request · hop 2/2 node-2/root/vethé1 (host veth) · fp c0ffee",
		"1|node-2/root/vethé1|host veth of default/pod-b|1767323046.123456790|43|43|" + md5hex(frame(43, 4)) +
			"|podtrace probe icmp/7 answer · hop 1/1 node-2/root/vethé1 (host veth) · fp c0ffee",
		"0|node-1/default:pod-a/eth0|pod eth0|1767323047.123456789|1514|54|" + md5hex(frame(54, 3)) + "|",
		"0|node-1/default:pod-a/eth0|pod eth0|1767323048.123456789|61|61|" + md5hex(frame(61, 5)) + "|",
	}
	if got := strings.TrimSpace(out); got != strings.Join(want, "\n") {
		t.Errorf("tshark reads\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}

	info := wireshark(t, "capinfos", file)
	for _, w := range []string{
		"File type:           Wireshark/... - pcapng",
		"File timestamp precision:  nanoseconds (9)",
		"Number of packets:   5",
		"Capture hardware:    " + runtime.GOARCH,
		"Capture oper-sys:    " + runtime.GOOS,
		"Capture application: kubectl-podtrace",
		"Number of interfaces in file: 2",
		`Interface #0 info:
                     Name = node-1/default:pod-a/eth0
                     Description = pod eth0
                     Encapsulation = Ethernet (1 - ether)
                     Capture length = 192
                     Time precision = nanoseconds (9)
                     Time ticks per second = 1000000000
                     Time resolution = 0x09
                     Filter string = icmp or arp
                     Operating system = Linux
                     Number of stat entries = 0
                     Number of packets = 3
`,
		`Interface #1 info:
                     Name = node-2/root/vethé1
                     Description = host veth of default/pod-b
                     Encapsulation = Ethernet (1 - ether)
                     Capture length = 65535
                     Time precision = nanoseconds (9)
                     Time ticks per second = 1000000000
                     Time resolution = 0x09
                     Operating system = Linux
                     Number of stat entries = 0
                     Number of packets = 2
`,
	} {
		if !strings.Contains(info, w) {
			t.Errorf("capinfos does not say\n%s\nit says\n%s", w, info)
		}
	}
	t.Logf("tshark and capinfos read %d bytes: 5 frames on 2 interfaces, 3 commented", buf.Len())
}

// TestTsharkReadsEmptyTrace: a trace without frames is a file that
// Wireshark opens, with one interface and no packets.
func TestTsharkReadsEmptyTrace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "empty.pcapng")
	var buf bytes.Buffer
	if n, err := Write(&buf, &trace.Trace{}); n != 0 || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	info := wireshark(t, "capinfos", file)
	for _, w := range []string{"Number of packets:   0", "Number of interfaces in file: 1", "Name = none", "Encapsulation = Ethernet (1 - ether)"} {
		if !strings.Contains(info, w) {
			t.Errorf("capinfos does not say %q; it says\n%s", w, info)
		}
	}
	if out := wireshark(t, "tshark", "-r", file); strings.TrimSpace(out) != "" {
		t.Errorf("tshark lists frames of an empty trace:\n%s", out)
	}
}

// TestSameBytesAsGopacketWriter: without comments, the file is byte for
// byte the one gopacket's pcapng writer (an independent writer, which the
// package used before) writes of the same section, interfaces and frames.
func TestSameBytesAsGopacketWriter(t *testing.T) {
	podA := &trace.AgentInfo{ID: "a", Role: "pod", Name: "default/pod-a", Node: "node-1", Hello: &wire.Hello{Snaplen: 192, Filter: "icmp"}}
	node := &trace.AgentInfo{ID: "n", Role: "node", Name: "node-1", Node: "node-1"}
	eth0 := &trace.Iface{Name: "eth0", Role: "pod eth0", Agent: podA}
	br := &trace.Iface{Name: "cni0", Role: "bridge", Agent: node}
	t0 := time.Unix(1700000000, 5)
	obs := []*trace.Obs{
		{Agent: node, If: br, P: &wire.Packet{TS: t0.Add(3), Len: 60, Frame: bytes.Repeat([]byte{7}, 42)}},
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0, Len: 41, Frame: bytes.Repeat([]byte{9}, 41)}},
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0.Add(4), Frame: []byte{1, 2}}}, // no length: the frame's
	}
	var got bytes.Buffer
	if n, err := Write(&got, &trace.Trace{Packets: obs, Journeys: []*trace.Journey{{FP: "f", Obs: obs}}}); n != 3 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}

	var want bytes.Buffer
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = "kubectl-podtrace"
	w, err := pcapgo.NewNgWriterInterface(&want, pcapgo.NgInterface{Name: "node-1/default:pod-a/eth0", Description: "pod eth0",
		Filter: "icmp", OS: "Linux", LinkType: layers.LinkTypeEthernet, TimestampResolution: 9, SnapLength: 192}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{Name: "node-1/root/cni0", Description: "bridge", OS: "Linux",
		LinkType: layers.LinkTypeEthernet, TimestampResolution: 9}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		ifc, len int
		o        *trace.Obs
	}{{0, 41, obs[1]}, {1, 60, obs[0]}, {0, 2, obs[2]}} {
		ci := gopacket.CaptureInfo{Timestamp: p.o.P.TS, CaptureLength: len(p.o.P.Frame), Length: p.len, InterfaceIndex: p.ifc}
		if err := w.WritePacket(ci, p.o.P.Frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("%d bytes differ from gopacket's %d:\n%s\nwant\n%s", got.Len(), want.Len(), hex.Dump(got.Bytes()), hex.Dump(want.Bytes()))
	}
	full := got.Len()

	// An empty trace: the section and one interface named none.
	got.Reset()
	want.Reset()
	if _, err := Write(&got, &trace.Trace{}); err != nil {
		t.Fatal(err)
	}
	w, err = pcapgo.NewNgWriterInterface(&want, pcapgo.NgInterface{Name: "none", LinkType: layers.LinkTypeEthernet, TimestampResolution: 9}, opts)
	if err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("empty trace: %s\nwant\n%s", hex.Dump(got.Bytes()), hex.Dump(want.Bytes()))
	}
	t.Logf("%d bytes of 3 frames and %d of an empty trace, the same as gopacket's writer's", full, got.Len())
}
