package decode

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

var (
	macA = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0, 2}
	macB = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0, 3}
	ipA  = net.IPv4(10, 244, 0, 2).To4()
	ipB  = net.IPv4(10, 244, 0, 3).To4()
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func echo(t testing.TB, src, dst net.HardwareAddr, ttl uint8, seq uint16) []byte {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: 77, Protocol: layers.IPProtocolICMPv4, SrcIP: ipA, DstIP: ipB}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 4711, Seq: seq}
	return serialize(t, eth, ip, icmp, gopacket.Payload("podtrace-probe-0001"))
}

func vxlanWrap(t testing.TB, inner []byte, port layers.UDPPort) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(192, 168, 50, 1).To4(), DstIP: net.IPv4(192, 168, 50, 2).To4()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: port}
	_ = udp.SetNetworkLayerForChecksum(ip)
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: 1}
	return serialize(t, eth, ip, udp, vx, gopacket.Payload(inner))
}

func TestDecodeARPWhoHasAndIsAt(t *testing.T) {
	d := New()
	req := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	p := d.Decode(Input{TS: time.Unix(1, 0), Ifindex: 2, Iface: "eth0", PktType: unix.PACKET_OUTGOING, Len: len(req), Data: req})
	if p.ARP == nil || p.ARP.Op != "who-has" || p.ARP.TargetIP != "10.244.0.3" || p.ARP.SenderMAC != macA.String() {
		t.Fatalf("ARP request decoded as %+v", p.ARP)
	}
	if p.Dir != "out" || p.Summary != "ARP who-has 10.244.0.3 tell 10.244.0.2" {
		t.Fatalf("dir %q summary %q", p.Dir, p.Summary)
	}
	rep := serialize(t, &layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: macB, SourceProtAddress: ipB, DstHwAddress: macA, DstProtAddress: ipA})
	q := d.Decode(Input{Data: rep, Len: len(rep), PktType: unix.PACKET_HOST})
	if q.Summary != "ARP 10.244.0.3 is-at "+macB.String() || q.Dir != "in" {
		t.Fatalf("reply: dir %q summary %q", q.Dir, q.Summary)
	}
	if p.FP == q.FP || p.FP == "" {
		t.Fatalf("request and reply must have distinct fingerprints: %q %q", p.FP, q.FP)
	}
}

func TestFingerprintIgnoresTTLAndMACsButNotSequence(t *testing.T) {
	d := New()
	a := d.Decode(Input{Data: echo(t, macA, macB, 64, 1)})
	b := d.Decode(Input{Data: echo(t, macB, macA, 63, 1)})
	c := d.Decode(Input{Data: echo(t, macA, macB, 64, 2)})
	if a.FP != b.FP {
		t.Errorf("same packet with another TTL and MACs got another fingerprint: %s vs %s", a.FP, b.FP)
	}
	if a.FP == c.FP {
		t.Errorf("echo seq 1 and seq 2 share fingerprint %s", a.FP)
	}
	if a.L4.ICMPID != 4711 || a.L4.ICMPSeq != 1 || a.Summary != "ICMP echo request 10.244.0.2 → 10.244.0.3 id 4711 seq 1" {
		t.Errorf("echo decoded as %+v, %q", a.L4, a.Summary)
	}
}

func TestDecodeVXLANMatchesInnerFingerprint(t *testing.T) {
	d := New()
	inner := echo(t, macA, macB, 63, 1)
	for _, port := range []layers.UDPPort{4789, 8472} {
		outer := vxlanWrap(t, inner, port)
		p := d.Decode(Input{Data: outer, Len: len(outer)})
		if p.Encap == nil || p.Encap.VNI != 1 || p.Encap.OuterSrc != "192.168.50.1" || p.Encap.DstPort != int(port) {
			t.Fatalf("port %d: encap %+v", port, p.Encap)
		}
		if p.IP == nil || p.IP.Src != "10.244.0.2" || p.L4 == nil || p.L4.Type != "echo-request" {
			t.Fatalf("port %d: inner not decoded: %+v %+v", port, p.IP, p.L4)
		}
		plain := d.Decode(Input{Data: inner})
		if p.FP != plain.FP {
			t.Errorf("port %d: encapsulated fingerprint %s != plain %s", port, p.FP, plain.FP)
		}
	}
}

func TestDecodeTCPSynAndTruncation(t *testing.T) {
	d := New()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ipA, DstIP: ipB}
	tcp := &layers.TCP{SrcPort: 40001, DstPort: 8080, Seq: 1000, SYN: true, Window: 1024}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	frame := serialize(t, eth, ip, tcp, gopacket.Payload(make([]byte, 300)))
	p := d.Decode(Input{Data: frame[:96], Len: len(frame)})
	if p.L4 == nil || p.L4.Flags != "SYN" || p.L4.DstPort != 8080 || p.L4.Payload != 300 {
		t.Fatalf("tcp %+v", p.L4)
	}
	if !p.Truncated || p.CapLen != 96 || p.Len != len(frame) {
		t.Fatalf("truncation not reported: %+v", p)
	}
	if p.Summary != "TCP 10.244.0.2:40001 → 10.244.0.3:8080 [SYN] seq 1000 len 300" {
		t.Fatalf("summary %q", p.Summary)
	}
}

// garbageSeeds are the frames the garbage test and the fuzz target start
// from: every golden frame (ARP, ICMP, ICMPv6 and NDP, TCP, UDP, VXLAN,
// Geneve, 802.1Q, truncated ones).
func garbageSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, in := range goldenFrames(t) {
		out = append(out, in.Data)
	}
	return out
}

// checkDecodes decodes one frame with a fresh and a reusing decoder: no
// panic, a summary always, and a fingerprint for whatever decoded as ARP
// or IP.
func checkDecodes(t *testing.T, reuse *Decoder, frame []byte) {
	t.Helper()
	for _, d := range []*Decoder{New(), reuse} {
		p := d.Decode(Input{Data: frame, Len: len(frame) + 7})
		if p.Summary == "" {
			t.Fatalf("empty summary for %x", frame)
		}
		if (p.ARP != nil || p.IP != nil) && p.FP == "" {
			t.Fatalf("no fingerprint for a frame decoded as ARP or IP: %x", frame)
		}
	}
}

// TestDecodeNeverPanicsOnGarbage feeds the decoder real garbage: every
// prefix of every seed frame, random bytes of every length up to a jumbo
// frame, random bytes behind a valid Ethernet+IPv4 or VXLAN header, and
// seed frames with random bytes overwritten (lengths, header lengths,
// ethertypes, ports: whatever the mutation hits). The generator is seeded,
// so a failure repeats. FuzzDecode explores further (go test -fuzz).
func TestDecodeNeverPanicsOnGarbage(t *testing.T) {
	reuse := New()
	reuse.Reuse = true
	seeds := garbageSeeds(t)
	rng := rand.New(rand.NewPCG(16, 4711))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	n := 0
	for _, f := range seeds {
		for i := 0; i <= len(f); i++ {
			checkDecodes(t, reuse, f[:i])
			n++
		}
	}
	for i := 0; i < 1000; i++ {
		checkDecodes(t, reuse, random(rng.IntN(9000)))
		n++
	}
	ipHdr := echo(t, macA, macB, 64, 1)[:14+20]
	vxHdr := vxlanWrap(t, nil, 4789)
	for i := 0; i < 2000; i++ {
		checkDecodes(t, reuse, append(append([]byte(nil), ipHdr...), random(rng.IntN(200))...))
		checkDecodes(t, reuse, append(append([]byte(nil), vxHdr...), random(rng.IntN(200))...))
		n += 2
	}
	for i := 0; i < 10000; i++ {
		f := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
		if len(f) == 0 {
			continue
		}
		for k := 1 + rng.IntN(4); k > 0; k-- {
			f[rng.IntN(len(f))] = byte(rng.Uint32())
		}
		checkDecodes(t, reuse, f)
		n++
	}
	t.Logf("%d frames decoded twice (fresh and reused decoder)", n)
}

// FuzzDecode: go test -run '^$' -fuzz FuzzDecode ./pkg/decode/
// Seeded with the golden frames; under go test it runs the seeds only.
func FuzzDecode(f *testing.F) {
	for _, s := range garbageSeeds(f) {
		f.Add(s)
	}
	for _, s := range overlaySeeds(f) {
		f.Add(s)
	}
	reuse := New()
	reuse.Reuse = true
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkDecodes(t, reuse, frame)
	})
}

// overlaySeeds are overlay frames beyond the golden ones, for the fuzzer
// to mutate: VXLAN on both ports around ICMP, TCP and ARP, VXLAN inside
// VXLAN, Geneve (RFC 8926) with and without options, with a non-Ethernet
// protocol, and with an option length that runs past the frame.
func overlaySeeds(t testing.TB) [][]byte {
	tcp := func() []byte {
		eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 9, Protocol: layers.IPProtocolTCP, SrcIP: ipA, DstIP: ipB}
		tc := &layers.TCP{SrcPort: 40001, DstPort: 8080, Seq: 1, SYN: true, Window: 1024}
		_ = tc.SetNetworkLayerForChecksum(ip)
		return serialize(t, eth, ip, tc)
	}()
	arp := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	geneve := func(inner []byte, optWords byte, proto uint16) []byte {
		eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(192, 168, 50, 1).To4(), DstIP: net.IPv4(192, 168, 50, 2).To4()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 6081}
		_ = udp.SetNetworkLayerForChecksum(ip)
		// version 0, option length in words, protocol, VNI 0x0a0b0c, reserved
		hdr := []byte{optWords & 0x3f, 0, byte(proto >> 8), byte(proto), 0x0a, 0x0b, 0x0c, 0}
		for i := 0; i < int(optWords)*4; i++ {
			hdr = append(hdr, byte(i))
		}
		return serialize(t, eth, ip, udp, gopacket.Payload(append(hdr, inner...)))
	}
	ping := echo(t, macA, macB, 63, 1)
	teb := uint16(layers.EthernetTypeTransparentEthernetBridging)
	return [][]byte{
		vxlanWrap(t, ping, 4789), vxlanWrap(t, tcp, 8472), vxlanWrap(t, arp, 4789),
		vxlanWrap(t, vxlanWrap(t, ping, 4789), 8472),
		geneve(ping, 0, teb), geneve(tcp, 2, teb), geneve(arp, 1, teb),
		geneve(ping, 0, uint16(layers.EthernetTypeIPv4)), geneve(ping, 63, teb),
	}
}

func BenchmarkDecodeEcho(b *testing.B) {
	d := New()
	d.KeepFrame = false
	frame := echo(b, macA, macB, 64, 1)
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; i < b.N; i++ {
		d.Decode(Input{Data: frame, Len: len(frame)})
	}
}

func BenchmarkDecodeVXLAN(b *testing.B) {
	d := New()
	d.KeepFrame = false
	frame := vxlanWrap(b, echo(b, macA, macB, 64, 1), 8472)
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; i < b.N; i++ {
		d.Decode(Input{Data: frame, Len: len(frame)})
	}
}

// BenchmarkDecodeFlood is the agent's case: the flood's UDP datagram,
// frame kept.
func BenchmarkDecodeFlood(b *testing.B) {
	d := New()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 1, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	frame := serialize(b, eth, ip, udp, gopacket.Payload(make([]byte, 64)))
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; i < b.N; i++ {
		d.Decode(Input{Data: frame, Len: len(frame), PktType: unix.PACKET_OTHERHOST})
	}
}
