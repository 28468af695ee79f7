package nftrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
)

// Render writes a rule's expressions as nft writes them (`nft list
// ruleset`, without counters' values and handles): a payload or meta load
// and the comparison that follows it become one match (`tcp dport 8080`,
// `ip saddr 10.0.0.0/8`, `iifname "eth*"`), a protocol match that the next
// match implies is left out as nft leaves it out, and the verdict comes
// last. Matches and targets of iptables-nft's compatibility layer are named
// as nft names them when it cannot translate them (`xt match "conntrack"`).
// An expression this renderer does not know is named in brackets.
func Render(exprs []expr.Any) string {
	r := renderer{regs: map[uint32]*field{}, imm: map[uint32][]byte{}}
	for _, e := range exprs {
		r.expr(e)
	}
	// nft leaves out a dependency the next match implies: `meta l4proto
	// tcp` before `tcp dport 8080`, `meta protocol ip` before `ip saddr`.
	var out []string
	for i, s := range r.stmts {
		if s.dep != "" && i+1 < len(r.stmts) && strings.HasPrefix(r.stmts[i+1].text, s.dep+" ") {
			continue
		}
		out = append(out, s.text)
	}
	return strings.Join(out, " ")
}

type stmt struct {
	text string
	dep  string // the protocol this match is a dependency for ("tcp", "ip")
}

// field is what a register holds: a named field of the packet, its
// length, and a mask applied to it.
type field struct {
	name string // "tcp dport", "ip saddr", "meta l4proto", "ct state"
	kind string // how to print its value: addr, port, proto, ifname, ethertype, nfproto, icmptype, ctstate, mark, int, hex
	len  uint32
	part uint32 // an address of len bytes of which the first part were loaded
	mask []byte
}

type renderer struct {
	regs  map[uint32]*field
	imm   map[uint32][]byte
	stmts []stmt
	l3    string // "ip", "ip6": from a protocol match
	l4    string // "tcp", "udp", "icmp", "icmpv6": from a protocol match
	// lastGte is the value of the last statement when it is a ">=":
	// with a "<=" of the same field next, the two are one range.
	lastGte string
}

func (r *renderer) add(text string) { r.stmts = append(r.stmts, stmt{text: text}) }

func (r *renderer) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Meta:
		if e.SourceRegister {
			r.add(metaName(e.Key) + " set " + r.immText(e.Register, metaKind(e.Key)))
			return
		}
		r.regs[e.Register] = &field{name: metaName(e.Key), kind: metaKind(e.Key)}
	case *expr.Payload:
		if e.OperationType != expr.PayloadLoad {
			r.add(fmt.Sprintf("%s set %s", r.payloadField(e).name, r.immText(e.SourceRegister, "hex")))
			return
		}
		r.regs[e.DestRegister] = r.payloadField(e)
	case *expr.Ct:
		if e.SourceRegister {
			r.add(ctName(e.Key) + " set " + r.immText(e.Register, "hex"))
			return
		}
		r.regs[e.Register] = &field{name: ctName(e.Key), kind: ctKind(e.Key)}
	case *expr.Bitwise:
		f := r.reg(e.SourceRegister)
		cp := *f
		cp.mask = e.Mask
		r.regs[e.DestRegister] = &cp
	case *expr.Cmp:
		r.cmp(r.reg(e.Register), e.Op, e.Data)
	case *expr.Range:
		f := r.reg(e.Register)
		op := ""
		if e.Op == expr.CmpOpNeq {
			op = "!= "
		}
		r.add(fmt.Sprintf("%s %s%s-%s", f.name, op, value(f, e.FromData), value(f, e.ToData)))
	case *expr.Lookup:
		f := r.reg(e.SourceRegister)
		op := ""
		if e.Invert {
			op = "!= "
		}
		switch {
		case e.IsDestRegSet && e.DestRegister == 0:
			r.add(fmt.Sprintf("%s vmap @%s", f.name, e.SetName))
		case e.IsDestRegSet:
			r.regs[e.DestRegister] = &field{name: fmt.Sprintf("%s map @%s", f.name, e.SetName), kind: "hex"}
		default:
			r.add(fmt.Sprintf("%s %s@%s", f.name, op, e.SetName))
		}
	case *expr.Immediate:
		r.imm[e.Register] = e.Data
	case *expr.Verdict:
		r.add(verdictText(e))
	case *expr.Counter:
		r.add("counter")
	case *expr.Log:
		s := "log"
		if len(e.Data) > 0 {
			s += " prefix " + strconv.Quote(strings.TrimRight(string(e.Data), "\x00"))
		}
		r.add(s)
	case *expr.Limit:
		r.add(fmt.Sprintf("limit rate %s%d/%s", map[bool]string{true: "over "}[e.Over], e.Rate, limitUnit(e.Unit)))
	case *expr.Queue:
		s := "queue"
		if e.Flag&expr.QueueFlagBypass != 0 {
			s += " flags bypass"
		}
		if e.Total > 1 {
			s += fmt.Sprintf(" num %d-%d", e.Num, e.Num+e.Total-1)
		} else {
			s += fmt.Sprintf(" num %d", e.Num)
		}
		r.add(s)
	case *expr.Reject:
		r.add(rejectText(e))
	case *expr.Masq:
		r.add("masquerade")
	case *expr.Redir:
		r.add("redirect")
	case *expr.NAT:
		kind := "snat"
		if e.Type == expr.NATTypeDestNAT {
			kind = "dnat"
		}
		s := kind
		if a := r.imm[e.RegAddrMin]; e.RegAddrMin != 0 && len(a) > 0 {
			s += " to " + addrText(a)
			if p := r.imm[e.RegProtoMin]; e.RegProtoMin != 0 && len(p) >= 2 {
				s += ":" + strconv.Itoa(int(binary.BigEndian.Uint16(p)))
			}
		}
		r.add(s)
	case *expr.Notrack:
		r.add("notrack")
	case *expr.Match:
		r.add(fmt.Sprintf("xt match %q", e.Name))
	case *expr.Target:
		r.add(fmt.Sprintf("xt target %q", e.Name))
	case *expr.Objref:
		r.add(fmt.Sprintf("%s name %q", objrefType(e.Type), e.Name))
	case *expr.Dynset:
		r.add("update @" + e.SetName)
	default:
		name := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
		r.add("[" + name + "]")
	}
}

func (r *renderer) reg(n uint32) *field {
	if f, ok := r.regs[n]; ok {
		return f
	}
	return &field{name: fmt.Sprintf("reg %d", n), kind: "hex"}
}

func (r *renderer) immText(reg uint32, kind string) string {
	d, ok := r.imm[reg]
	if !ok {
		return fmt.Sprintf("reg %d", reg)
	}
	return value(&field{kind: kind}, d)
}

// cmp writes one comparison of a register with a value.
func (r *renderer) cmp(f *field, op expr.CmpOp, data []byte) {
	ops := map[expr.CmpOp]string{expr.CmpOpEq: "", expr.CmpOpNeq: "!= ", expr.CmpOpLt: "< ",
		expr.CmpOpLte: "<= ", expr.CmpOpGt: "> ", expr.CmpOpGte: ">= "}
	// A flag test: (field & mask) != 0, as `ct state new,established`.
	if f.mask != nil && op == expr.CmpOpNeq && allZero(data) {
		if f.kind == "ctstate" {
			r.add(f.name + " " + ctStates(f.mask))
			return
		}
		r.add(fmt.Sprintf("%s & %s != 0", f.name, value(&field{kind: "hex"}, f.mask)))
		return
	}
	// A prefix: (address & mask) == net, or its first bytes only.
	if f.kind == "addr" && (f.mask != nil || f.part < f.len) {
		full := make([]byte, f.len)
		copy(full, data)
		mask := f.mask
		if mask == nil {
			mask = bytes.Repeat([]byte{0xff}, len(data))
		}
		r.add(f.name + " " + ops[op] + prefixText(full, mask))
		return
	}
	// A range as two comparisons: >= from, then <= to.
	if n := len(r.stmts); op == expr.CmpOpLte && n > 0 && r.lastGte != "" && r.stmts[n-1].text == f.name+" >= "+r.lastGte {
		r.stmts[n-1].text = f.name + " " + r.lastGte + "-" + value(f, data)
		r.lastGte = ""
		return
	}
	r.lastGte = ""
	if op == expr.CmpOpGte {
		r.lastGte = value(f, data)
	}
	v := value(f, data)
	s := stmt{text: f.name + " " + ops[op] + v}
	if op == expr.CmpOpEq {
		switch f.name {
		case "meta l4proto", "ip protocol", "ip6 nexthdr":
			s.dep, r.l4 = v, v
		case "meta protocol", "ether type":
			s.dep, r.l3 = v, v
		case "meta nfproto":
			s.dep = map[string]string{"ipv4": "ip", "ipv6": "ip6"}[v]
			r.l3 = s.dep
		}
	}
	r.stmts = append(r.stmts, s)
}

// payloadField names a payload load as nft does, in the context of the
// protocol matches before it.
func (r *renderer) payloadField(p *expr.Payload) *field {
	raw := func(base string) *field {
		return &field{name: fmt.Sprintf("@%s,%d,%d", base, p.Offset*8, p.Len*8), kind: "hex", len: p.Len}
	}
	switch p.Base {
	case expr.PayloadBaseLLHeader:
		switch {
		case p.Offset == 0 && p.Len == 6:
			return &field{name: "ether daddr", kind: "mac"}
		case p.Offset == 6 && p.Len == 6:
			return &field{name: "ether saddr", kind: "mac"}
		case p.Offset == 12 && p.Len == 2:
			return &field{name: "ether type", kind: "ethertype"}
		}
		return raw("ll")
	case expr.PayloadBaseNetworkHeader:
		// An address, or its first bytes: nft loads only the bytes a
		// prefix needs (10.0.0.0/8: one byte).
		if r.l3 != "ip6" && p.Len <= 4 && (p.Offset == 12 || p.Offset == 16) {
			return &field{name: map[uint32]string{12: "ip saddr", 16: "ip daddr"}[p.Offset], kind: "addr", len: 4, part: p.Len}
		}
		if p.Len <= 16 && (p.Offset == 8 || p.Offset == 24) && (r.l3 == "ip6" || p.Len > 4) {
			return &field{name: map[uint32]string{8: "ip6 saddr", 24: "ip6 daddr"}[p.Offset], kind: "addr", len: 16, part: p.Len}
		}
		if r.l3 != "ip6" && p.Offset == 9 && p.Len == 1 {
			return &field{name: "ip protocol", kind: "proto"}
		}
		if r.l3 == "ip6" && p.Offset == 6 && p.Len == 1 {
			return &field{name: "ip6 nexthdr", kind: "proto"}
		}
		return raw("nh")
	case expr.PayloadBaseTransportHeader:
		switch l4 := r.l4; l4 {
		case "tcp", "udp", "sctp", "udplite":
			switch {
			case p.Offset == 0 && p.Len == 2:
				return &field{name: l4 + " sport", kind: "int"}
			case p.Offset == 2 && p.Len == 2:
				return &field{name: l4 + " dport", kind: "int"}
			case l4 == "tcp" && p.Offset == 13 && p.Len == 1:
				return &field{name: "tcp flags", kind: "tcpflags"}
			}
		case "icmp", "ipv6-icmp", "icmpv6":
			name := "icmp"
			if l4 != "icmp" {
				name = "icmpv6"
			}
			switch {
			case p.Offset == 0 && p.Len == 1:
				return &field{name: name + " type", kind: name + "type"}
			case p.Offset == 1 && p.Len == 1:
				return &field{name: name + " code", kind: "int"}
			case p.Offset == 4 && p.Len == 2:
				return &field{name: name + " id", kind: "int"}
			case p.Offset == 6 && p.Len == 2:
				return &field{name: name + " sequence", kind: "int"}
			}
		}
		return raw("th")
	}
	return raw("ih")
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyIIF:
		return "iif"
	case expr.MetaKeyOIF:
		return "oif"
	}
	names := map[expr.MetaKey]string{
		expr.MetaKeyLEN: "length", expr.MetaKeyPROTOCOL: "protocol", expr.MetaKeyPRIORITY: "priority",
		expr.MetaKeyMARK: "mark", expr.MetaKeyIIFTYPE: "iiftype", expr.MetaKeyOIFTYPE: "oiftype",
		expr.MetaKeySKUID: "skuid", expr.MetaKeySKGID: "skgid", expr.MetaKeyNFTRACE: "nftrace",
		expr.MetaKeyNFPROTO: "nfproto", expr.MetaKeyL4PROTO: "l4proto", expr.MetaKeyBRIIIFNAME: "ibrname",
		expr.MetaKeyBRIOIFNAME: "obrname", expr.MetaKeyPKTTYPE: "pkttype", expr.MetaKeyCPU: "cpu",
		expr.MetaKeyCGROUP: "cgroup", expr.MetaKeyPRANDOM: "random", expr.MetaKeySECMARK: "secmark",
	}
	if n, ok := names[k]; ok {
		return "meta " + n
	}
	return fmt.Sprintf("meta key %d", k)
}

func metaKind(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME, expr.MetaKeyBRIIIFNAME, expr.MetaKeyBRIOIFNAME:
		return "ifname"
	case expr.MetaKeyL4PROTO:
		return "proto"
	case expr.MetaKeyPROTOCOL:
		return "ethertype"
	case expr.MetaKeyNFPROTO:
		return "nfproto"
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyIIF, expr.MetaKeyOIF, expr.MetaKeySKUID, expr.MetaKeySKGID, expr.MetaKeyNFTRACE, expr.MetaKeyCPU, expr.MetaKeyLEN:
		return "hostint"
	}
	return "hex"
}

func ctName(k expr.CtKey) string {
	names := map[expr.CtKey]string{
		expr.CtKeySTATE: "state", expr.CtKeyDIRECTION: "direction", expr.CtKeySTATUS: "status",
		expr.CtKeyMARK: "mark", expr.CtKeyZONE: "zone", expr.CtKeySRC: "original saddr", expr.CtKeyDST: "original daddr",
		expr.CtKeyPROTOSRC: "original proto-src", expr.CtKeyPROTODST: "original proto-dst", expr.CtKeyLABELS: "label",
	}
	if n, ok := names[k]; ok {
		return "ct " + n
	}
	return fmt.Sprintf("ct key %d", k)
}

func ctKind(k expr.CtKey) string {
	switch k {
	case expr.CtKeySTATE:
		return "ctstate"
	case expr.CtKeyMARK:
		return "mark"
	case expr.CtKeySRC, expr.CtKeyDST:
		return "addr"
	case expr.CtKeyPROTOSRC, expr.CtKeyPROTODST:
		return "int"
	}
	return "hex"
}

// value writes a comparison's operand as nft writes a value of its field.
func value(f *field, d []byte) string {
	switch f.kind {
	case "addr":
		return addrText(d)
	case "int":
		if len(d) == 2 {
			return strconv.Itoa(int(binary.BigEndian.Uint16(d)))
		}
		if len(d) == 1 {
			return strconv.Itoa(int(d[0]))
		}
	case "hostint", "mark":
		if len(d) == 4 {
			v := binary.NativeEndian.Uint32(d)
			if f.kind == "mark" {
				return fmt.Sprintf("0x%08x", v)
			}
			return strconv.FormatUint(uint64(v), 10)
		}
		if len(d) == 1 {
			return strconv.Itoa(int(d[0]))
		}
	case "proto":
		if len(d) == 1 {
			return protoName(d[0])
		}
	case "ifname":
		s := string(d)
		if i := strings.IndexByte(s, 0); i >= 0 {
			return strconv.Quote(s[:i])
		}
		return strconv.Quote(s + "*") // a prefix: iptables' "eth+"
	case "ethertype":
		if len(d) == 2 {
			switch binary.BigEndian.Uint16(d) {
			case 0x0800:
				return "ip"
			case 0x86dd:
				return "ip6"
			case 0x0806:
				return "arp"
			case 0x8100:
				return "vlan"
			}
		}
	case "nfproto":
		if len(d) == 1 {
			switch d[0] {
			case 2:
				return "ipv4"
			case 10:
				return "ipv6"
			}
		}
	case "icmptype", "icmpv6type":
		if len(d) == 1 {
			names := icmpTypes
			if f.kind == "icmpv6type" {
				names = icmp6Types
			}
			if n, ok := names[d[0]]; ok {
				return n
			}
			return strconv.Itoa(int(d[0]))
		}
	case "tcpflags":
		if len(d) == 1 {
			return tcpFlags(d[0])
		}
	case "ctstate":
		if len(d) == 4 {
			return ctStates(d)
		}
	case "mac":
		if len(d) == 6 {
			return net.HardwareAddr(d).String()
		}
	}
	return "0x" + fmt.Sprintf("%x", d)
}

func addrText(d []byte) string {
	if a, ok := netip.AddrFromSlice(d); ok {
		return a.String()
	}
	return "0x" + fmt.Sprintf("%x", d)
}

func prefixText(d, mask []byte) string {
	ones := 0
	for _, b := range mask {
		for i := 7; i >= 0; i-- {
			if b&(1<<i) != 0 {
				ones++
			}
		}
	}
	return addrText(d) + "/" + strconv.Itoa(ones)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func protoName(p byte) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	case 47:
		return "gre"
	case 50:
		return "esp"
	}
	return strconv.Itoa(int(p))
}

var icmpTypes = map[byte]string{0: "echo-reply", 3: "destination-unreachable", 5: "redirect", 8: "echo-request",
	11: "time-exceeded", 12: "parameter-problem"}

var icmp6Types = map[byte]string{1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded",
	128: "echo-request", 129: "echo-reply", 135: "nd-neighbor-solicit", 136: "nd-neighbor-advert"}

func tcpFlags(b byte) string {
	var out []string
	for i, n := range []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"} {
		if b&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "0x0"
	}
	return strings.Join(out, ",")
}

// ctStates names the conntrack state bits (host byte order) as nft does.
func ctStates(d []byte) string {
	if len(d) != 4 {
		return "0x" + fmt.Sprintf("%x", d)
	}
	v := binary.NativeEndian.Uint32(d)
	var out []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"},
		{expr.CtStateBitNEW, "new"}, {expr.CtStateBitUNTRACKED, "untracked"}} {
		if v&s.bit != 0 {
			out = append(out, s.name)
		}
	}
	if len(out) == 0 {
		return fmt.Sprintf("0x%x", v)
	}
	return strings.Join(out, ",")
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictQueue:
		return "queue"
	case expr.VerdictStolen:
		return "stolen"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

func rejectText(e *expr.Reject) string {
	// NFT_REJECT_ICMP_UNREACH 0, NFT_REJECT_TCP_RST 1, NFT_REJECT_ICMPX_UNREACH 2.
	switch e.Type {
	case 1:
		return "reject with tcp reset"
	case 2:
		if e.Code == 1 { // NFT_REJECT_ICMPX_PORT_UNREACH: nft's default
			return "reject"
		}
		return fmt.Sprintf("reject with icmpx %d", e.Code)
	}
	codes := map[uint8]string{0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
		9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
	if n, ok := codes[e.Code]; ok {
		return "reject with icmp " + n
	}
	return fmt.Sprintf("reject with icmp %d", e.Code)
}

func limitUnit(u expr.LimitTime) string {
	switch u {
	case expr.LimitTimeSecond:
		return "second"
	case expr.LimitTimeMinute:
		return "minute"
	case expr.LimitTimeHour:
		return "hour"
	case expr.LimitTimeDay:
		return "day"
	case expr.LimitTimeWeek:
		return "week"
	}
	return strconv.Itoa(int(u))
}

func objrefType(t int) string {
	switch t {
	case 1:
		return "counter"
	case 2:
		return "quota"
	case 4:
		return "limit"
	}
	return "object"
}
