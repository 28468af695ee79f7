package flowsum

import (
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

var (
	macA  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0, 2}
	macB  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0, 3}
	ipA   = net.IPv4(10, 244, 0, 2).To4()
	ipB   = net.IPv4(10, 244, 0, 3).To4()
	ip6A  = net.ParseIP("fd00:db8::2")
	ip6B  = net.ParseIP("fd00:db8::3")
	vtepA = net.IPv4(192, 168, 50, 1).To4()
	vtepB = net.IPv4(192, 168, 50, 2).To4()
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 7, Protocol: proto, SrcIP: ipA, DstIP: ipB}
}

func tcpSynAck(t testing.TB) []byte {
	ip := ip4(layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 8080, DstPort: 41000, SYN: true, ACK: true, Seq: 1, Ack: 2, Window: 1000}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp)
}

func udp4(t testing.TB, sport, dport layers.UDPPort, payload []byte) []byte {
	ip := ip4(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: sport, DstPort: dport}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload))
}

// underlay wraps an inner frame in outer Ethernet/IPv4/UDP to port with
// the given tunnel header in front of it.
func underlay(t testing.TB, port layers.UDPPort, tunnel, inner []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: vtepA, DstIP: vtepB}
	udp := &layers.UDP{SrcPort: 51000, DstPort: port}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(append(append([]byte(nil), tunnel...), inner...)))
}

func vxlan(t testing.TB, port layers.UDPPort, vni uint32, inner []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: vtepA, DstIP: vtepB}
	udp := &layers.UDP{SrcPort: 51000, DstPort: port}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
}

func TestParseReadsTheFlowOfEachKindOfFrame(t *testing.T) {
	inner := tcpSynAck(t)
	// Geneve (RFC 8926): version 0 and option length 2 (8 bytes of
	// options), protocol 0x6558 (Ethernet), VNI 0x000101, then the options.
	geneve := []byte{0x02, 0x00, 0x65, 0x58, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: ip6A, DstIP: ip6B}
	udp6 := &layers.UDP{SrcPort: 5353, DstPort: 53}
	_ = udp6.SetNetworkLayerForChecksum(ip6)
	frag := ip4(layers.IPProtocolUDP)
	frag.FragOffset = 185 // a later fragment: its payload is not a UDP header
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	for _, tc := range []struct {
		name  string
		frame []byte
		flow  wire.Flow
		encap uint8
		vni   uint32
		flags uint8
	}{
		{"tcp syn-ack", inner, wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "tcp", SrcPort: 8080, DstPort: 41000}, 0, 0, FlagSYN | FlagACK},
		{"udp", udp4(t, 40000, 9000, []byte("podtrace")), wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "udp", SrcPort: 40000, DstPort: 9000}, 0, 0, 0},
		{"udp over ipv6", serialize(t, eth(layers.EthernetTypeIPv6), ip6, udp6, gopacket.Payload("q")),
			wire.Flow{EtherType: "ipv6", Src: "fd00:db8::2", Dst: "fd00:db8::3", Proto: "udp", SrcPort: 5353, DstPort: 53}, 0, 0, 0},
		{"802.1q tag", serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv4}, ip4(layers.IPProtocolICMPv4), icmp),
			wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "icmp", ICMP: "dest-unreachable code 3", VLAN: 42}, 0, 0, 0},
		{"later fragment", serialize(t, eth(layers.EthernetTypeIPv4), frag, gopacket.Payload("0123456789")),
			wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "udp"}, 0, 0, 0},
		{"arp who-has", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}, arp),
			wire.Flow{EtherType: "arp", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "who-has"}, 0, 0, 0},
		{"vxlan 4789: the inner flow", vxlan(t, 4789, 1, inner), wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "tcp", SrcPort: 8080, DstPort: 41000}, EncapVXLAN, 1, FlagSYN | FlagACK},
		{"vxlan 8472 (flannel)", vxlan(t, 8472, 7, inner), wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "tcp", SrcPort: 8080, DstPort: 41000}, EncapVXLAN, 7, FlagSYN | FlagACK},
		{"geneve with options", underlay(t, 6081, geneve, inner), wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "tcp", SrcPort: 8080, DstPort: 41000}, EncapGeneve, 0x101, FlagSYN | FlagACK},
		{"vxlan port, not vxlan: the outer flow", udp4(t, 1234, 4789, make([]byte, 30)),
			wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "udp", SrcPort: 1234, DstPort: 4789}, 0, 0, 0},
		{"cut inside the tcp header", inner[:14+20+10], wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "tcp"}, 0, 0, 0},
		{"cut inside the ethernet header", inner[:10], wire.Flow{EtherType: "unknown"}, 0, 0, 0},
		{"lldp", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: 0x88cc}, gopacket.Payload("xxxxxxxx")), wire.Flow{EtherType: "0x88cc"}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := Key{Ifindex: 3, Dir: DirOut}
			flags := Parse(&k, tc.frame)
			if diff := cmp.Diff(tc.flow, k.Flow()); diff != "" {
				t.Errorf("flow (-want +got):\n%s", diff)
			}
			if k.Encap != tc.encap || k.VNI != tc.vni || flags != tc.flags {
				t.Errorf("encap %d vni %d flags %s; want encap %d vni %d flags %s", k.Encap, k.VNI, FlagNames(flags), tc.encap, tc.vni, FlagNames(tc.flags))
			}
			if k.Ifindex != 3 || k.Dir != DirOut {
				t.Errorf("ifindex %d dir %d changed by Parse", k.Ifindex, k.Dir)
			}
		})
	}
}

// The same packet at the pod's veth and, encapsulated, at the node's NIC
// has the same flow: summaries of one flow line up across hops.
func TestParseSameFlowAcrossAnOverlayHop(t *testing.T) {
	inner := udp4(t, 40000, 9000, []byte("podtrace"))
	var pod, nic Key
	Parse(&pod, inner)
	Parse(&nic, vxlan(t, 8472, 1, inner))
	if pod.Flow() != nic.Flow() {
		t.Errorf("pod %+v, underlay %+v: want the same flow", pod.Flow(), nic.Flow())
	}
}

func TestTableKeepsTheTopRecordsAndSumsTheRest(t *testing.T) {
	tb := NewTable(3)
	frames := []struct {
		sport layers.UDPPort
		n     int
		size  int
	}{{1000, 5, 100}, {1001, 2, 200}, {1002, 7, 60}, {1003, 1, 1500}} // 1003 finds the table full
	base := time.Unix(1700000000, 0)
	var k Key
	for i, f := range frames {
		frame := udp4(t, f.sport, 9000, nil)
		for j := range f.n {
			k = Key{Ifindex: 2}
			Parse(&k, frame)
			tb.Add(&k, base.Add(time.Duration(i*10+j)*time.Millisecond).UnixNano(), f.size, 0)
		}
	}
	syn := tcpSynAck(t)
	k = Key{Ifindex: 2, Dir: DirOut}
	Parse(&k, syn)
	if tb.Len() != 3 {
		t.Fatalf("table holds %d keys; want its maximum, 3", tb.Len())
	}
	var s wire.Summary
	tb.Summary(&s, 2, func(i int) string { return "eth0" })
	if s.Packets != 15 || s.Bytes != 5*100+2*200+7*60+1500 {
		t.Errorf("totals %d packets %d bytes; want 15 and %d", s.Packets, s.Bytes, 5*100+2*200+7*60+1500)
	}
	var got []int
	for _, r := range s.Records {
		got = append(got, r.SrcPort)
	}
	if diff := cmp.Diff([]int{1002, 1000}, got); diff != "" {
		t.Errorf("records by packets (-want +got):\n%s", diff)
	}
	r := s.Records[0]
	if r.Packets != 7 || r.Bytes != 420 || !r.First.Equal(base.Add(20*time.Millisecond)) || !r.Last.Equal(base.Add(26*time.Millisecond)) ||
		r.Iface != "eth0" || r.Index != 2 || r.Dir != "in" {
		t.Errorf("top record %+v", r)
	}
	want := &wire.FlowOther{Records: 1, Packets: 2 + 1, Bytes: 400 + 1500, Untracked: 1}
	if diff := cmp.Diff(want, s.Other); diff != "" {
		t.Errorf("other (-want +got):\n%s", diff)
	}
	tb.Reset()
	if tb.Len() != 0 || tb.Packets != 0 || tb.Untracked != 0 {
		t.Errorf("after Reset: %d keys, %d packets, %d untracked", tb.Len(), tb.Packets, tb.Untracked)
	}
	tb.Add(&k, base.UnixNano(), 74, FlagSYN)
	tb.Add(&k, base.UnixNano(), 66, FlagACK|FlagFIN)
	tb.Summary(&s, 2, func(i int) string { return "eth0" })
	if len(s.Records) != 1 || s.Records[0].Flags != "SYN,FIN,ACK" || s.Records[0].Dir != "out" || s.Other != nil {
		t.Errorf("after Reset: %+v other %+v", s.Records, s.Other)
	}
}

func TestParseAndAddDoNotAllocate(t *testing.T) {
	tb := NewTable(1024)
	frames := [][]byte{udp4(t, 40000, 9000, []byte("x")), vxlan(t, 8472, 1, tcpSynAck(t)), tcpSynAck(t)}
	n := 0
	allocs := testing.AllocsPerRun(1000, func() {
		f := frames[n%len(frames)]
		n++
		k := Key{Ifindex: int32(n % 4)}
		flags := Parse(&k, f)
		tb.Add(&k, int64(n), len(f), flags)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per frame; want 0", allocs)
	}
}

// BenchmarkParseAdd is the per-frame cost of summary mode: the flow key
// read from the frame and its counters bumped, over a handful of flows
// (a UDP flood, its VXLAN copy on the underlay, a TCP flow).
func BenchmarkParseAdd(b *testing.B) {
	frames := [][]byte{udp4(b, 40000, 9000, make([]byte, 64)), vxlan(b, 8472, 1, udp4(b, 40000, 9000, make([]byte, 64))), tcpSynAck(b)}
	tb := NewTable(16384)
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; b.Loop(); i++ {
		f := frames[i%len(frames)]
		k := Key{Ifindex: int32(2 + i%3)}
		flags := Parse(&k, f)
		tb.Add(&k, int64(i), len(f), flags)
	}
}
