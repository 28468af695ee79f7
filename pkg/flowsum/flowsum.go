// Package flowsum counts captured frames per flow, per interface and
// direction, for an agent that summarizes instead of writing one line per
// frame. Its per-frame path reads the flow key straight from the frame
// bytes (Ethernet, 802.1Q, IPv4/IPv6, TCP/UDP/SCTP/ICMP, and the inner
// packet of VXLAN and Geneve frames) and bumps counters in a table of
// bounded size, allocated once: no decoding library, no allocation, no
// encoding. Once per interval the table becomes a wire.Summary and starts
// over.
package flowsum

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// UDP ports of the overlays whose inner packet is the flow (as
// pkg/decode recognises them).
const (
	portVXLAN      = 4789
	portVXLANLinux = 8472 // flannel, the Linux kernel's historical default
	portGeneve     = 6081
)

// Encapsulations.
const (
	EncapNone uint8 = iota
	EncapVXLAN
	EncapGeneve
)

// Directions, as the capture reports them.
const (
	DirIn  uint8 = 0
	DirOut uint8 = 1
)

// TCP flag bits as they are in the TCP header's flags byte.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
)

// Key identifies a flow at one interface in one direction. It is a
// comparable value without padding, so the table hashes it as plain
// memory.
type Key struct {
	Src, Dst  [16]byte // IPv4 in the first 4 bytes; ARP: sender and target IP
	Ifindex   int32
	VNI       uint32 // of the outer header, when Encap is set
	SrcPort   uint16 // TCP/UDP/SCTP port; ICMP: type; ARP: operation
	DstPort   uint16 // TCP/UDP/SCTP port; ICMP: code
	EtherType uint16 // of the (inner) packet
	VLAN      uint16
	Proto     uint8 // IP protocol
	Version   uint8 // 4, 6; 0 when not IP
	Dir       uint8 // DirIn, DirOut
	Encap     uint8 // EncapNone, EncapVXLAN, EncapGeneve
}

// Parse fills k's flow fields from an Ethernet frame (k's Ifindex and
// Dir are left as they are) and returns the TCP flags of the frame.
// Whatever it cannot read (a truncated header, an unknown EtherType)
// leaves the remaining fields zero: the frame still counts, under a
// coarser key.
func Parse(k *Key, frame []byte) (tcpFlags uint8) {
	return k.ether(frame, 0)
}

func (k *Key) ether(b []byte, depth int) uint8 {
	if len(b) < 14 {
		return 0
	}
	et, off := binary.BigEndian.Uint16(b[12:]), 14
	for (et == 0x8100 || et == 0x88a8) && len(b) >= off+4 {
		if k.VLAN == 0 {
			k.VLAN = binary.BigEndian.Uint16(b[off:]) & 0x0fff
		}
		et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
	}
	return k.l3(et, b[off:], depth)
}

func (k *Key) l3(et uint16, b []byte, depth int) uint8 {
	k.EtherType = et
	switch et {
	case 0x0800:
		return k.ipv4(b, depth)
	case 0x86dd:
		return k.ipv6(b, depth)
	case 0x0806:
		// htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
		if len(b) >= 28 && binary.BigEndian.Uint16(b[0:]) == 1 && binary.BigEndian.Uint16(b[2:]) == 0x0800 && b[4] == 6 && b[5] == 4 {
			k.SrcPort = binary.BigEndian.Uint16(b[6:])
			copy(k.Src[:4], b[14:18])
			copy(k.Dst[:4], b[24:28])
		}
	}
	return 0
}

func (k *Key) ipv4(b []byte, depth int) uint8 {
	if len(b) < 20 || b[0]>>4 != 4 {
		return 0
	}
	ihl := int(b[0]&0x0f) * 4
	k.Version, k.Proto = 4, b[9]
	copy(k.Src[:4], b[12:16])
	copy(k.Dst[:4], b[16:20])
	if ihl < 20 || len(b) < ihl {
		return 0
	}
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return 0 // a later fragment: no transport header, no ports
	}
	return k.l4(b[ihl:], depth)
}

func (k *Key) ipv6(b []byte, depth int) uint8 {
	if len(b) < 40 || b[0]>>4 != 6 {
		return 0
	}
	k.Version = 6
	copy(k.Src[:], b[8:24])
	copy(k.Dst[:], b[24:40])
	next, rest := b[6], b[40:]
	// Skip the extension headers that may come before the transport.
	for range 8 {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(rest) < 8 {
				k.Proto = next
				return 0
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				k.Proto = next
				return 0
			}
			next, rest = rest[0], rest[n:]
			continue
		case 44: // fragment
			if len(rest) < 8 {
				k.Proto = next
				return 0
			}
			if binary.BigEndian.Uint16(rest[2:])&0xfff8 != 0 {
				k.Proto = rest[0]
				return 0 // a later fragment: no transport header
			}
			next, rest = rest[0], rest[8:]
			continue
		}
		break
	}
	k.Proto = next
	return k.l4(rest, depth)
}

func (k *Key) l4(b []byte, depth int) uint8 {
	switch k.Proto {
	case 6: // TCP
		if len(b) < 14 {
			return 0
		}
		k.SrcPort, k.DstPort = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
		return b[13] & 0x3f
	case 17: // UDP
		if len(b) < 8 {
			return 0
		}
		k.SrcPort, k.DstPort = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
		if depth == 0 {
			return k.decap(b[8:])
		}
	case 132: // SCTP
		if len(b) >= 4 {
			k.SrcPort, k.DstPort = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
		}
	case 1, 58: // ICMP, ICMPv6
		if len(b) >= 2 {
			k.SrcPort, k.DstPort = uint16(b[0]), uint16(b[1])
		}
	}
	return 0
}

// decap replaces the key's flow fields by those of the inner packet of a
// VXLAN or Geneve frame (k is a UDP flow; payload follows the UDP header).
// A payload that does not parse as one leaves the outer UDP flow. It
// returns the inner packet's TCP flags.
func (k *Key) decap(payload []byte) uint8 {
	var (
		enc   uint8
		vni   uint32
		inner []byte
		et    uint16 = 0x6558 // Ethernet inside
	)
	switch k.DstPort {
	case portVXLAN, portVXLANLinux:
		// Flags with the I bit set, reserved, VNI, reserved.
		if len(payload) < 8+14 || payload[0]&0x08 == 0 {
			return 0
		}
		enc, vni, inner = EncapVXLAN, uint32(payload[4])<<16|uint32(payload[5])<<8|uint32(payload[6]), payload[8:]
	case portGeneve:
		if len(payload) < 8 || payload[0]>>6 != 0 {
			return 0
		}
		n := 8 + int(payload[0]&0x3f)*4
		if len(payload) < n {
			return 0
		}
		enc, vni, inner = EncapGeneve, uint32(payload[4])<<16|uint32(payload[5])<<8|uint32(payload[6]), payload[n:]
		et = binary.BigEndian.Uint16(payload[2:])
	default:
		return 0
	}
	var in Key
	in.VLAN = k.VLAN
	var flags uint8
	switch et {
	case 0x6558:
		if len(inner) < 14 {
			return 0
		}
		flags = in.ether(inner, 1)
	case 0x0800, 0x86dd:
		flags = in.l3(et, inner, 1)
	default:
		return 0
	}
	in.Ifindex, in.Dir, in.Encap, in.VNI = k.Ifindex, k.Dir, enc, vni
	*k = in
	return flags
}

// Flow is the wire form of the key's flow fields.
func (k *Key) Flow() wire.Flow {
	f := wire.Flow{EtherType: etherTypeName(k.EtherType), VLAN: int(k.VLAN)}
	switch {
	case k.EtherType == 0x0806:
		f.Src, f.Dst = ip(k.Src[:4]), ip(k.Dst[:4])
		switch k.SrcPort {
		case 1:
			f.Proto = "who-has"
		case 2:
			f.Proto = "is-at"
		default:
			f.Proto = "arp-op-" + strconv.Itoa(int(k.SrcPort))
		}
		return f
	case k.Version == 4:
		f.Src, f.Dst = ip(k.Src[:4]), ip(k.Dst[:4])
	case k.Version == 6:
		f.Src, f.Dst = ip(k.Src[:]), ip(k.Dst[:])
	default:
		return f
	}
	f.Proto = protoName(k.Proto)
	switch k.Proto {
	case 6, 17, 132:
		f.SrcPort, f.DstPort = int(k.SrcPort), int(k.DstPort)
	case 1, 58:
		f.ICMP = icmpName(k.Proto, uint8(k.SrcPort))
		if k.DstPort != 0 {
			f.ICMP += " code " + strconv.Itoa(int(k.DstPort))
		}
	}
	return f
}

func ip(b []byte) string {
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

func etherTypeName(t uint16) string {
	switch t {
	case 0x0800:
		return "ipv4"
	case 0x86dd:
		return "ipv6"
	case 0x0806:
		return "arp"
	case 0:
		return "unknown"
	}
	return "0x" + strconv.FormatUint(uint64(t)|0x10000, 16)[1:]
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmp6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

func icmpName(proto, t uint8) string {
	if proto == 1 {
		switch t {
		case 8:
			return "echo-request"
		case 0:
			return "echo-reply"
		case 3:
			return "dest-unreachable"
		case 11:
			return "time-exceeded"
		case 5:
			return "redirect"
		}
	} else {
		switch t {
		case 128:
			return "echo-request"
		case 129:
			return "echo-reply"
		case 1:
			return "dest-unreachable"
		case 3:
			return "time-exceeded"
		case 135:
			return "neighbor-solicitation"
		case 136:
			return "neighbor-advertisement"
		case 133:
			return "router-solicitation"
		case 134:
			return "router-advertisement"
		}
	}
	return "type-" + strconv.Itoa(int(t))
}

// FlagNames lists TCP flags as pkg/decode names them, in its order.
func FlagNames(f uint8) string {
	var out []string
	for _, x := range []struct {
		bit  uint8
		name string
	}{{FlagSYN, "SYN"}, {FlagFIN, "FIN"}, {FlagRST, "RST"}, {FlagPSH, "PSH"}, {FlagACK, "ACK"}, {FlagURG, "URG"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// Counters are what a table keeps per key.
type Counters struct {
	Packets, Bytes uint64
	First, Last    int64 // kernel timestamps, ns since the epoch
	Flags          uint8 // TCP flags seen, ORed
}

type record struct {
	Key
	Counters
}

// Table counts frames per key, for one interval at a time. It holds at
// most Max keys; frames of new keys beyond that are counted as
// untracked. Not safe for concurrent use.
type Table struct {
	max  int
	idx  map[Key]int32
	recs []record

	// Totals of the interval.
	Packets, Bytes uint64
	// Untracked counts the frames (and their bytes) that found the table
	// full.
	Untracked, UntrackedBytes uint64
}

// NewTable returns a table for at most max keys per interval, with all
// its memory allocated up front.
func NewTable(max int) *Table {
	if max < 1 {
		max = 1
	}
	return &Table{max: max, idx: make(map[Key]int32, max), recs: make([]record, 0, max)}
}

// Add counts one frame of length n (on the wire) seen at ts (ns) with
// TCP flags flags.
func (t *Table) Add(k *Key, ts int64, n int, flags uint8) {
	t.Packets++
	t.Bytes += uint64(n)
	i, ok := t.idx[*k]
	if !ok {
		if len(t.recs) == t.max {
			t.Untracked++
			t.UntrackedBytes += uint64(n)
			return
		}
		i = int32(len(t.recs))
		t.idx[*k] = i
		t.recs = append(t.recs, record{Key: *k, Counters: Counters{First: ts, Last: ts}})
	}
	r := &t.recs[i]
	r.Packets++
	r.Bytes += uint64(n)
	r.Flags |= flags
	if ts < r.First {
		r.First = ts
	}
	if ts > r.Last {
		r.Last = ts
	}
}

// Len is the number of keys counted in the interval.
func (t *Table) Len() int { return len(t.recs) }

// Summary writes the interval's counts into s: the top records by
// packets (ties: by bytes, then by first seen), the rest summed in
// s.Other. ifname names an interface index. It does not reset the table.
func (t *Table) Summary(s *wire.Summary, top int, ifname func(int) string) {
	s.Packets, s.Bytes = t.Packets, t.Bytes
	slices.SortFunc(t.recs, func(a, b record) int {
		switch {
		case a.Packets != b.Packets:
			return cmpDesc(a.Packets, b.Packets)
		case a.Bytes != b.Bytes:
			return cmpDesc(a.Bytes, b.Bytes)
		}
		return int(a.First - b.First)
	})
	// The index no longer matches the sorted records: rebuild it, so the
	// table can go on counting (the final summary is taken mid-run only
	// in tests).
	for i := range t.recs {
		t.idx[t.recs[i].Key] = int32(i)
	}
	s.Records = s.Records[:0]
	var other wire.FlowOther
	for i, r := range t.recs {
		if i >= top {
			other.Records++
			other.Packets += r.Packets
			other.Bytes += r.Bytes
			continue
		}
		fs := wire.FlowSummary{Flow: r.Key.Flow(), Index: int(r.Ifindex), Iface: ifname(int(r.Ifindex)), Dir: "in",
			VNI: r.VNI, Packets: r.Packets, Bytes: r.Bytes, First: time.Unix(0, r.First), Last: time.Unix(0, r.Last),
			Flags: FlagNames(r.Flags)}
		if r.Dir == DirOut {
			fs.Dir = "out"
		}
		switch r.Encap {
		case EncapVXLAN:
			fs.Encap = "vxlan"
		case EncapGeneve:
			fs.Encap = "geneve"
		}
		s.Records = append(s.Records, fs)
	}
	if t.Untracked > 0 {
		other.Packets += t.Untracked
		other.Bytes += t.UntrackedBytes
		other.Untracked = t.Untracked
	}
	s.Other = nil
	if other.Packets > 0 {
		s.Other = &other
	}
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

// Reset empties the table for the next interval, keeping its memory.
func (t *Table) Reset() {
	clear(t.idx)
	t.recs = t.recs[:0]
	t.Packets, t.Bytes, t.Untracked, t.UntrackedBytes = 0, 0, 0, 0
}
