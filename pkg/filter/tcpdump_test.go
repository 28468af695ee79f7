package filter

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// tcpdumpExprs are checked against tcpdump itself: the frames our program
// accepts must be exactly those tcpdump prints.
var tcpdumpExprs = []string{
	"",
	"host 10.0.0.1",
	"src host 10.0.0.1",
	"dst host 10.0.0.2",
	"host 10.9.0.1",
	"host fd00::1",
	"src host fd00::1",
	"dst host fe80::1",
	"ip host 10.0.0.1",
	"arp host 10.0.0.1",
	"rarp host 10.0.0.1",
	"src and dst host 10.0.0.1",
	"net 10.0.0.0/8",
	"net 10.1",
	"src net 192.168.0.0/16",
	"dst net 10.0.0.0/24",
	"net 10.0.0.0 mask 255.255.255.0",
	"net fd00::/16",
	"ip6 net fd00::/64",
	"port 80",
	"src port 80",
	"dst port 53",
	"port 8472",
	"portrange 1000-2000",
	"tcp portrange 20-25",
	"dst portrange 1990-2000",
	"tcp port 443",
	"udp src port 53",
	"udp dst port 123",
	"sctp port 9",
	"tcp port http",
	"tcp", "udp", "sctp", "icmp", "icmp6", "igmp", "arp", "rarp", "ip", "ip6",
	"vlan",
	"vlan 100",
	"vlan and tcp port 80",
	"vlan 100 and host 10.0.0.1",
	"vlan and vlan 100 and udp",
	"vlan and ip6",
	"vlan and arp",
	"ether host 02:00:00:00:00:0a",
	"ether src 0a:58:0a:f4:01:07",
	"ether dst 02:00:00:00:00:0b",
	"ether dst 02:00:00:00:00:0b and ether src 02:00:00:00:00:0a",
	"ether broadcast",
	"broadcast",
	"multicast",
	"ether multicast",
	"ip multicast",
	"ip6 multicast",
	"ether proto 0x88cc",
	"ether proto \\arp",
	"ip proto 1",
	"ip6 proto 17",
	"proto \\tcp",
	"proto 17",
	"host 10.0.0.1 or 10.0.0.2",
	"host 10.0.0.1 and not 10.0.0.2",
	"tcp port 80 or 443",
	"host 10.0.0.1 and not port 22",
	"not arp and not ip6",
	"(tcp or udp) and port 53",
	"tcp and port 80 or udp and port 53",
	"! tcp || udp",
	"host 10.0.0.1 && (port 22 || port 80)",
	"not (host 10.0.0.1 or host 10.0.0.2)",
	"tcp[tcpflags] & (tcp-syn|tcp-ack) != 0",
	"tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack = 0",
	"tcp[13] = 18",
	"icmp[icmptype] = icmp-echo",
	"icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
	"icmp6[icmp6type] = icmp6-neighborsolicit",
	"icmp6[0] = 128",
	"ip[0] & 0xf > 5",
	"ip[6:2] & 0x1fff != 0",
	"ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
	"udp[4:2] > 20",
	"tcp[((tcp[12] & 0xf0) >> 2):1] = 0x47",
	"ether[12:2] = 0x86dd",
	"ip6[6] = 58",
	"arp[7] = 2",
	"greater 100",
	"less 80",
	"len > 200",
	"len - 14 >= ip[2:2]",
	"(tcp[13] & 2) != 0 and ((tcp) and (port 80 or port 443))",
	"not (tcp[13] & 2 = 0)",
	"-ip[8] < -63 and ip[9] % 5 = 1",
	"ip[9] ^ 6 = 0 or 1 + 1 = 3",
	"udp[len - 60 - ((ip[0] & 0xf) << 2)] = 0",
	"geneve",
	"geneve 43",
	"geneve and icmp",
	"geneve and tcp port 80",
	"geneve and host 10.9.0.1",
	"geneve and arp",
	"geneve and ip6",
	"geneve and ether src 02:00:00:00:00:0a",
	"src host 10.0.0.1 and dst port 80",
	"udp and not port 53 and not port 123",
	"ip and not net 10.0.0.0/8",
	"port 80 or 22 or 443 or 53 or 123 or 9 or 25 or 8080 or 1000 or 2001 or 5353 or 6081 or 4789 or 8472 or 1 or 2 or 3",
}

// longExpr is a big expression whose jumps exceed 255 instructions.
func longExpr() string {
	var parts []string
	for i := 0; i < 40; i++ {
		parts = append(parts, fmt.Sprintf("host 10.0.%d.%d", i/8, i%8+1))
	}
	return "(" + strings.Join(parts, " or ") + ") and (port 80 or port 53 or portrange 1000-2000 or icmp)"
}

func ourMatches(t testing.TB, fs []frame, expr string) map[int]bool {
	t.Helper()
	prog, err := Compile(expr, 65535)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("%q: NewVM: %v", expr, err)
	}
	got := map[int]bool{}
	for i, f := range fs {
		n, err := vm.Run(f.data)
		if err != nil {
			t.Fatalf("%q: run frame %d: %v", expr, i, err)
		}
		if n > 0 {
			got[i] = true
		}
	}
	return got
}

func tcpdumpMatches(t testing.TB, path, expr string) map[int]bool {
	t.Helper()
	args := []string{"-tt", "-nn", "-r", path}
	if expr != "" {
		args = append(args, "--", expr)
	}
	cmd := exec.Command("tcpdump", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcpdump %q: %v: %s", expr, err, errb.String())
	}
	got := map[int]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		sec, _, ok := strings.Cut(line, ".")
		if !ok {
			continue
		}
		s, err := strconv.ParseInt(sec, 10, 64)
		if err != nil || s < pcapEpoch {
			continue
		}
		got[int(s-pcapEpoch)] = true
	}
	return got
}

func diff(a, b map[int]bool) []int {
	var d []int
	for k := range a {
		if !b[k] {
			d = append(d, k)
		}
	}
	sort.Ints(d)
	return d
}

// needTcpdump fails the test under `make test` when tcpdump is missing:
// it is the only check of which frames a program accepts.
func needTcpdump(t *testing.T) {
	t.Helper()
	nettest.RequireTool(t, "tcpdump", "apt-get install -y tcpdump")
}

func TestAgainstTcpdump(t *testing.T) {
	needTcpdump(t)
	fs := buildFrames(t)
	path := writePcap(t, fs)
	all := tcpdumpMatches(t, path, "")
	if len(all) != len(fs) {
		t.Fatalf("tcpdump read %d of %d frames", len(all), len(fs))
	}
	exprs := append(append([]string(nil), tcpdumpExprs...), longExpr())
	for _, expr := range exprs {
		want := tcpdumpMatches(t, path, expr)
		got := ourMatches(t, fs, expr)
		if extra, missing := diff(got, want), diff(want, got); len(extra)+len(missing) > 0 {
			t.Errorf("%q: we also match frames %v, and miss frames %v (tcpdump matches %d)", expr, extra, missing, len(want))
		}
		if testing.Verbose() {
			t.Logf("%q: %d frames", expr, len(want))
		}
	}
	t.Logf("%d frames, %d expressions agree with tcpdump", len(fs), len(exprs))
}

// vxlanExprs are VXLAN expressions, which tcpdump does not know. The
// expectation for "vxlan and X" is derived from tcpdump: the outer test
// is "udp dst port 4789 or udp dst port 8472" (tcpdump) and X is run by
// tcpdump on the inner frames.
var vxlanExprs = []struct {
	expr  string
	ports string // tcpdump expression for the outer test
	vni   int    // -1: any
	inner string // tcpdump expression for the inner frame
}{
	{"vxlan", "udp dst port 4789 or udp dst port 8472", -1, ""},
	{"vxlan port 4790", "udp dst port 4790", -1, ""},
	{"vxlan 42", "udp dst port 4789 or udp dst port 8472", 42, ""},
	{"vxlan port 8472 43", "udp dst port 8472", 43, ""},
	{"vxlan and tcp port 80", "udp dst port 4789 or udp dst port 8472", -1, "tcp port 80"},
	{"vxlan and icmp", "udp dst port 4789 or udp dst port 8472", -1, "icmp"},
	{"vxlan and host 10.9.0.1", "udp dst port 4789 or udp dst port 8472", -1, "host 10.9.0.1"},
	{"vxlan and udp dst port 53", "udp dst port 4789 or udp dst port 8472", -1, "udp dst port 53"},
	{"vxlan and arp", "udp dst port 4789 or udp dst port 8472", -1, "arp"},
	{"vxlan and ip6 and tcp", "udp dst port 4789 or udp dst port 8472", -1, "ip6 and tcp"},
	{"vxlan and ether src 0a:58:0a:f4:01:07", "udp dst port 4789 or udp dst port 8472", -1, "ether src 0a:58:0a:f4:01:07"},
	{"vxlan and tcp[tcpflags] & tcp-syn != 0", "udp dst port 4789 or udp dst port 8472", -1, "tcp[tcpflags] & tcp-syn != 0"},
	{"vxlan and not tcp", "udp dst port 4789 or udp dst port 8472", -1, "not tcp"},
	{"vxlan 43 and (tcp or icmp)", "udp dst port 4789 or udp dst port 8472", 43, "tcp or icmp"},
}

func TestVXLAN(t *testing.T) {
	needTcpdump(t)
	fs := buildFrames(t)
	path := writePcap(t, fs)
	// The inner frame of every UDP datagram, as VXLAN would see it.
	var inner []frame
	var innerIdx []int
	for i, f := range fs {
		p := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.Default)
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && len(u.Payload) >= 8 {
			inner = append(inner, frame{data: u.Payload[8:]})
			innerIdx = append(innerIdx, i)
		}
	}
	innerPath := writePcap(t, inner)
	pos := map[int]int{}
	for j, i := range innerIdx {
		pos[i] = j
	}
	for _, tc := range vxlanExprs {
		outer := tcpdumpMatches(t, path, tc.ports)
		innerOK := map[int]bool{}
		if tc.inner == "" {
			for _, i := range innerIdx {
				innerOK[i] = true
			}
		} else {
			for j := range tcpdumpMatches(t, innerPath, tc.inner) {
				innerOK[innerIdx[j]] = true
			}
		}
		want := map[int]bool{}
		for i := range outer {
			if _, ok := pos[i]; !ok || !innerOK[i] {
				continue
			}
			if tc.vni >= 0 {
				// The VNI is in bytes 4..6 of the VXLAN header, just before
				// the inner frame.
				d := fs[i].data
				h := d[len(d)-len(inner[pos[i]].data)-8:]
				if int(h[4])<<16|int(h[5])<<8|int(h[6]) != tc.vni {
					continue
				}
			}
			want[i] = true
		}
		if len(want) == 0 {
			t.Errorf("%q: expectation matches no frame", tc.expr)
		}
		got := ourMatches(t, fs, tc.expr)
		if extra, missing := diff(got, want), diff(want, got); len(extra)+len(missing) > 0 {
			t.Errorf("%q: we also match frames %v, and miss frames %v (want %d)", tc.expr, extra, missing, len(want))
		}
	}
	// A hand-written check: "vxlan" matches every frame built with VXLAN
	// to ports 4789 and 8472, and none of those to port 4790.
	got := ourMatches(t, fs, "vxlan")
	for i, f := range fs {
		if (f.vxport == 4789 || f.vxport == 8472) != got[i] && f.vxport != 0 {
			t.Errorf("vxlan: frame %d (VXLAN to port %d): matched=%v", i, f.vxport, got[i])
		}
	}
}
