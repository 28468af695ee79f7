// Package decode turns captured frames into wire.Packet observations: L2/L3/L4
// summaries, ARP fields, the inner packet of VXLAN/Geneve frames, and the
// fingerprint that identifies one packet at every hop it crosses.
package decode

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
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
	// KeepFrame copies the captured bytes into Packet.Frame.
	KeepFrame bool
	// HeadersOnly keeps in Packet.Frame only the frame's headers, up to
	// the end of the innermost transport header (TCP with its options,
	// UDP, ICMP; inside VXLAN and Geneve the inner packet's): the
	// application's bytes are cut off. An ICMP error keeps the IP and
	// transport headers it quotes (they name the packet it is about), an
	// NDP or other ICMPv6 control message all of itself, ARP all of
	// itself; a packet whose transport is not decoded keeps its IP header,
	// anything else its Ethernet header. Packet.Len still tells the length
	// on the wire. The fingerprint is computed from the whole capture
	// first. Off by default.
	HeadersOnly bool
	// Reuse makes Decode return a Packet that the Decoder owns and
	// overwrites on the next call, whose Frame is Input.Data itself (not
	// a copy): for a caller that writes each packet out at once, it saves
	// the allocations. Off by default.
	Reuse   bool
	scratch block

	// addrs caches the text of the MAC and IP addresses seen lately: a
	// pod's traffic has few distinct ones, and formatting them anew for
	// every frame was most of the decoding cost.
	addrs map[addrKey]string
	// slab is where frames are copied to, many to a chunk (each Frame is
	// capped at its own length, so appending to one never reaches another).
	slab []byte
	buf  []byte // scratch for the summary
}

// New returns a Decoder.
func New() *Decoder {
	return &Decoder{outer: newStack(), inner: newStack(), KeepFrame: true, addrs: make(map[addrKey]string)}
}

// maxAddrs bounds the address cache; it starts over when full.
const maxAddrs = 4096

// slabSize is the chunk frames are copied into.
const slabSize = 64 << 10

type addrKey struct {
	mac bool
	n   uint8
	b   [16]byte
}

// ipString is net.IP(b).String(), cached for 4- and 16-byte addresses.
func (d *Decoder) ipString(b []byte) string {
	if len(b) != 4 && len(b) != 16 {
		return net.IP(b).String()
	}
	return d.addr(false, b)
}

// macString is net.HardwareAddr(b).String(), cached.
func (d *Decoder) macString(b []byte) string {
	if len(b) > 16 {
		return net.HardwareAddr(b).String()
	}
	return d.addr(true, b)
}

func (d *Decoder) addr(mac bool, b []byte) string {
	k := addrKey{mac: mac, n: uint8(len(b))}
	copy(k.b[:], b)
	if s, ok := d.addrs[k]; ok {
		return s
	}
	var s string
	if mac {
		s = net.HardwareAddr(b).String()
	} else {
		s = net.IP(b).String()
	}
	if d.addrs == nil || len(d.addrs) >= maxAddrs {
		d.addrs = make(map[addrKey]string)
	}
	d.addrs[k] = s
	return s
}

// copyFrame copies b into the slab.
func (d *Decoder) copyFrame(b []byte) []byte {
	if len(b) > slabSize/4 {
		return append([]byte(nil), b...)
	}
	if cap(d.slab)-len(d.slab) < len(b) {
		d.slab = make([]byte, 0, slabSize)
	}
	n := len(d.slab)
	d.slab = append(d.slab, b...)
	return d.slab[n : n+len(b) : n+len(b)]
}

// block holds a Packet and everything it points to, allocated at once.
type block struct {
	p     wire.Packet
	eth   [2]wire.Eth // outer, inner
	arp   wire.ARP
	ip    wire.IP
	l4    wire.L4
	encap wire.Encap
}

// Input is one captured frame with its capture metadata.
type Input struct {
	TS      time.Time
	Ifindex int
	Iface   string
	PktType uint8
	Len     int
	VLAN    int
	Data    []byte // may be reused by the caller after Decode returns (unless Decoder.Reuse)
}

// Decode describes the frame. It never fails: what cannot be decoded is
// summarised as such.
func (d *Decoder) Decode(in Input) *wire.Packet {
	var blk *block
	if d.Reuse {
		blk = &d.scratch
	} else {
		blk = new(block)
	}
	p := &blk.p
	*p = wire.Packet{
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
	s := d.outer
	_ = s.parser.DecodeLayers(in.Data, &s.found)
	if s.parser.Truncated || in.Len > len(in.Data) {
		p.Truncated = true
	}
	d.describe(s, p, in.VLAN, blk, 0)
	// Overlay: decode the inner frame and describe it instead, keeping the
	// outer headers in Encap.
	headers := s          // the stack whose last header ends what HeadersOnly keeps
	var innerFrame []byte // the inner frame, when decapsulated
	if p.L4 != nil && p.L4.Proto == "udp" && p.IP != nil {
		if typ, vni, inner, ok := d.decap(s); ok {
			headers, innerFrame = d.inner, inner
			blk.encap = wire.Encap{
				Type: typ, VNI: vni,
				OuterSrc: p.IP.Src, OuterDst: p.IP.Dst,
				SrcPort: p.L4.SrcPort, DstPort: p.L4.DstPort,
				OuterMAC: p.Eth.Src,
			}
			p.Encap = &blk.encap
			outerEth := p.Eth
			p.Eth, p.ARP, p.IP, p.L4 = nil, nil, nil, nil
			is := d.inner
			_ = is.parser.DecodeLayers(inner, &is.found)
			d.describe(is, p, 0, blk, 1)
			if p.Eth == nil {
				p.Eth = outerEth
			}
		}
	}
	d.buf = appendSummary(d.buf[:0], p)
	p.Summary = string(d.buf)
	p.FP = Fingerprint(p, s, d)
	if d.KeepFrame {
		frame := in.Data
		if d.HeadersOnly {
			frame = frame[:headerEnd(in.Data, headers, innerFrame)]
			p.CapLen = len(frame)
		}
		if d.Reuse {
			p.Frame = frame
		} else {
			p.Frame = d.copyFrame(frame)
		}
	}
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
			proto, vni, inner, ok := geneve(payload)
			if !ok || proto != layers.EthernetTypeTransparentEthernetBridging {
				return "", 0, nil, false
			}
			return "geneve", vni, inner, true
		}
	}
	return "", 0, nil, false
}

// geneve reads a Geneve header (RFC 8926): the protocol of the payload,
// the VNI and the payload after the options. gopacket's Geneve decoder is
// not used: it indexes past the end of some truncated headers (a panic in
// the agent), and a reused one keeps every option it ever read.
func geneve(b []byte) (proto layers.EthernetType, vni uint32, payload []byte, ok bool) {
	if len(b) < 8 {
		return 0, 0, nil, false
	}
	n := 8 + int(b[0]&0x3f)*4 // fixed header, then options in 4-byte words
	if len(b) < n {
		return 0, 0, nil, false
	}
	proto = layers.EthernetType(binary.BigEndian.Uint16(b[2:4]))
	vni = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	return proto, vni, b[n:], true
}

// describe fills p from the layers s found, in structures of blk; which
// says whether s is the outer (0) or the inner (1) frame.
func (d *Decoder) describe(s *stack, p *wire.Packet, vlan int, blk *block, which int) {
	for _, lt := range s.found {
		switch lt {
		case layers.LayerTypeEthernet:
			blk.eth[which] = wire.Eth{Src: d.macString(s.eth.SrcMAC), Dst: d.macString(s.eth.DstMAC), Type: etherTypeName(s.eth.EthernetType), VLAN: vlan}
			p.Eth = &blk.eth[which]
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
			blk.arp = wire.ARP{Op: op,
				SenderMAC: d.macString(a.SourceHwAddress), SenderIP: d.ipString(a.SourceProtAddress),
				TargetMAC: d.macString(a.DstHwAddress), TargetIP: d.ipString(a.DstProtAddress)}
			p.ARP = &blk.arp
		case layers.LayerTypeIPv4:
			blk.ip = wire.IP{Version: 4, Src: d.ipString(s.ip4.SrcIP), Dst: d.ipString(s.ip4.DstIP), ID: uint32(s.ip4.Id),
				TTL: int(s.ip4.TTL), Proto: ipProtoName(s.ip4.Protocol), Len: int(s.ip4.Length)}
			p.IP = &blk.ip
		case layers.LayerTypeIPv6:
			blk.ip = wire.IP{Version: 6, Src: d.ipString(s.ip6.SrcIP), Dst: d.ipString(s.ip6.DstIP), ID: s.ip6.FlowLabel,
				TTL: int(s.ip6.HopLimit), Proto: ipProtoName(s.ip6.NextHeader), Len: int(s.ip6.Length) + 40}
			p.IP = &blk.ip
		case layers.LayerTypeTCP:
			t := &s.tcp
			blk.l4 = wire.L4{Proto: "tcp", SrcPort: int(t.SrcPort), DstPort: int(t.DstPort), Seq: t.Seq, Ack: t.Ack,
				Flags: tcpFlags(t), Payload: l4PayloadLen(p.IP, int(t.DataOffset)*4)}
			p.L4 = &blk.l4
		case layers.LayerTypeUDP:
			u := &s.udp
			blk.l4 = wire.L4{Proto: "udp", SrcPort: int(u.SrcPort), DstPort: int(u.DstPort), Payload: int(u.Length) - 8}
			p.L4 = &blk.l4
		case layers.LayerTypeICMPv4:
			c := &s.icmp4
			blk.l4 = wire.L4{Proto: "icmp", Type: icmp4Name(c.TypeCode.Type()), Code: int(c.TypeCode.Code()), Payload: len(c.Payload)}
			p.L4 = &blk.l4
			if t := c.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				p.L4.ICMPID, p.L4.ICMPSeq = int(c.Id), int(c.Seq)
			}
		case layers.LayerTypeICMPv6:
			c := &s.icmp6
			blk.l4 = wire.L4{Proto: "icmp6", Type: icmp6Name(c.TypeCode.Type()), Code: int(c.TypeCode.Code())}
			p.L4 = &blk.l4
			pl := c.Payload // starts after type, code, checksum
			switch c.TypeCode.Type() {
			case layers.ICMPv6TypeEchoRequest, layers.ICMPv6TypeEchoReply:
				if len(pl) >= 4 {
					p.L4.ICMPID, p.L4.ICMPSeq = int(binary.BigEndian.Uint16(pl)), int(binary.BigEndian.Uint16(pl[2:]))
					p.L4.Payload = len(pl) - 4
				}
			case layers.ICMPv6TypeNeighborSolicitation, layers.ICMPv6TypeNeighborAdvertisement:
				if len(pl) >= 20 {
					p.L4.Target = d.ipString(pl[4:20])
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
	// The hash runs over the fields' decimal text, each followed by a NUL
	// byte: the same bytes as ever, so fingerprints stay comparable with
	// those of earlier agents.
	h := fnvHash(fnvOffset)
	switch {
	case p.ARP != nil:
		h = h.str("arp").str(p.ARP.Op).str(p.ARP.SenderMAC).str(p.ARP.SenderIP).str(p.ARP.TargetIP).str(p.ARP.TargetMAC)
	case p.IP != nil:
		h = h.str("ip").str(p.IP.Src).str(p.IP.Dst).str(p.IP.Proto).int(int64(p.IP.Len))
		if p.IP.Version == 4 {
			h = h.int(int64(p.IP.ID))
		}
		if l := p.L4; l != nil {
			h = h.str(l.Proto).int(int64(l.SrcPort)).int(int64(l.DstPort)).str(l.Flags).
				int(int64(l.Seq)).int(int64(l.Ack)).
				str(l.Type).int(int64(l.Code)).int(int64(l.ICMPID)).int(int64(l.ICMPSeq)).str(l.Target)
		}
		st := s
		if p.Encap != nil {
			st = d.inner
		}
		h = h.bytes(firstPayload(st))
	default:
		return ""
	}
	const hex = "0123456789abcdef"
	var out [16]byte
	for i := 15; i >= 0; i-- {
		out[i] = hex[h&0xf]
		h >>= 4
	}
	return string(out[:])
}

// fnvHash is a 64-bit FNV-1a hash in progress.
type fnvHash uint64

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (h fnvHash) bytes(b []byte) fnvHash {
	for _, c := range b {
		h ^= fnvHash(c)
		h *= fnvPrime
	}
	return h
}

// str hashes s and a NUL separator.
func (h fnvHash) str(s string) fnvHash {
	for i := 0; i < len(s); i++ {
		h ^= fnvHash(s[i])
		h *= fnvPrime
	}
	return h * fnvPrime // ^= 0
}

// int hashes v in decimal and a NUL separator.
func (h fnvHash) int(v int64) fnvHash {
	var b [20]byte
	return h.bytes(strconv.AppendInt(b[:0], v, 10)) * fnvPrime
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

// tcpFlagNames are the flag lists of every combination of SYN (bit 0),
// FIN, RST, PSH, ACK and URG (bit 5).
var tcpFlagNames = func() (names [64]string) {
	order := []string{"SYN", "FIN", "RST", "PSH", "ACK", "URG"}
	for i := range names {
		var f []string
		for bit, name := range order {
			if i&(1<<bit) != 0 {
				f = append(f, name)
			}
		}
		names[i] = strings.Join(f, ",")
	}
	return names
}()

func tcpFlags(t *layers.TCP) string {
	i := 0
	for bit, on := range [...]bool{t.SYN, t.FIN, t.RST, t.PSH, t.ACK, t.URG} {
		if on {
			i |= 1 << bit
		}
	}
	return tcpFlagNames[i]
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

func appendSummary(b []byte, p *wire.Packet) []byte {
	switch {
	case p.ARP != nil:
		if p.ARP.Op == "is-at" {
			return append(append(append(append(b, "ARP "...), p.ARP.SenderIP...), " is-at "...), p.ARP.SenderMAC...)
		}
		return append(append(append(append(b, "ARP who-has "...), p.ARP.TargetIP...), " tell "...), p.ARP.SenderIP...)
	case p.IP != nil && p.L4 != nil:
		l := p.L4
		switch l.Proto {
		case "icmp", "icmp6":
			name := "ICMP "
			if l.Proto == "icmp6" {
				name = "ICMPv6 "
			}
			b = append(b, name...)
			switch {
			case l.Type == "echo-request" || l.Type == "echo-reply":
				if l.Type == "echo-request" {
					b = append(b, "echo request"...)
				} else {
					b = append(b, "echo reply"...)
				}
				b = appendArrow(append(b, ' '), p.IP.Src, p.IP.Dst)
				b = strconv.AppendInt(append(b, " id "...), int64(l.ICMPID), 10)
				return strconv.AppendInt(append(b, " seq "...), int64(l.ICMPSeq), 10)
			case l.Target != "":
				b = appendArrow(append(append(b, l.Type...), ' '), p.IP.Src, p.IP.Dst)
				return append(append(b, " target "...), l.Target...)
			default:
				b = strconv.AppendInt(append(append(b, l.Type...), " code "...), int64(l.Code), 10)
				return appendArrow(append(b, ' '), p.IP.Src, p.IP.Dst)
			}
		case "tcp":
			b = appendHostPort(append(b, "TCP "...), p.IP.Src, l.SrcPort)
			b = appendHostPort(append(b, " → "...), p.IP.Dst, l.DstPort)
			b = strconv.AppendUint(append(append(append(b, " ["...), l.Flags...), "] seq "...), uint64(l.Seq), 10)
			return strconv.AppendInt(append(b, " len "...), int64(l.Payload), 10)
		case "udp":
			b = appendHostPort(append(b, "UDP "...), p.IP.Src, l.SrcPort)
			b = appendHostPort(append(b, " → "...), p.IP.Dst, l.DstPort)
			return strconv.AppendInt(append(b, " len "...), int64(l.Payload), 10)
		}
		return append(appendArrow(append(b, "IP "...), p.IP.Src, p.IP.Dst), " proto "+p.IP.Proto...)
	case p.IP != nil:
		return append(appendArrow(append(b, "IP "...), p.IP.Src, p.IP.Dst), " proto "+p.IP.Proto...)
	case p.Eth != nil:
		b = append(append(append(b, "ethertype "...), p.Eth.Type...), ' ')
		return appendArrow(b, p.Eth.Src, p.Eth.Dst)
	}
	return append(strconv.AppendInt(append(b, "undecoded frame, "...), int64(p.Len), 10), " bytes"...)
}

// appendArrow appends "src → dst".
func appendArrow(b []byte, src, dst string) []byte {
	return append(append(append(b, src...), " → "...), dst...)
}

// appendHostPort appends net.JoinHostPort(ip, port).
func appendHostPort(b []byte, ip string, port int) []byte {
	if strings.IndexByte(ip, ':') >= 0 {
		b = append(append(append(b, '['), ip...), ']')
	} else {
		b = append(b, ip...)
	}
	return strconv.AppendInt(append(b, ':'), int64(port), 10)
}
