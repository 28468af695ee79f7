package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/golden"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// goldenFrames is a spread of frames: ARP, ICMP/ICMPv6 (echo, errors, NDP),
// TCP with every flag combination seen in practice, UDP, VXLAN and Geneve,
// 802.1Q, an unknown ethertype, and truncated prefixes of some of them.
func goldenFrames(t testing.TB) []Input {
	ip6A := net.ParseIP("fd00::2")
	ip6B := net.ParseIP("fd00::3")
	eth4 := func(src, dst net.HardwareAddr) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	}
	eth6 := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
	ip4 := func(proto layers.IPProtocol, id uint16) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: proto, SrcIP: ipA, DstIP: ipB}
	}
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: ip6A, DstIP: ip6B, FlowLabel: 0x12345}
	}
	var frames [][]byte
	add := func(ls ...gopacket.SerializableLayer) { frames = append(frames, serialize(t, ls...)) }

	// ARP request and reply.
	add(&layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	add(&layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: macB, SourceProtAddress: ipB, DstHwAddress: macA, DstProtAddress: ipA})
	// ICMP echo request/reply, errors.
	frames = append(frames, echo(t, macA, macB, 64, 1), echo(t, macB, macA, 63, 2))
	add(eth4(macB, macA), ip4(layers.IPProtocolICMPv4, 9),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 4711, Seq: 1}, gopacket.Payload("podtrace"))
	for _, tc := range []layers.ICMPv4TypeCode{
		layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, 3),
		layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, 0),
		layers.CreateICMPv4TypeCode(layers.ICMPv4TypeRedirect, 1),
		layers.CreateICMPv4TypeCode(13, 0),
	} {
		add(eth4(macB, macA), ip4(layers.IPProtocolICMPv4, 10), &layers.ICMPv4{TypeCode: tc}, gopacket.Payload("0123456789abcdef"))
	}
	// TCP flag combinations, with and without payload.
	for i, fl := range []string{"S", "SA", "A", "PA", "FA", "R", "RA", "U", "FSRPAU", ""} {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 8080, Seq: uint32(1000 * i), Ack: uint32(77 * i), Window: 1024}
		for _, c := range fl {
			switch c {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
			case 'P':
				tcp.PSH = true
			case 'F':
				tcp.FIN = true
			case 'R':
				tcp.RST = true
			case 'U':
				tcp.URG = true
			}
		}
		ip := ip4(layers.IPProtocolTCP, uint16(100+i))
		_ = tcp.SetNetworkLayerForChecksum(ip)
		add(eth4(macA, macB), ip, tcp, gopacket.Payload(bytes.Repeat([]byte{byte(i)}, 10*i)))
	}
	// UDP, and the flood's datagram.
	for _, n := range []int{0, 4, 64, 1400} {
		ip := ip4(layers.IPProtocolUDP, uint16(n))
		udp := &layers.UDP{SrcPort: 50000, DstPort: 9000}
		_ = udp.SetNetworkLayerForChecksum(ip)
		add(eth4(macA, macB), ip, udp, gopacket.Payload(bytes.Repeat([]byte{0xab}, n)))
	}
	// IPv6: TCP, UDP, ICMPv6 echo and NDP.
	{
		ip := ip6(layers.IPProtocolTCP)
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 5, SYN: true, Window: 1024}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		add(eth6, ip, tcp)
		ip = ip6(layers.IPProtocolUDP)
		udp := &layers.UDP{SrcPort: 53000, DstPort: 53}
		_ = udp.SetNetworkLayerForChecksum(ip)
		add(eth6, ip, udp, gopacket.Payload("query"))
		for _, typ := range []uint8{layers.ICMPv6TypeEchoRequest, layers.ICMPv6TypeEchoReply} {
			ip = ip6(layers.IPProtocolICMPv6)
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
			_ = ic.SetNetworkLayerForChecksum(ip)
			add(eth6, ip, ic, gopacket.Payload(append([]byte{0x12, 0x67, 0, 3}, "podtrace"...)))
		}
		for _, typ := range []uint8{layers.ICMPv6TypeNeighborSolicitation, layers.ICMPv6TypeNeighborAdvertisement,
			layers.ICMPv6TypeRouterSolicitation, layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6TypeTimeExceeded, 200} {
			ip = ip6(layers.IPProtocolICMPv6)
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
			_ = ic.SetNetworkLayerForChecksum(ip)
			add(eth6, ip, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, ip6B...)))
		}
	}
	// Overlays: VXLAN on both ports, Geneve, and a VXLAN without the I flag.
	inner := echo(t, macA, macB, 63, 1)
	frames = append(frames, vxlanWrap(t, inner, 4789), vxlanWrap(t, inner, 8472))
	{
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(192, 168, 50, 1).To4(), DstIP: net.IPv4(192, 168, 50, 2).To4()}
		udp := &layers.UDP{SrcPort: 40001, DstPort: 6081}
		_ = udp.SetNetworkLayerForChecksum(ip)
		gen := []byte{0, 0, 0x65, 0x58, 0, 0, 42, 0} // version 0, no options, TEB, VNI 42
		add(eth4(macA, macB), ip, udp, gopacket.Payload(append(gen, inner...)))
		udp = &layers.UDP{SrcPort: 40002, DstPort: 4789}
		_ = udp.SetNetworkLayerForChecksum(ip)
		add(eth4(macA, macB), ip, udp, gopacket.Payload(append([]byte{0, 0, 0, 0, 0, 0, 1, 0}, inner...)))
	}
	// 802.1Q, an unknown ethertype, an unknown IP protocol.
	{
		ip := ip4(layers.IPProtocolUDP, 5)
		udp := &layers.UDP{SrcPort: 1, DstPort: 2}
		_ = udp.SetNetworkLayerForChecksum(ip)
		add(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload("vlan"))
	}
	add(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: 0x88cc}, gopacket.Payload("lldp-ish frame"))
	add(eth4(macA, macB), ip4(47, 6), gopacket.Payload("gre"))

	var ins []Input
	pkt := []uint8{unix.PACKET_HOST, unix.PACKET_OUTGOING, unix.PACKET_BROADCAST, unix.PACKET_OTHERHOST, unix.PACKET_MULTICAST, 9}
	for i, f := range frames {
		in := Input{TS: time.Unix(1700000000+int64(i), int64(i)*1000003).UTC(), Ifindex: i%5 + 1, Iface: "eth" + string(rune('0'+i%5)),
			PktType: pkt[i%len(pkt)], Len: len(f), VLAN: i % 3, Data: f}
		ins = append(ins, in)
		// Truncated captures of the same frame.
		for _, n := range []int{10, 20, 30, 40, 54} {
			if n < len(f) {
				tr := in
				tr.Data = f[:n]
				ins = append(ins, tr)
			}
		}
	}
	return ins
}

// TestDecodeGolden checks that every field of every decoded frame —
// summary and fingerprint included — is what it was when the golden file
// was written: fingerprints must stay stable across releases, since the
// agents of one trace may not all run the same build.
func TestDecodeGolden(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprint("reuse=", reuse), func(t *testing.T) { testGolden(t, reuse) })
	}
}

func testGolden(t *testing.T, reuse bool) {
	d := New()
	d.Reuse = reuse
	var got bytes.Buffer
	for _, in := range goldenFrames(t) {
		b, err := json.Marshal(d.Decode(in))
		if err != nil {
			t.Fatal(err)
		}
		got.Write(b)
		got.WriteByte('\n')
	}
	// Both decoders (fresh buffers and reused ones) must produce the one
	// golden file.
	golden.Check(t, "testdata/golden.jsonl", got.Bytes())
}

// TestFramesAreCopies: without Reuse, every Packet keeps its own copy of
// the frame, even when the caller reuses its buffer and a Frame is
// appended to.
func TestFramesAreCopies(t *testing.T) {
	d := New()
	buf := make([]byte, 300)
	var ps []*wire.Packet
	for i := 0; i < 2000; i++ {
		n := 1 + i%len(buf)
		for j := range buf[:n] {
			buf[j] = byte(i + j)
		}
		ps = append(ps, d.Decode(Input{Data: buf[:n], Len: n}))
		_ = append(ps[i].Frame, 0xff, 0xff, 0xff) // must not reach the next frame
	}
	for i, p := range ps {
		n := 1 + i%len(buf)
		if len(p.Frame) != n {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(p.Frame), n)
		}
		for j, c := range p.Frame {
			if c != byte(i+j) {
				t.Fatalf("frame %d byte %d: %#x, want %#x", i, j, c, byte(i+j))
			}
		}
	}
}
