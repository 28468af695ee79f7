package decode

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// docFingerprint computes a fingerprint from the raw bytes of an Ethernet
// frame as docs/observation-stream.md states it, without the decoder or
// gopacket: a 64-bit FNV-1a (hash/fnv) over each field as text followed by
// a NUL byte, then the first 8 bytes of the transport payload as they are.
// ARP: "arp", operation, sender MAC, sender IP, target IP, target MAC.
// IPv4: "ip", source, destination, protocol, total length, IP ID; then the
// transport: protocol, ports, TCP flags, seq, ack, ICMP type, code, id,
// sequence, NDP target (fields a protocol lacks are "" or 0). A VXLAN
// datagram (UDP port 4789 or 8472) hashes its inner frame.
func docFingerprint(t *testing.T, f []byte) string {
	t.Helper()
	h := fnv.New64a()
	field := func(v any) {
		fmt.Fprint(h, v)
		h.Write([]byte{0})
	}
	be16 := func(b []byte) int { return int(binary.BigEndian.Uint16(b)) }
	if be16(f[12:]) == 0x0806 { // ARP
		a := f[14:]
		op := map[int]string{1: "who-has", 2: "is-at"}[be16(a[6:])]
		for _, v := range []any{"arp", op, net.HardwareAddr(a[8:14]), net.IP(a[14:18]), net.IP(a[24:28]), net.HardwareAddr(a[18:24])} {
			field(v)
		}
		return fmt.Sprintf("%016x", h.Sum64())
	}
	if be16(f[12:]) != 0x0800 {
		t.Fatalf("docFingerprint: ethertype %#x", be16(f[12:]))
	}
	ip := f[14:]
	ip = ip[:be16(ip[2:])] // the IP packet ends at its total length: Ethernet padding is no payload
	ihl := int(ip[0]&0xf) * 4
	proto := ip[9]
	l4 := ip[ihl:]
	if proto == 17 && (be16(l4[2:]) == 4789 || be16(l4[2:]) == 8472) {
		return docFingerprint(t, l4[8+8:]) // UDP header, VXLAN header, inner frame
	}
	name := map[byte]string{1: "icmp", 6: "tcp", 17: "udp"}[proto]
	for _, v := range []any{"ip", net.IP(ip[12:16]), net.IP(ip[16:20]), name, be16(ip[2:]), be16(ip[4:])} {
		field(v)
	}
	var sport, dport, seq, ack, code, id, sq int
	var flags, typ string
	var payload []byte
	switch proto {
	case 6:
		sport, dport = be16(l4), be16(l4[2:])
		seq, ack = int(binary.BigEndian.Uint32(l4[4:])), int(binary.BigEndian.Uint32(l4[8:]))
		var names []string
		for _, fl := range []struct {
			bit  byte
			name string
		}{{0x02, "SYN"}, {0x01, "FIN"}, {0x04, "RST"}, {0x08, "PSH"}, {0x10, "ACK"}, {0x20, "URG"}} {
			if l4[13]&fl.bit != 0 {
				names = append(names, fl.name)
			}
		}
		for i, n := range names {
			if i > 0 {
				flags += ","
			}
			flags += n
		}
		payload = l4[int(l4[12]>>4)*4:]
	case 17:
		sport, dport = be16(l4), be16(l4[2:])
		payload = l4[8:]
	case 1:
		typ = map[byte]string{8: "echo-request", 0: "echo-reply"}[l4[0]]
		code, id, sq = int(l4[1]), be16(l4[4:]), be16(l4[6:])
		payload = l4[8:]
	}
	for _, v := range []any{name, sport, dport, flags, seq, ack, typ, code, id, sq, ""} {
		field(v)
	}
	if len(payload) > 8 {
		payload = payload[:8]
	}
	h.Write(payload)
	return fmt.Sprintf("%016x", h.Sum64())
}

// TestFingerprintsArePinned: the fingerprints of a few packets are fixed
// forever (agents of different releases meet in one trace). Each is
// computed twice outside the decoder: by docFingerprint from the frame's
// bytes and the documented formula, and written here as a literal; the
// decoder must agree with both.
func TestFingerprintsArePinned(t *testing.T) {
	arp := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	isAt := serialize(t, &layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: macB, SourceProtAddress: ipB, DstHwAddress: macA, DstProtAddress: ipA})
	tcp := func(syn, ack bool, seq, ackn uint32, payload string) []byte {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 4242, Protocol: layers.IPProtocolTCP, SrcIP: ipA, DstIP: ipB}
		l := &layers.TCP{SrcPort: 40001, DstPort: 8080, Seq: seq, Ack: ackn, SYN: syn, ACK: ack, PSH: payload != "", Window: 1024}
		_ = l.SetNetworkLayerForChecksum(ip)
		return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, l, gopacket.Payload(payload))
	}
	udp := func() []byte {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 9, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB}
		l := &layers.UDP{SrcPort: 33001, DstPort: 53}
		_ = l.SetNetworkLayerForChecksum(ip)
		return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, l, gopacket.Payload("0123456789abcdef"))
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"ARP who-has 10.244.0.3 tell 10.244.0.2", arp, "10333d7c04091f7d"},
		{"ARP 10.244.0.3 is-at", isAt, "c8e39125f520ada4"},
		{"ICMP echo request id 4711 seq 1", echo(t, macA, macB, 64, 1), "fecc1e43c8c99f77"},
		{"the same echo, TTL and MACs changed", echo(t, macB, macA, 3, 1), "fecc1e43c8c99f77"},
		{"ICMP echo request id 4711 seq 2", echo(t, macA, macB, 64, 2), "f5fd11699e0c091a"},
		{"the echo in VXLAN (8472)", vxlanWrap(t, echo(t, macA, macB, 63, 1), 8472), "fecc1e43c8c99f77"},
		{"TCP SYN", tcp(true, false, 1000, 0, ""), "44aa2330a26df05f"},
		{"TCP PSH,ACK with payload", tcp(false, true, 1001, 77, "GET / HTTP/1.1"), "28fe8c5542b0cbd8"},
		{"UDP to port 53", udp(), "e6b78ea32061f929"},
	} {
		doc := docFingerprint(t, c.frame)
		got := New().Decode(Input{Data: c.frame, Len: len(c.frame)}).FP
		t.Logf("%-40s decoder %s, documented formula %s", c.name, got, doc)
		if got != doc {
			t.Errorf("%s: decoder fingerprint %s, documented formula %s", c.name, got, doc)
		}
		if doc != c.want {
			t.Errorf("%s: documented formula gives %s, pinned %s", c.name, doc, c.want)
		}
	}
}
