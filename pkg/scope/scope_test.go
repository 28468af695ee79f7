package scope

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"github.com/podtrace/kubectl-podtrace/pkg/filter"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// The frames of a small world, built by hand: pod A (10.1.0.5) probes pod
// B (10.1.0.7); G (169.254.1.1) is A's gateway, V (192.168.0.2) a remote
// VTEP, R (10.1.0.1) a router on the way, X (10.1.0.9) another pod.
const (
	A, B, G, V, R, X = "10.1.0.5", "10.1.0.7", "169.254.1.1", "192.168.0.2", "10.1.0.1", "10.1.0.9"
	probeID          = 40000 // ICMP id, or first source port
	appPort          = 40999 // an application's source port
)

var macA, macB = net.HardwareAddr{2, 0, 0, 0, 0, 5}, net.HardwareAddr{2, 0, 0, 0, 0, 7}

func ser(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ip4(src, dst string, p layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 1, Protocol: p, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func echoFrame(t *testing.T, src, dst string, typ uint8, id uint16) []byte {
	return ser(t, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}, gopacket.Payload("podtrace"))
}

func udpFrame(t *testing.T, src, dst string, sport, dport int) []byte {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	ip := ip4(src, dst, layers.IPProtocolUDP)
	_ = u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload("x"))
}

func tcpFrame(t *testing.T, src, dst string, sport, dport int) []byte {
	c := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1000}
	ip := ip4(src, dst, layers.IPProtocolTCP)
	_ = c.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, c)
}

// icmpErr is an ICMP error from `from` to the quoted packet's source,
// quoting the first 28 bytes of quoted's IP packet (RFC 792: the IP header
// and the first 8 bytes of its data).
func icmpErr(t *testing.T, from string, typ, code uint8, quoted []byte) []byte {
	q := quoted[14:]
	if len(q) > 28 {
		q = q[:28]
	}
	src := net.IP(quoted[14+12 : 14+16]).String()
	return ser(t, eth(layers.EthernetTypeIPv4), ip4(from, src, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, gopacket.Payload(q))
}

func arpFrame(t *testing.T, op uint16, sender, target string) []byte {
	return ser(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: op, SourceHwAddress: macA, SourceProtAddress: net.ParseIP(sender).To4(),
			DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(target).To4()})
}

// vxlan wraps an inner frame in VXLAN (port 8472, as flannel) between two
// VTEPs.
func vxlan(t *testing.T, inner []byte) []byte {
	u := &layers.UDP{SrcPort: 51000, DstPort: 8472}
	ip := ip4("192.168.0.1", V, layers.IPProtocolUDP)
	_ = u.SetNetworkLayerForChecksum(ip)
	hdr := []byte{0x08, 0, 0, 0, 0, 0, 1, 0} // VNI 1
	return ser(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(append(hdr, inner...)))
}

func passes(t *testing.T, expr string, frame []byte) bool {
	t.Helper()
	prog, err := filter.Compile(expr, 192)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestProbeScopePassesTheProbeAndNothingElse(t *testing.T) {
	icmpSpec := &wire.ProbeSpec{Proto: "icmp", Dst: B, Count: 1, ID: probeID}
	udpSpec := &wire.ProbeSpec{Proto: "udp", Dst: B, Port: 8081, Count: 3, ID: probeID}
	tcpSpec := &wire.ProbeSpec{Proto: "tcp", Dst: B, Port: 8080, Count: 1, ID: probeID}
	resolved := []string{G, V}

	probeUDP := udpFrame(t, A, B, probeID+2, 8081)
	appUDP := udpFrame(t, A, B, appPort, 8081)
	for _, c := range []struct {
		name  string
		spec  *wire.ProbeSpec
		frame []byte
		want  bool
	}{
		{"echo request of the probe", icmpSpec, echoFrame(t, A, B, 8, probeID), true},
		{"echo reply of the probe", icmpSpec, echoFrame(t, B, A, 0, probeID), true},
		{"echo of another id between the same pods", icmpSpec, echoFrame(t, A, B, 8, probeID+1), false},
		{"echo reply of another id", icmpSpec, echoFrame(t, B, A, 0, 7), false},
		{"echo of the probe's id to another pod", icmpSpec, echoFrame(t, A, X, 8, probeID), false},
		{"time exceeded quoting the probe", icmpSpec, icmpErr(t, R, 11, 0, echoFrame(t, A, B, 8, probeID)), true},
		{"time exceeded quoting another echo", icmpSpec, icmpErr(t, R, 11, 0, echoFrame(t, A, B, 8, 9)), false},
		{"the probe inside VXLAN", icmpSpec, vxlan(t, echoFrame(t, A, B, 8, probeID)), true},
		{"another echo inside VXLAN", icmpSpec, vxlan(t, echoFrame(t, A, B, 8, 9)), false},
		{"UDP app traffic inside VXLAN", icmpSpec, vxlan(t, appUDP), false},

		{"third UDP probe", udpSpec, probeUDP, true},
		{"answer to the third UDP probe", udpSpec, udpFrame(t, B, A, 8081, probeID+2), true},
		{"UDP app traffic to the probe's port", udpSpec, appUDP, false},
		{"UDP app traffic back from the probe's port", udpSpec, udpFrame(t, B, A, 8081, appPort), false},
		{"UDP from a port past the probes'", udpSpec, udpFrame(t, A, B, probeID+3, 8081), false},
		{"UDP from the probe's port to another port", udpSpec, udpFrame(t, A, B, probeID, 8082), false},
		{"port unreachable quoting a UDP probe", udpSpec, icmpErr(t, B, 3, 3, probeUDP), true},
		{"port unreachable quoting app traffic", udpSpec, icmpErr(t, B, 3, 3, appUDP), false},
		{"port unreachable quoting the reverse flow", udpSpec, icmpErr(t, A, 3, 3, udpFrame(t, B, A, probeID, 8081)), false},

		{"TCP SYN of the probe", tcpSpec, tcpFrame(t, A, B, probeID, 8080), true},
		{"TCP answer to the probe", tcpSpec, tcpFrame(t, B, A, 8080, probeID), true},
		{"TCP app stream to the probe's port", tcpSpec, tcpFrame(t, A, B, appPort, 8080), false},
		{"UDP from the TCP probe's ports", tcpSpec, udpFrame(t, A, B, probeID, 8080), false},

		{"ARP who-has B from A", icmpSpec, arpFrame(t, 1, A, B), true},
		{"ARP is-at from B", icmpSpec, arpFrame(t, 2, B, A), true},
		{"ARP for A's gateway", icmpSpec, arpFrame(t, 1, A, G), true},
		{"ARP for the remote VTEP from the node", icmpSpec, arpFrame(t, 1, "192.168.0.1", V), true},
		{"ARP between two other hosts", icmpSpec, arpFrame(t, 1, X, R), false},
		{"ARP inside VXLAN", icmpSpec, vxlan(t, arpFrame(t, 1, A, B)), true},
	} {
		expr, err := Probe(A, B, c.spec, resolved)
		if err != nil {
			t.Fatal(err)
		}
		if got := passes(t, expr, c.frame); got != c.want {
			t.Errorf("%s (%s probe): passes %v, want %v", c.name, c.spec.Proto, got, c.want)
		}
	}
}

func ip6Frame(t *testing.T, src, dst string, next layers.IPProtocol, ls ...gopacket.SerializableLayer) []byte {
	ip := &layers.IPv6{Version: 6, NextHeader: next, HopLimit: 64, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	for _, l := range ls {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			_ = c.SetNetworkLayerForChecksum(ip)
		}
	}
	return ser(t, append([]gopacket.SerializableLayer{eth(layers.EthernetTypeIPv6), ip}, ls...)...)
}

func TestProbeScopeIPv6(t *testing.T) {
	const a6, b6, r6, x6 = "fd00::5", "fd00::7", "fd00::1", "fd00::9"
	spec := &wire.ProbeSpec{Proto: "icmp", Dst: b6, Count: 1, ID: probeID}
	echo := func(src, dst string, typ uint8, id uint16) []byte {
		return ip6Frame(t, src, dst, layers.IPProtocolICMPv6,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)},
			&layers.ICMPv6Echo{Identifier: id, SeqNumber: 1}, gopacket.Payload("podtrace"))
	}
	ns := func(src, dst, target string) []byte {
		return ip6Frame(t, src, dst, layers.IPProtocolICMPv6,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(135, 0)},
			&layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target)})
	}
	// Time exceeded quoting the probe: 4 unused bytes, then the packet.
	req := echo(a6, b6, 128, probeID)
	quoted := append([]byte{0, 0, 0, 0}, req[14:]...)
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"echo request of the probe", req, true},
		{"echo reply of the probe", echo(b6, a6, 129, probeID), true},
		{"echo of another id", echo(a6, b6, 128, 1), false},
		{"time exceeded quoting the probe", ip6Frame(t, r6, a6, layers.IPProtocolICMPv6,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(3, 0)}, gopacket.Payload(quoted)), true},
		{"neighbour solicitation for B from the router (multicast destination)", ns(r6, "ff02::1:ff00:7", b6), true},
		{"neighbour solicitation for another pod", ns(r6, "ff02::1:ff00:9", x6), false},
	} {
		expr, err := Probe(a6, b6, spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := passes(t, expr, c.frame); got != c.want {
			t.Errorf("%s: passes %v, want %v", c.name, got, c.want)
		}
	}
}

func TestProbeScopeRejectsWhatItCannotScope(t *testing.T) {
	for _, c := range []struct {
		src, dst string
		spec     *wire.ProbeSpec
	}{
		{A, B, nil},
		{"pod-a", B, &wire.ProbeSpec{Proto: "icmp", ID: 1}},
		{A, "fd00::7", &wire.ProbeSpec{Proto: "icmp", ID: 1}},
		{A, B, &wire.ProbeSpec{Proto: "sctp", ID: 1}},
		{A, B, &wire.ProbeSpec{Proto: "udp", ID: 1}},                         // no port
		{A, B, &wire.ProbeSpec{Proto: "udp", Port: 53, ID: 65535, Count: 2}}, // ports past 65535
	} {
		if e, err := Probe(c.src, c.dst, c.spec, nil); err == nil {
			t.Errorf("Probe(%s, %s, %+v) = %q; want an error", c.src, c.dst, c.spec, e)
		}
	}
}

// A probe to a Service's virtual IP S is translated on the node to an
// endpoint E on another port: with spec.NAT the frames after the
// translation pass too, still recognised by the probe's source identity.
func TestNATProbeScopeFollowsTheTranslatedFrames(t *testing.T) {
	const S, E = "10.96.0.10", "10.1.0.8"
	tcpSpec := &wire.ProbeSpec{Proto: "tcp", Dst: S, Port: 80, Count: 2, ID: probeID, NAT: true}
	icmpSpec := &wire.ProbeSpec{Proto: "icmp", Dst: S, Count: 1, ID: probeID, NAT: true}
	udpSpec := &wire.ProbeSpec{Proto: "udp", Dst: S, Port: 53, Count: 1, ID: probeID, NAT: true}
	translated := udpFrame(t, A, E, probeID, 5353)
	for _, c := range []struct {
		name  string
		spec  *wire.ProbeSpec
		frame []byte
		want  bool
	}{
		{"SYN to the virtual IP", tcpSpec, tcpFrame(t, A, S, probeID, 80), true},
		{"SYN after the DNAT, to the endpoint's port", tcpSpec, tcpFrame(t, A, E, probeID+1, 8080), true},
		{"answer from the endpoint before the reverse translation", tcpSpec, tcpFrame(t, E, A, 8080, probeID), true},
		{"answer after the reverse translation", tcpSpec, tcpFrame(t, S, A, 80, probeID+1), true},
		{"app stream to the virtual IP", tcpSpec, tcpFrame(t, A, S, appPort, 80), false},
		{"app stream to the endpoint", tcpSpec, tcpFrame(t, A, E, appPort, 8080), false},
		{"another pod from the probe's port", tcpSpec, tcpFrame(t, X, E, probeID, 8080), false},
		{"UDP from the TCP probe's port", tcpSpec, udpFrame(t, A, E, probeID, 8080), false},

		{"echo to the virtual IP", icmpSpec, echoFrame(t, A, S, 8, probeID), true},
		{"echo after the DNAT", icmpSpec, echoFrame(t, A, E, 8, probeID), true},
		{"echo reply from the endpoint", icmpSpec, echoFrame(t, E, A, 0, probeID), true},
		{"echo of another id", icmpSpec, echoFrame(t, A, E, 8, probeID+1), false},

		{"UDP after the DNAT", udpSpec, translated, true},
		{"port unreachable from the endpoint quoting the translated probe", udpSpec, icmpErr(t, E, 3, 3, translated), true},
		{"port unreachable quoting app traffic", udpSpec, icmpErr(t, E, 3, 3, udpFrame(t, A, E, appPort, 5353)), false},
	} {
		expr, err := Probe(A, S, c.spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := passes(t, expr, c.frame); got != c.want {
			t.Errorf("%s (%s probe): passes %v, want %v", c.name, c.spec.Proto, got, c.want)
		}
	}
}
