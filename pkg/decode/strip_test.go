package decode

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// marker is application data: headers-only frames never hold it.
var marker = []byte("PODTRACE-SECRET-PAYLOAD")

// TestHeadersOnlyKeepsExactlyTheHeaders decodes frames built layer by layer
// and checks the bytes kept against the header sizes of the protocols'
// RFCs: Ethernet 14, 802.1Q 4, IPv4 4×IHL, IPv6 40, TCP 4×data offset,
// UDP 8, ICMP 8 (echo: type, code, checksum, id, seq), VXLAN 8, Geneve 8 +
// 4×option length, ARP 28; an ICMP error keeps the IP and transport
// headers it quotes. The application bytes (a marker) are never kept, the
// length on the wire and the fingerprint are those of the whole frame.
func TestHeadersOnlyKeepsExactlyTheHeaders(t *testing.T) {
	eth4 := func() *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	}
	eth6 := func() *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
	}
	ip4 := func(proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 7, Protocol: proto, SrcIP: ipA, DstIP: ipB}
	}
	ip6A, ip6B := net.ParseIP("fd00::2"), net.ParseIP("fd00::3")
	ip6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: ip6A, DstIP: ip6B}
	}
	tcpWith := func(ip gopacket.NetworkLayer, opts ...layers.TCPOption) *layers.TCP {
		tcp := &layers.TCP{SrcPort: 40001, DstPort: 8080, Seq: 1, Ack: 2, ACK: true, PSH: true, Window: 512, Options: opts}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		return tcp
	}
	udpOn := func(ip gopacket.NetworkLayer, dport layers.UDPPort) *layers.UDP {
		u := &layers.UDP{SrcPort: 40002, DstPort: dport}
		_ = u.SetNetworkLayerForChecksum(ip)
		return u
	}
	pay := gopacket.Payload(marker)

	// A 12-byte option list: MSS (4), window scale (3), NOP, SACK permitted (2), NOP, NOP.
	opts := []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 180}},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindNop},
	}
	i4 := ip4(layers.IPProtocolTCP)
	tcpOpts := serialize(t, eth4(), i4, tcpWith(i4, opts...), pay)

	i4 = ip4(layers.IPProtocolUDP)
	udp := serialize(t, eth4(), i4, udpOn(i4, 5353), pay)

	icmpEcho := serialize(t, eth4(), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 4711, Seq: 1}, pay)

	i4 = ip4(layers.IPProtocolTCP)
	innerTCP := serialize(t, eth4(), i4, tcpWith(i4), pay)
	vxlan := vxlanWrap(t, innerTCP, 8472)

	// Geneve (RFC 8926): 8 bytes, then one 8-byte option (length 2 words).
	i4 = ip4(layers.IPProtocolUDP)
	innerUDP := serialize(t, eth4(), i4, udpOn(i4, 53), pay)
	gen := []byte{0x02, 0, 0x65, 0x58, 0, 0, 5, 0, 0x01, 0x02, 0x03, 0x01, 0xaa, 0xbb, 0xcc, 0xdd}
	outer := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4(192, 168, 50, 1).To4(), DstIP: net.IPv4(192, 168, 50, 2).To4()}
	geneve := serialize(t, eth4(), outer, udpOn(outer, 6081), gopacket.Payload(append(gen, innerUDP...)))

	// ICMP errors quoting a UDP datagram (all of it) and a TCP segment.
	quotedUDP := udp[14:]
	unreachUDP := serialize(t, eth4(), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, 3)}, gopacket.Payload(quotedUDP))
	quotedTCP := tcpOpts[14:]
	unreachTCP := serialize(t, eth4(), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, 0)}, gopacket.Payload(quotedTCP))
	// RFC 792's minimum: the IP header and 8 bytes of the TCP header.
	unreachTCP8 := serialize(t, eth4(), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, 1)}, gopacket.Payload(quotedTCP[:28]))

	icmp6 := func(typ uint8, body []byte) []byte {
		i := ip6(layers.IPProtocolICMPv6)
		c := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		_ = c.SetNetworkLayerForChecksum(i)
		return serialize(t, eth6(), i, c, gopacket.Payload(body))
	}
	echo6 := icmp6(layers.ICMPv6TypeEchoRequest, append([]byte{0x12, 0x67, 0, 1}, marker...))
	ns := icmp6(layers.ICMPv6TypeNeighborSolicitation, append(append([]byte{0, 0, 0, 0}, ip6B...), 1, 1, 0x0a, 0x58, 0x0a, 0xf4, 0, 2))
	i6 := ip6(layers.IPProtocolUDP)
	udp6 := serialize(t, eth6(), i6, udpOn(i6, 5353), pay)
	unreach6 := icmp6(layers.ICMPv6TypeDestinationUnreachable, append([]byte{0, 0, 0, 0}, udp6[14:]...))

	arp := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	arpPadded := append(append([]byte(nil), arp...), make([]byte, 18)...) // to the 60-byte Ethernet minimum

	i4 = ip4(layers.IPProtocolUDP)
	dot1q := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, i4, udpOn(i4, 5353), pay)

	i4 = ip4(layers.IPProtocolTCP)
	i4.IHL, i4.Options = 6, []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	ipOpts := serialize(t, eth4(), i4, tcpWith(i4), pay)

	unknownEther := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: 0x88cc}, pay)

	i4 = ip4(layers.IPProtocolUDP)
	i4.FragOffset = 185 // a later fragment: its bytes are the datagram's data
	fragment := serialize(t, eth4(), i4, pay)

	gre := serialize(t, eth4(), ip4(layers.IPProtocolGRE), pay)

	i4 = ip4(layers.IPProtocolTCP)
	ack := serialize(t, eth4(), i4, tcpWith(i4))
	ackPadded := append(append([]byte(nil), ack...), make([]byte, 60-len(ack))...)

	for _, c := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"TCP with 12 bytes of options", tcpOpts, 14 + 20 + 32},
		{"TCP cut by the snaplen inside its payload", tcpOpts[:14+20+32+5], 14 + 20 + 32},
		{"TCP ACK with Ethernet padding", ackPadded, 14 + 20 + 20},
		{"UDP", udp, 14 + 20 + 8},
		{"ICMP echo", icmpEcho, 14 + 20 + 8},
		{"VXLAN around TCP", vxlan, 14 + 20 + 8 + 8 + 14 + 20 + 20},
		{"Geneve with an option around UDP", geneve, 14 + 20 + 8 + 16 + 14 + 20 + 8},
		{"ICMP port unreachable quoting UDP", unreachUDP, 14 + 20 + 8 + 20 + 8},
		{"ICMP time exceeded quoting TCP", unreachTCP, 14 + 20 + 8 + 20 + 32},
		{"ICMP error quoting 8 bytes of TCP", unreachTCP8, 14 + 20 + 8 + 20 + 8},
		{"ICMPv6 echo", echo6, 14 + 40 + 8},
		{"ICMPv6 neighbour solicitation", ns, len(ns)},
		{"ICMPv6 unreachable quoting UDP", unreach6, 14 + 40 + 8 + 40 + 8},
		{"ARP", arp, 14 + 28},
		{"ARP with Ethernet padding", arpPadded, 14 + 28},
		{"802.1Q", dot1q, 14 + 4 + 20 + 8},
		{"IPv4 with options", ipOpts, 14 + 24 + 20},
		{"unknown ethertype", unknownEther, 14},
		{"IPv4 later fragment", fragment, 14 + 20},
		{"IPv4 of a protocol not decoded", gre, 14 + 20},
		{"a runt", []byte{1, 2, 3}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			whole := New().Decode(Input{Data: c.frame, Len: len(c.frame) + 11})
			for _, reuse := range []bool{false, true} {
				d := New()
				d.HeadersOnly, d.Reuse = true, reuse
				p := d.Decode(Input{Data: c.frame, Len: len(c.frame) + 11})
				if len(p.Frame) != c.want || p.CapLen != c.want {
					t.Errorf("reuse %v: kept %d bytes (caplen %d) of %d; want %d:\n% x", reuse, len(p.Frame), p.CapLen, len(c.frame), c.want, c.frame)
				}
				if !bytes.Equal(p.Frame, c.frame[:min(c.want, len(c.frame))]) {
					t.Errorf("reuse %v: the bytes kept are not the frame's first %d", reuse, c.want)
				}
				if bytes.Contains(p.Frame, marker) {
					t.Errorf("reuse %v: the application bytes are still there", reuse)
				}
				if p.Len != len(c.frame)+11 || p.FP != whole.FP || p.Summary != whole.Summary {
					t.Errorf("reuse %v: len %d fp %s %q; want the whole frame's: %d %s %q", reuse, p.Len, p.FP, p.Summary, whole.Len, whole.FP, whole.Summary)
				}
			}
		})
	}
	// Without HeadersOnly (--payload) the frame is whole.
	if p := New().Decode(Input{Data: tcpOpts, Len: len(tcpOpts)}); !bytes.Equal(p.Frame, tcpOpts) {
		t.Errorf("without HeadersOnly the frame was cut to %d of %d bytes", len(p.Frame), len(tcpOpts))
	}
	if binary.BigEndian.Uint16(geneve[14+20+8+2:]) != 0x6558 {
		t.Fatal("geneve test frame is not built as meant")
	}
}

// Headers-only never keeps more than it was given, whatever the bytes say
// (lengths, header lengths, quoted headers): every prefix and mutation of
// the garbage test's seeds.
func TestHeadersOnlyStaysWithinTheFrame(t *testing.T) {
	d := New()
	d.HeadersOnly = true
	for _, f := range garbageSeeds(t) {
		for i := 0; i <= len(f); i++ {
			p := d.Decode(Input{Data: f[:i], Len: len(f)})
			if len(p.Frame) > i || !bytes.Equal(p.Frame, f[:len(p.Frame)]) {
				t.Fatalf("kept %d bytes of a %d-byte frame, or other bytes", len(p.Frame), i)
			}
		}
	}
}
