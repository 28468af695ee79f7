package pcapng

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

func TestWriteInterfacesTimestampsAndComments(t *testing.T) {
	podA := &trace.AgentInfo{ID: "a", Role: "pod", Name: "default/pod-a", Node: "node-1", Hello: &wire.Hello{Snaplen: 192, Filter: "icmp or arp"}}
	node := &trace.AgentInfo{ID: "n", Role: "node", Name: "node-1", Node: "node-1", Hello: &wire.Hello{Snaplen: 192}}
	eth0 := &trace.Iface{Name: "eth0", Role: "pod eth0", Agent: podA}
	veth := &trace.Iface{Name: "veth1234", Role: "host veth", Owner: "pod-a", Agent: node}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	frame := func(n int) []byte { return bytes.Repeat([]byte{byte(n)}, 42+n) } // odd lengths: padding
	obs := []*trace.Obs{
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0, Len: 42, Frame: frame(0)}},                         // ARP, no comment
		{Agent: node, If: veth, P: &wire.Packet{TS: t0.Add(7), Len: 43, Frame: frame(1)}},                  // ARP at the veth
		{Agent: podA, If: eth0, P: &wire.Packet{TS: t0.Add(time.Microsecond), Len: 1500, Frame: frame(3)}}, // probe, truncated
		{Agent: node, If: veth, P: &wire.Packet{TS: t0.Add(time.Microsecond + 1), Len: 1500, Frame: frame(3)}},
		{Agent: node, If: veth, P: &wire.Packet{TS: t0.Add(2 * time.Microsecond)}}, // no bytes: not written
	}
	tr := &trace.Trace{Packets: obs, Journeys: []*trace.Journey{
		{FP: "aaaa", Obs: obs[:2]},
		{FP: "beef", Probe: "icmp/1", Obs: obs[2:4]},
	}}
	var buf bytes.Buffer
	n, err := Write(&buf, tr)
	if err != nil || n != 4 {
		t.Fatalf("Write: %d frames, %v; want 4", n, err)
	}

	// gopacket's reader: interfaces, link type, nanosecond timestamps, lengths.
	r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	wantIf := []string{"node-1/default:pod-a/eth0", "node-1/root/veth1234"}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			if i != 4 {
				t.Fatalf("read %d packets; want 4", i)
			}
			break
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !ci.Timestamp.Equal(obs[i].P.TS) || !bytes.Equal(data, obs[i].P.Frame) || ci.Length != max(obs[i].P.Len, len(data)) {
			t.Errorf("packet %d: ts %v len %d/%d; want %v len %d", i, ci.Timestamp, ci.CaptureLength, ci.Length, obs[i].P.TS, obs[i].P.Len)
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantIf[i%2]; intf.Name != want || intf.LinkType != layers.LinkTypeEthernet || intf.TimestampResolution != 9 {
			t.Errorf("packet %d on %q (link %v, tsresol %d); want %q, Ethernet, 9", i, intf.Name, intf.LinkType, intf.TimestampResolution, want)
		}
	}
	if r.NInterfaces() != 2 {
		t.Errorf("%d interfaces; want one per hop: 2", r.NInterfaces())
	}

	// Packet comments (gopacket's reader does not return them): walk the blocks.
	var comments []string
	b := buf.Bytes()
	for len(b) >= 12 {
		typ, size := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		if size < 12 || int(size) > len(b) || size%4 != 0 || binary.LittleEndian.Uint32(b[size-4:]) != size {
			t.Fatalf("bad block: type %#x size %d", typ, size)
		}
		if typ == 6 { // EPB: options after the padded frame
			capLen := int(binary.LittleEndian.Uint32(b[20:]))
			opts := b[28+(capLen+3)&^3 : size-4]
			c := ""
			for len(opts) >= 4 {
				code, l := binary.LittleEndian.Uint16(opts), int(binary.LittleEndian.Uint16(opts[2:]))
				if code == 0 {
					break
				}
				if code == 1 {
					c = string(opts[4 : 4+l])
				}
				opts = opts[4+(l+3)&^3:]
			}
			comments = append(comments, c)
		}
		b = b[size:]
	}
	want := []string{"", "",
		"podtrace probe icmp/1 request · hop 1/2 node-1/default:pod-a/eth0 (pod eth0) · fp beef",
		"podtrace probe icmp/1 request · hop 2/2 node-1/root/veth1234 (host veth) · fp beef"}
	if strings.Join(comments, "|") != strings.Join(want, "|") {
		t.Errorf("comments\n%q\nwant\n%q", comments, want)
	}
}

func TestWriteEmptyTrace(t *testing.T) {
	var buf bytes.Buffer
	if n, err := Write(&buf, &trace.Trace{}); n != 0 || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	if _, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.DefaultNgReaderOptions); err != nil {
		t.Fatalf("an empty trace must still be a valid file: %v", err)
	}
}

// FuzzWriteReadBack: go test -run '^$' -fuzz '^FuzzWriteReadBack$' ./pkg/pcapng/
// Whatever the names, roles, filter, frame, length, snaplen and time
// (they come from agents), Write either says why it cannot or writes a
// file that gopacket's pcapng reader (an independent reader) reads back
// exactly: every frame with its bytes, time and length, on an interface
// named as HopName says.
func FuzzWriteReadBack(f *testing.F) {
	f.Add("node-1", "default/pod-a", "eth0", "pod eth0", "icmp or arp", bytes.Repeat([]byte{0xab}, 42), int64(1700000000123456789), 1500, 192, true)
	f.Add("", "pod-b", "veth1234", "host veth", "", []byte{1}, int64(0), 0, 0, false)
	f.Add("node-1", "pod-a", strings.Repeat("i", 70000), strings.Repeat("r", 70000), strings.Repeat("f", 70000), []byte{1}, int64(1), 60, 192, true)
	f.Add("n/1", "a/b/c", "cni0", "bridge", strings.Repeat("f", 300), make([]byte, 65535), int64(-1), 70000, 65535, true)
	f.Add("n", "p", "eth0", "pod eth0", "", []byte{1, 2, 3}, int64(math.MaxInt64), 1<<33, -1, true) // the last nanosecond; a length past 32 bits
	f.Fuzz(func(t *testing.T, node, pod, iface, role, filter string, frame []byte, tsNs int64, wireLen, snaplen int, probe bool) {
		agent := &trace.AgentInfo{ID: "a", Role: "pod", Name: pod, Node: node, Hello: &wire.Hello{Snaplen: snaplen, Filter: filter}}
		ifc := &trace.Iface{Name: iface, Role: role, Agent: agent}
		t0 := time.Unix(0, tsNs)
		obs := []*trace.Obs{
			{Agent: agent, If: ifc, P: &wire.Packet{TS: t0, Len: wireLen, Frame: frame}},
			{Agent: agent, If: ifc, P: &wire.Packet{TS: t0.Add(time.Microsecond), Len: wireLen, Frame: frame}},
		}
		j := &trace.Journey{FP: "fp", Obs: obs}
		if probe {
			j.Probe = "icmp/1"
		}
		var buf bytes.Buffer
		n, err := Write(&buf, &trace.Trace{Packets: obs, Journeys: []*trace.Journey{j}})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("an error of more than one line: %q", err)
			}
			return
		}
		// pcapng timestamps count nanoseconds from the Unix epoch in 64
		// bits: a frame timed before, or after what Go's time.Time holds
		// as nanoseconds (2262), cannot be written.
		var kept []*trace.Obs
		for _, o := range obs {
			if len(frame) > 0 && !o.P.TS.Before(time.Unix(0, 0)) && !o.P.TS.After(time.Unix(0, math.MaxInt64)) {
				kept = append(kept, o)
			}
		}
		if want := len(kept); n != want {
			t.Fatalf("wrote %d frames; want %d", n, want)
		}
		r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("the file does not open: %v", err)
		}
		for i := 0; ; i++ {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				if i != len(kept) {
					t.Fatalf("read %d frames; want %d", i, len(kept))
				}
				break
			}
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			o := kept[i]
			// The length on the wire is 32 bits in the file.
			wantLen := int(min(uint64(max(o.P.Len, len(o.P.Frame))), math.MaxUint32))
			if !bytes.Equal(data, o.P.Frame) || !ci.Timestamp.Equal(o.P.TS) || ci.Length != wantLen {
				t.Fatalf("frame %d: %d bytes at %v, length %d; want %d bytes at %v, length %d",
					i, len(data), ci.Timestamp, ci.Length, len(o.P.Frame), o.P.TS, wantLen)
			}
			intf, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				t.Fatal(err)
			}
			// An option holds at most 65,535 bytes (pcapng §3.5): a longer
			// name is cut.
			if name := HopName(o); !strings.HasPrefix(name, intf.Name) || len(intf.Name) < min(len(name), 0xfff0) {
				t.Fatalf("frame %d on %q; want %q", i, intf.Name, name)
			}
		}
	})
}
