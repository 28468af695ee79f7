// Package decode turns captured frames into wire.Packet observations: L2/L3/L4
// summaries, ARP fields, the inner packet of VXLAN/Geneve frames, and the
// fingerprint that identifies one packet at every hop it crosses.
package decode

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Well-known UDP ports of overlay encapsulations.
var (
	VXLANPorts  = []int{4789, 8472}
	GenevePorts = []int{6081}
)

// stack is one preallocated set of layers with its parser: the outer and
// the inner (decapsulated) frame each have one, so nothing is allocated per
// layer per packet.
type stack struct {
	eth    layers.Ethernet
	dot1q  layers.Dot1Q
	arp    layers.ARP
	ip4    layers.IPv4
	ip6    layers.IPv6
	icmp4  layers.ICMPv4
	icmp6  layers.ICMPv6
	tcp    layers.TCP
	udp    layers.UDP
	pay    gopacket.Payload
	parser *gopacket.DecodingLayerParser
	found  []gopacket.LayerType
}

func newStack() *stack {
	s := &stack{}
	s.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&s.eth, &s.dot1q, &s.arp, &s.ip4, &s.ip6, &s.icmp4, &s.icmp6, &s.tcp, &s.udp, &s.pay)
	s.parser.IgnoreUnsupported = true
	s.found = make([]gopacket.LayerType, 0, 10)
	return s
}

// Decoder decodes frames. It is not safe for concurrent use.
type Decoder struct {
	outer, inner *stack
	vx           layers.VXLAN
	gen          layers.Geneve
	// KeepFrame copies the captured bytes into Packet.Frame.
	KeepFrame bool
}

// New returns a Decoder.
func New() *Decoder { return &Decoder{outer: newStack(), inner: newStack(), KeepFrame: true} }

// Input is one captured frame with its capture metadata.
type Input struct {
	TS      time.Time
	Ifindex int
	Iface   string
	PktType uint8
	Len     int
	VLAN    int
	Data    []byte // may be reused by the caller after Decode returns
}

// Decode describes the frame. It never fails: what cannot be decoded is
// summarised as such.
func (d *Decoder) Decode(in Input) *wire.Packet {
	p := &wire.Packet{
		TS:      in.TS,
		Index:   in.Ifindex,
		Iface:   in.Iface,
		Dir:     "in",
		PktType: PktTypeName(in.PktType),
		Len:     in.Len,
		CapLen:  len(in.Data),
	}
	if in.PktType == unix.PACKET_OUTGOING {
		p.Dir = "out"
	}
	if d.KeepFrame {
		p.Frame = append([]byte(nil), in.Data...)
	}
	s := d.outer
	_ = s.parser.DecodeLayers(in.Data, &s.found)
	if s.parser.Truncated || in.Len > len(in.Data) {
		p.Truncated = true
	}
	d.describe(s, p, in.VLAN)
	// Overlay: decode the inner frame and describe it instead, keeping the
	// outer headers in Encap.
	if p.L4 != nil && p.L4.Proto == "udp" && p.IP != nil {
		if typ, vni, inner, ok := d.decap(s); ok {
			p.Encap = &wire.Encap{
				Type: typ, VNI: vni,
				OuterSrc: p.IP.Src, OuterDst: p.IP.Dst,
				SrcPort: p.L4.SrcPort, DstPort: p.L4.DstPort,
				OuterMAC: p.Eth.Src,
			}
			outerEth := p.Eth
			p.Eth, p.ARP, p.IP, p.L4 = nil, nil, nil, nil
			is := d.inner
			_ = is.parser.DecodeLayers(inner, &is.found)
			d.describe(is, p, 0)
			if p.Eth == nil {
				p.Eth = outerEth
			}
		}
	}
	p.Summary = Summary(p)
	p.FP = Fingerprint(p, s, d)
	return p
}

func (d *Decoder) decap(s *stack) (typ string, vni uint32, inner []byte, ok bool) {
	payload := s.udp.Payload
	dport := int(s.udp.DstPort)
	for _, port := range VXLANPorts {
		if dport == port {
			if err := d.vx.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil || !d.vx.ValidIDFlag {
				return "", 0, nil, false
			}
			return "vxlan", d.vx.VNI, d.vx.Payload, true
		}
	}
	for _, port := range GenevePorts {
		if dport == port {
			if err := d.gen.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
				return "", 0, nil, false
			}
			if d.gen.Protocol != layers.EthernetTypeTransparentEthernetBridging {
				return "", 0, nil, false
			}
			return "geneve", d.gen.VNI, d.gen.Payload, true
		}
	}
	return "", 0, nil, false
}

func (d *Decoder) describe(s *stack, p *wire.Packet, vlan int) {
	for _, lt := range s.found {
		switch lt {
		case layers.LayerTypeEthernet:
			p.Eth = &wire.Eth{Src: s.eth.SrcMAC.String(), Dst: s.eth.DstMAC.String(), Type: etherTypeName(s.eth.EthernetType), VLAN: vlan}
		case layers.LayerTypeDot1Q:
			if p.Eth != nil {
				p.Eth.VLAN = int(s.dot1q.VLANIdentifier)
				p.Eth.Type = etherTypeName(s.dot1q.Type)
			}
		case layers.LayerTypeARP:
			a := &s.arp
			op := "who-has"
			if a.Operation == layers.ARPReply {
				op = "is-at"
			}
			p.ARP = &wire.ARP{Op: op,
				SenderMAC: net.HardwareAddr(a.SourceHwAddress).String(), SenderIP: net.IP(a.SourceProtAddress).String(),
				TargetMAC: net.HardwareAddr(a.DstHwAddress).String(), TargetIP: net.IP(a.DstProtAddress).String()}
		case layers.LayerTypeIPv4:
			p.IP = &wire.IP{Version: 4, Src: s.ip4.SrcIP.String(), Dst: s.ip4.DstIP.String(), ID: uint32(s.ip4.Id),
				TTL: int(s.ip4.TTL), Proto: ipProtoName(s.ip4.Protocol), Len: int(s.ip4.Length)}
		case layers.LayerTypeIPv6:
			p.IP = &wire.IP{Version: 6, Src: s.ip6.SrcIP.String(), Dst: s.ip6.DstIP.String(), ID: s.ip6.FlowLabel,
				TTL: int(s.ip6.HopLimit), Proto: ipProtoName(s.ip6.NextHeader), Len: int(s.ip6.Length) + 40}
		case layers.LayerTypeTCP:
			t := &s.tcp
			p.L4 = &wire.L4{Proto: "tcp", SrcPort: int(t.SrcPort), DstPort: int(t.DstPort), Seq: t.Seq, Ack: t.Ack,
				Flags: tcpFlags(t), Payload: l4PayloadLen(p.IP, int(t.DataOffset)*4)}
		case layers.LayerTypeUDP:
			u := &s.udp
			p.L4 = &wire.L4{Proto: "udp", SrcPort: int(u.SrcPort), DstPort: int(u.DstPort), Payload: int(u.Length) - 8}
		case layers.LayerTypeICMPv4:
			c := &s.icmp4
			p.L4 = &wire.L4{Proto: "icmp", Type: icmp4Name(c.TypeCode.Type()), Code: int(c.TypeCode.Code()), Payload: len(c.Payload)}
			if t := c.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				p.L4.ICMPID, p.L4.ICMPSeq = int(c.Id), int(c.Seq)
			}
		case layers.LayerTypeICMPv6:
			c := &s.icmp6
			p.L4 = &wire.L4{Proto: "icmp6", Type: icmp6Name(c.TypeCode.Type()), Code: int(c.TypeCode.Code())}
			pl := c.Payload // starts after type, code, checksum
			switch c.TypeCode.Type() {
			case layers.ICMPv6TypeEchoRequest, layers.ICMPv6TypeEchoReply:
				if len(pl) >= 4 {
					p.L4.ICMPID, p.L4.ICMPSeq = int(binary.BigEndian.Uint16(pl)), int(binary.BigEndian.Uint16(pl[2:]))
					p.L4.Payload = len(pl) - 4
				}
			case layers.ICMPv6TypeNeighborSolicitation, layers.ICMPv6TypeNeighborAdvertisement:
				if len(pl) >= 20 {
					p.L4.Target = net.IP(pl[4:20]).String()
				}
			}
		}
	}
}

// l4PayloadLen derives the transport payload length from the IP length,
// which survives truncation of the capture.
func l4PayloadLen(ip *wire.IP, hdr int) int {
	if ip == nil {
		return 0
	}
	ihl := 40
	if ip.Version == 4 {
		ihl = 20 // options are rare on pod traffic; IHL is not kept in wire.IP
	}
	n := ip.Len - ihl - hdr
	if n < 0 {
		return 0
	}
	return n
}

// Fingerprint identifies one packet across hops by content that does not
// change on the way: addresses of the (inner) IP header, IP ID, protocol,
// ports, TCP seq/ack/flags/length, ICMP type/id/seq, the first payload
// bytes — never TTL, MACs or checksums. ARP frames are identified by
// operation, sender and target.
func Fingerprint(p *wire.Packet, s *stack, d *Decoder) string {
	h := fnv.New64a()
	w := func(parts ...string) {
		for _, x := range parts {
			h.Write([]byte(x))
			h.Write([]byte{0})
		}
	}
	switch {
	case p.ARP != nil:
		w("arp", p.ARP.Op, p.ARP.SenderMAC, p.ARP.SenderIP, p.ARP.TargetIP, p.ARP.TargetMAC)
	case p.IP != nil:
		w("ip", p.IP.Src, p.IP.Dst, p.IP.Proto, strconv.Itoa(p.IP.Len))
		if p.IP.Version == 4 {
			w(strconv.FormatUint(uint64(p.IP.ID), 10))
		}
		if l := p.L4; l != nil {
			w(l.Proto, strconv.Itoa(l.SrcPort), strconv.Itoa(l.DstPort), l.Flags,
				strconv.FormatUint(uint64(l.Seq), 10), strconv.FormatUint(uint64(l.Ack), 10),
				l.Type, strconv.Itoa(l.Code), strconv.Itoa(l.ICMPID), strconv.Itoa(l.ICMPSeq), l.Target)
		}
		st := s
		if p.Encap != nil {
			st = d.inner
		}
		if pl := firstPayload(st); len(pl) > 0 {
			h.Write(pl)
		}
	default:
		return ""
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// firstPayload returns up to 8 leading bytes of the transport payload:
// enough to tell apart probes with equal headers, few enough to survive the
// headers-only snaplen even under an overlay's outer headers.
func firstPayload(s *stack) []byte {
	var pl []byte
	for _, lt := range s.found {
		switch lt {
		case layers.LayerTypeTCP:
			pl = s.tcp.Payload
		case layers.LayerTypeUDP:
			pl = s.udp.Payload
		case layers.LayerTypeICMPv4:
			pl = s.icmp4.Payload
		}
	}
	if len(pl) > 8 {
		pl = pl[:8]
	}
	return pl
}

// PktTypeName names an AF_PACKET sll_pkttype.
func PktTypeName(t uint8) string {
	switch t {
	case unix.PACKET_HOST:
		return "host"
	case unix.PACKET_BROADCAST:
		return "broadcast"
	case unix.PACKET_MULTICAST:
		return "multicast"
	case unix.PACKET_OTHERHOST:
		return "otherhost"
	case unix.PACKET_OUTGOING:
		return "outgoing"
	}
	return strconv.Itoa(int(t))
}

func etherTypeName(t layers.EthernetType) string {
	switch t {
	case layers.EthernetTypeIPv4:
		return "ipv4"
	case layers.EthernetTypeIPv6:
		return "ipv6"
	case layers.EthernetTypeARP:
		return "arp"
	case layers.EthernetTypeDot1Q:
		return "802.1q"
	}
	return fmt.Sprintf("0x%04x", uint16(t))
}

func ipProtoName(p layers.IPProtocol) string {
	switch p {
	case layers.IPProtocolTCP:
		return "tcp"
	case layers.IPProtocolUDP:
		return "udp"
	case layers.IPProtocolICMPv4:
		return "icmp"
	case layers.IPProtocolICMPv6:
		return "icmp6"
	}
	return strconv.Itoa(int(p))
}

func tcpFlags(t *layers.TCP) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{t.SYN, "SYN"}, {t.FIN, "FIN"}, {t.RST, "RST"}, {t.PSH, "PSH"}, {t.ACK, "ACK"}, {t.URG, "URG"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ",")
}

func icmp4Name(t uint8) string {
	switch t {
	case layers.ICMPv4TypeEchoRequest:
		return "echo-request"
	case layers.ICMPv4TypeEchoReply:
		return "echo-reply"
	case layers.ICMPv4TypeDestinationUnreachable:
		return "dest-unreachable"
	case layers.ICMPv4TypeTimeExceeded:
		return "time-exceeded"
	case layers.ICMPv4TypeRedirect:
		return "redirect"
	}
	return "type-" + strconv.Itoa(int(t))
}

func icmp6Name(t uint8) string {
	switch t {
	case layers.ICMPv6TypeEchoRequest:
		return "echo-request"
	case layers.ICMPv6TypeEchoReply:
		return "echo-reply"
	case layers.ICMPv6TypeDestinationUnreachable:
		return "dest-unreachable"
	case layers.ICMPv6TypeTimeExceeded:
		return "time-exceeded"
	case layers.ICMPv6TypeNeighborSolicitation:
		return "neighbor-solicitation"
	case layers.ICMPv6TypeNeighborAdvertisement:
		return "neighbor-advertisement"
	case layers.ICMPv6TypeRouterSolicitation:
		return "router-solicitation"
	case layers.ICMPv6TypeRouterAdvertisement:
		return "router-advertisement"
	}
	return "type-" + strconv.Itoa(int(t))
}

// Summary is a one-line, tcpdump-like description of the (inner) packet.
func Summary(p *wire.Packet) string {
	switch {
	case p.ARP != nil:
		if p.ARP.Op == "is-at" {
			return fmt.Sprintf("ARP %s is-at %s", p.ARP.SenderIP, p.ARP.SenderMAC)
		}
		return fmt.Sprintf("ARP who-has %s tell %s", p.ARP.TargetIP, p.ARP.SenderIP)
	case p.IP != nil && p.L4 != nil:
		l := p.L4
		switch l.Proto {
		case "icmp", "icmp6":
			name := "ICMP"
			if l.Proto == "icmp6" {
				name = "ICMPv6"
			}
			switch {
			case l.Type == "echo-request" || l.Type == "echo-reply":
				return fmt.Sprintf("%s %s %s → %s id %d seq %d", name, strings.Replace(l.Type, "-", " ", 1), p.IP.Src, p.IP.Dst, l.ICMPID, l.ICMPSeq)
			case l.Target != "":
				return fmt.Sprintf("%s %s %s → %s target %s", name, l.Type, p.IP.Src, p.IP.Dst, l.Target)
			default:
				return fmt.Sprintf("%s %s code %d %s → %s", name, l.Type, l.Code, p.IP.Src, p.IP.Dst)
			}
		case "tcp":
			return fmt.Sprintf("TCP %s → %s [%s] seq %d len %d", hostPort(p.IP.Src, l.SrcPort), hostPort(p.IP.Dst, l.DstPort), l.Flags, l.Seq, l.Payload)
		case "udp":
			return fmt.Sprintf("UDP %s → %s len %d", hostPort(p.IP.Src, l.SrcPort), hostPort(p.IP.Dst, l.DstPort), l.Payload)
		}
		return fmt.Sprintf("IP %s → %s proto %s", p.IP.Src, p.IP.Dst, p.IP.Proto)
	case p.IP != nil:
		return fmt.Sprintf("IP %s → %s proto %s", p.IP.Src, p.IP.Dst, p.IP.Proto)
	case p.Eth != nil:
		return fmt.Sprintf("ethertype %s %s → %s", p.Eth.Type, p.Eth.Src, p.Eth.Dst)
	}
	return fmt.Sprintf("undecoded frame, %d bytes", p.Len)
}

func hostPort(ip string, port int) string {
	return net.JoinHostPort(ip, strconv.Itoa(port))
}
