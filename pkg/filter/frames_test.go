package filter

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame is one test frame. inner is the Ethernet frame carried by VXLAN,
// if any, so that VXLAN expectations can be derived from tcpdump run on
// the inner frames.
type frame struct {
	data   []byte
	inner  []byte
	vxport uint16 // UDP destination port of a VXLAN frame
}

var (
	macA  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	macB  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
	macC  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07}
	macBc = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macMc = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}

	v4s = []string{"10.0.0.1", "10.0.0.2", "10.1.2.3", "192.168.1.10", "172.16.5.4", "8.8.8.8"}
	v6s = []string{"fd00::1", "fd00::2", "fe80::1", "2001:db8::5", "fd00:0:0:1::9"}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethL(src, dst net.HardwareAddr, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: typ}
}

func ip4L(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6L(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

func nops(n int) []layers.IPv4Option {
	o := make([]layers.IPv4Option, n)
	for i := range o {
		o[i] = layers.IPv4Option{OptionType: 1, OptionLength: 1}
	}
	return o
}

// l4 returns a transport layer for proto with the given ports.
func l4(proto layers.IPProtocol, sp, dp uint16, flags int) gopacket.SerializableLayer {
	switch proto {
	case layers.IPProtocolTCP:
		return &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: 1,
			SYN: flags&2 != 0, ACK: flags&16 != 0, FIN: flags&1 != 0, RST: flags&4 != 0, PSH: flags&8 != 0, Window: 1000}
	case layers.IPProtocolUDP:
		return &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	}
	// SCTP common header: ports, verification tag, checksum.
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b, sp)
	binary.BigEndian.PutUint16(b[2:], dp)
	return gopacket.Payload(b)
}

// innerFrames are Ethernet frames carried in VXLAN and Geneve.
func innerFrames(t testing.TB) [][]byte {
	return [][]byte{
		serialize(t, ethL(macA, macB, layers.EthernetTypeIPv4), ip4L("10.9.0.1", "10.9.0.2", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 40000, 80, 2), gopacket.Payload("GET /")),
		serialize(t, ethL(macB, macA, layers.EthernetTypeIPv4), ip4L("10.9.0.2", "10.9.0.1", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 80, 40000, 18)),
		serialize(t, ethL(macA, macB, layers.EthernetTypeIPv4), func() *layers.IPv4 {
			l := ip4L("10.9.0.3", "10.0.0.1", layers.IPProtocolUDP)
			l.Options = nops(8)
			return l
		}(), l4(layers.IPProtocolUDP, 5353, 53, 0), gopacket.Payload("q")),
		serialize(t, ethL(macC, macB, layers.EthernetTypeIPv4), ip4L("10.9.0.1", "10.9.0.4", layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}),
		serialize(t, ethL(macA, macBc, layers.EthernetTypeARP), arpL(1, macA, "10.9.0.1", "10.9.0.2")),
		serialize(t, ethL(macA, macB, layers.EthernetTypeIPv6), ip6L("fd00::1", "fd00::2", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 1234, 443, 2)),
	}
}

func arpL(op uint16, mac net.HardwareAddr, spa, tpa string) *layers.ARP {
	return &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: mac, SourceProtAddress: net.ParseIP(spa).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(tpa).To4()}
}

func vxlanHdr(vni uint32) []byte {
	return []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
}

func geneveHdr(vni uint32, optWords int) []byte {
	b := []byte{byte(optWords & 0x3f), 0, 0x65, 0x58, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	if optWords > 0 {
		// One option TLV filling optWords: class, type, length in words.
		opt := make([]byte, 4*optWords)
		opt[0], opt[1], opt[2], opt[3] = 0x01, 0x02, 0x03, byte(optWords-1)
		b = append(b, opt...)
	}
	return b
}

// buildFrames returns a few hundred varied Ethernet frames.
func buildFrames(t testing.TB) []frame {
	var fs []frame
	add := func(ls ...gopacket.SerializableLayer) { fs = append(fs, frame{data: serialize(t, ls...)}) }

	// ARP and RARP.
	for i, spa := range v4s[:4] {
		tpa := v4s[(i+1)%len(v4s)]
		add(ethL(macA, macBc, layers.EthernetTypeARP), arpL(1, macA, spa, tpa))
		add(ethL(macB, macA, layers.EthernetTypeARP), arpL(2, macB, tpa, spa))
	}
	add(ethL(macC, macBc, layers.EthernetType(0x8035)), arpL(3, macC, "0.0.0.0", "10.0.0.1"))
	add(ethL(macC, macBc, layers.EthernetType(0x8035)), arpL(4, macC, "10.0.0.2", "10.1.2.3"))

	ports := [][2]uint16{{40000, 80}, {80, 40000}, {51000, 443}, {22, 60000}, {5353, 53}, {53, 5353}, {123, 123}, {1500, 9}, {2000, 25}, {2001, 1000}, {999, 8080}, {6081, 12345}, {4789, 4789}, {8472, 1}}
	protos := []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolSCTP}
	flagSets := []int{2, 18, 16, 1, 4, 24}
	n := 0
	for _, pr := range protos {
		for _, p := range ports {
			n++
			src, dst := v4s[n%len(v4s)], v4s[(n*5+1)%len(v4s)]
			if src == dst {
				dst = "10.0.0.2"
			}
			ip := ip4L(src, dst, pr)
			if n%4 == 0 {
				ip.Options = nops(4 * (n % 3)) // IHL 5..7
			}
			smac, dmac := macA, macB
			if n%5 == 0 {
				smac, dmac = macC, macA
			}
			add(ethL(smac, dmac, layers.EthernetTypeIPv4), ip, l4(pr, p[0], p[1], flagSets[n%len(flagSets)]), gopacket.Payload(make([]byte, n%40)))
			s6, d6 := v6s[n%len(v6s)], v6s[(n*3+1)%len(v6s)]
			add(ethL(dmac, smac, layers.EthernetTypeIPv6), ip6L(s6, d6, pr), l4(pr, p[0], p[1], flagSets[(n+1)%len(flagSets)]), gopacket.Payload(make([]byte, n%100)))
		}
	}
	// IPv4 with options on every protocol and header length.
	for opts := 1; opts <= 10; opts++ {
		ip := ip4L("10.0.0.1", "10.1.2.3", layers.IPProtocolTCP)
		ip.Options = nops(4 * opts)
		add(ethL(macA, macB, layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolTCP, uint16(1000+opts), 80, 2))
		ip2 := ip4L("10.1.2.3", "192.168.1.10", layers.IPProtocolUDP)
		ip2.Options = nops(4 * opts)
		add(ethL(macB, macA, layers.EthernetTypeIPv4), ip2, l4(layers.IPProtocolUDP, 53, uint16(1990+opts), 0))
	}
	// ICMP and ICMPv6.
	for i, tc := range []uint8{0, 3, 8, 11} {
		add(ethL(macA, macB, layers.EthernetTypeIPv4), ip4L(v4s[i], v4s[i+1], layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(tc, 0), Id: 7, Seq: uint16(i)}, gopacket.Payload(make([]byte, 8*i)))
	}
	for i, tc := range []uint8{128, 129, 135, 136, 1} {
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(tc, 0)}
		add(ethL(macB, macA, layers.EthernetTypeIPv6), ip6L(v6s[i], v6s[(i+2)%len(v6s)], layers.IPProtocolICMPv6), icmp, gopacket.Payload(make([]byte, 12+i)))
	}
	add(ethL(macA, macMc, layers.EthernetTypeIPv6), ip6L("fe80::1", "ff02::1", layers.IPProtocolICMPv6),
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(134, 0)}, gopacket.Payload(make([]byte, 12)))
	// IPv4 multicast UDP and IGMP.
	add(ethL(macA, macMc, layers.EthernetTypeIPv4), ip4L("10.0.0.1", "224.0.0.251", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 5353, 5353, 0), gopacket.Payload("mdns"))
	add(ethL(macA, macMc, layers.EthernetTypeIPv4), ip4L("10.0.0.2", "224.0.0.1", layers.IPProtocolIGMP), gopacket.Payload([]byte{0x11, 0, 0, 0, 0, 0, 0, 0}))
	// Broadcast IPv4 UDP (DHCP-like).
	add(ethL(macC, macBc, layers.EthernetTypeIPv4), ip4L("0.0.0.0", "255.255.255.255", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 68, 67, 0), gopacket.Payload(make([]byte, 64)))

	// IPv4 fragments: first fragment carries ports; later ones carry
	// payload whose first bytes look like port 80 / 53.
	for i, pr := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
		first := ip4L("10.0.0.1", "10.0.0.2", pr)
		first.Flags, first.Id = layers.IPv4MoreFragments, uint16(100+i)
		add(ethL(macA, macB, layers.EthernetTypeIPv4), first, l4(pr, 80, 53, 2), gopacket.Payload(make([]byte, 32)))
		later := ip4L("10.0.0.1", "10.0.0.2", pr)
		later.FragOffset, later.Id = 5, uint16(100+i)
		add(ethL(macA, macB, layers.EthernetTypeIPv4), later, gopacket.Payload([]byte{0, 80, 0, 53, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x50, 0x12, 0, 0, 0, 0, 0, 0}))
	}
	// IPv6 with a fragment header carrying UDP and TCP.
	for i, pr := range []layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP} {
		l := serialize(t, l4(pr, 5000, 53, 2))
		fh := []byte{byte(pr), 0, 0, 1, 0, 0, 0, byte(i)}
		add(ethL(macA, macB, layers.EthernetTypeIPv6), ip6L("fd00::1", "fd00::2", layers.IPProtocolIPv6Fragment), gopacket.Payload(append(fh, l...)))
	}

	// VLAN (802.1Q) and QinQ.
	for i, vid := range []uint16{100, 200, 100} {
		add(ethL(macA, macB, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: vid, Type: layers.EthernetTypeIPv4},
			ip4L(v4s[i], "10.0.0.1", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 33000, []uint16{80, 22, 443}[i], 2))
	}
	add(ethL(macB, macA, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 300, Type: layers.EthernetTypeIPv6},
		ip6L("fd00::1", "fd00::2", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 53, 5353, 0))
	add(ethL(macB, macBc, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeARP}, arpL(1, macB, "10.0.0.2", "10.0.0.1"))
	add(ethL(macA, macB, layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip4L("10.0.0.1", "10.1.2.3", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 123, 123, 0))

	// VXLAN (4789 and 8472) and Geneve (6081) carrying inner frames, over
	// IPv4 (with and without options) and IPv6.
	inner := innerFrames(t)
	for i, in := range inner {
		for j, port := range []uint16{4789, 8472} {
			ip := ip4L("192.168.1.10", "172.16.5.4", layers.IPProtocolUDP)
			if (i+j)%2 == 1 {
				ip.Options = nops(4 * (1 + i%3))
			}
			payload := append(vxlanHdr(uint32(42+i%2)), in...)
			fs = append(fs, frame{data: serialize(t, ethL(macC, macA, layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolUDP, 50000+uint16(i), port, 0), gopacket.Payload(payload)), inner: in, vxport: port})
		}
		fs = append(fs, frame{data: serialize(t, ethL(macC, macA, layers.EthernetTypeIPv6), ip6L("fd00::1", "fd00::2", layers.IPProtocolUDP),
			l4(layers.IPProtocolUDP, 50000, 4789, 0), gopacket.Payload(append(vxlanHdr(7), in...))), inner: in, vxport: 4789})
		for k, optWords := range []int{0, 2, 5} {
			ip := ip4L("192.168.1.10", "172.16.5.4", layers.IPProtocolUDP)
			if k == 1 {
				ip.Options = nops(8)
			}
			add(ethL(macC, macA, layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolUDP, 40000, 6081, 0), gopacket.Payload(append(geneveHdr(uint32(42+k), optWords), in...)))
		}
		add(ethL(macC, macA, layers.EthernetTypeIPv6), ip6L("fd00::2", "fd00::1", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 40000, 6081, 0), gopacket.Payload(append(geneveHdr(9, 1), in...)))
	}
	// VXLAN to another port, and a fragment to port 4789.
	fs = append(fs, frame{data: serialize(t, ethL(macC, macA, layers.EthernetTypeIPv4), ip4L("192.168.1.10", "172.16.5.4", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 50000, 4790, 0), gopacket.Payload(append(vxlanHdr(5), inner[0]...))), inner: inner[0], vxport: 4790})
	frag := ip4L("192.168.1.10", "172.16.5.4", layers.IPProtocolUDP)
	frag.FragOffset = 10
	add(ethL(macC, macA, layers.EthernetTypeIPv4), frag, gopacket.Payload([]byte{0xc3, 0x50, 0x12, 0xb5, 0, 40, 0, 0, 8, 0, 0, 0, 0, 0, 42, 0}))

	// Same source and destination, an HTTP request, big frames.
	add(ethL(macA, macA, layers.EthernetTypeIPv4), ip4L("10.0.0.1", "10.0.0.1", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 7, 7, 0))
	add(ethL(macA, macB, layers.EthernetTypeIPv4), ip4L("10.0.0.1", "10.1.2.3", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 40001, 8080, 24), gopacket.Payload("GET / HTTP/1.1\r\n"))
	add(ethL(macA, macB, layers.EthernetTypeIPv4), ip4L("10.0.0.2", "8.8.8.8", layers.IPProtocolTCP), l4(layers.IPProtocolTCP, 40002, 443, 24), gopacket.Payload(make([]byte, 300)))
	add(ethL(macB, macA, layers.EthernetTypeIPv6), ip6L("fd00::2", "fd00::1", layers.IPProtocolUDP), l4(layers.IPProtocolUDP, 4000, 4001, 0), gopacket.Payload(make([]byte, 1200)))

	// Other EtherTypes.
	add(ethL(macA, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, layers.EthernetType(0x88cc)), gopacket.Payload(make([]byte, 46)))
	add(ethL(macB, macBc, layers.EthernetType(0x88b5)), gopacket.Payload(make([]byte, 46)))
	return fs
}

// writePcap writes frames to a pcap file; frame i has timestamp
// pcapEpoch+i seconds so that tcpdump's -tt output names it.
func writePcap(t testing.TB, fs []frame) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "frames.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, fr := range fs {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(pcapEpoch+int64(i), 0), CaptureLength: len(fr.data), Length: len(fr.data)}
		if err := w.WritePacket(ci, fr.data); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

const pcapEpoch = 1_000_000_000
