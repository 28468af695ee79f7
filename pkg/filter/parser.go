package filter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxDepth bounds the nesting of parentheses and negations.
const maxDepth = 200

// posError is an error at a byte offset of the expression.
type posError struct {
	off int
	msg string
	// noOffset suppresses the " at offset N" suffix for messages that
	// already say where.
	noOffset bool
}

func (e *posError) Error() string { return e.msg }

// qual is a set of qualifiers remembered so that a following bare id can
// reuse them, as in "host 10.0.0.1 or 10.0.0.2".
type qual struct {
	proto string
	dir   dir
	typ   string // host, net, port, portrange
}

type parser struct {
	toks  []token
	pos   int
	last  *qual
	depth int
}

var protoQualifiers = map[string]bool{
	"ether": true, "ip": true, "ip6": true, "arp": true, "rarp": true,
	"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmp6": true, "igmp": true,
}

// protoTests are the protocol keywords that are a test on their own.
var protoTests = map[string]bool{
	"ip": true, "ip6": true, "arp": true, "rarp": true,
	"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmp6": true, "igmp": true,
}

var typeKeywords = map[string]bool{"host": true, "net": true, "port": true, "portrange": true}

var otherKeywords = map[string]bool{
	"src": true, "dst": true, "and": true, "or": true, "not": true, "proto": true,
	"broadcast": true, "multicast": true, "less": true, "greater": true, "len": true,
	"vlan": true, "vxlan": true, "geneve": true, "mask": true,
}

// unsupportedKeywords are libpcap keywords this compiler does not implement.
var unsupportedKeywords = map[string]bool{
	"gateway": true, "protochain": true, "atalk": true, "aarp": true, "decnet": true,
	"iso": true, "esis": true, "isis": true, "clnp": true, "stp": true, "ipx": true,
	"netbeui": true, "lat": true, "sca": true, "mopdl": true, "moprc": true,
	"ah": true, "esp": true, "pim": true, "vrrp": true, "carp": true, "igrp": true,
	"mpls": true, "pppoed": true, "pppoes": true, "llc": true, "wlan": true,
	"type": true, "subtype": true, "ifname": true, "on": true, "rnr": true,
	"rulenum": true, "reason": true, "rset": true, "ruleset": true, "srnr": true,
	"subrulenum": true, "action": true, "fddi": true, "tr": true, "ppp": true,
	"slip": true, "inbound": true, "outbound": true, "ifindex": true, "radio": true,
	"hdlc": true, "link": true, "decnet_src": true, "atm": true, "lane": true,
	"oamf4": true, "oamf4ec": true, "oamf4sc": true, "oam": true, "metac": true,
	"bcc": true, "sc": true, "ilmic": true, "connectmsg": true, "metaconnect": true,
	"vpi": true, "vci": true, "ra": true, "ta": true, "addr1": true, "addr2": true,
	"addr3": true, "addr4": true, "direction": true, "vrrp_src": true, "l1": true,
}

const supportedList = "host, net, port, portrange, src, dst, ether, ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6, igmp, proto, broadcast, multicast, less, greater, vlan, vxlan, geneve, and, or, not, relations such as tcp[tcpflags] & tcp-syn != 0"

func isKeyword(t token) bool {
	if t.kind != tokWord || t.escaped {
		return false
	}
	return protoQualifiers[t.text] || typeKeywords[t.text] || otherKeywords[t.text] || unsupportedKeywords[t.text]
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) peekN(n int) token {
	if p.pos+n < len(p.toks) {
		return p.toks[p.pos+n]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) isWord(s string) bool {
	t := p.peek()
	return t.kind == tokWord && !t.escaped && t.text == s
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tokOp && t.text == s
}

func errAt(t token, format string, args ...interface{}) error {
	return &posError{off: t.off, msg: fmt.Sprintf(format, args...)}
}

func unexpected(t token, want string) error {
	if t.kind == tokEOF {
		return &posError{off: t.off, msg: "unexpected end of expression, expected " + want, noOffset: true}
	}
	if t.kind == tokWord && !isKeyword(t) && !t.escaped && !looksLikeValue(t.text) {
		return errAt(t, "unknown keyword %q", t.text)
	}
	return errAt(t, "unexpected %s, expected %s", t, want)
}

// looksLikeValue reports whether a word is a number or address.
func looksLikeValue(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.Contains(s, ":"))
}

// parse parses a whole expression.
func parse(toks []token) (node, error) {
	p := &parser{toks: toks}
	if p.peek().kind == tokEOF {
		return trueNode{}, nil
	}
	n, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, unexpected(t, "\"and\", \"or\" or end of expression")
	}
	return n, nil
}

func (p *parser) isAnd() bool { return p.isWord("and") || p.isOp("&&") }
func (p *parser) isOr() bool  { return p.isWord("or") || p.isOp("||") }

// parseExpr parses terms joined by and/or. As in tcpdump, "and" and "or"
// have equal precedence and associate left to right.
func (p *parser) parseExpr() (node, error) {
	cur, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	var chain *andNode // the and-chain being built at this level, if cur is it
	for p.isAnd() || p.isOr() {
		isAnd := p.isAnd()
		p.next()
		rhs, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		switch {
		case isAnd && chain != nil:
			chain.terms = append(chain.terms, rhs)
		case isAnd:
			chain = &andNode{terms: []node{cur, rhs}}
			cur = chain
		default:
			cur = &orNode{a: cur, b: rhs}
			chain = nil
		}
	}
	return cur, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return errAt(p.peek(), "expression nested too deeply")
	}
	return nil
}

func (p *parser) parseTerm() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if p.isWord("not") || p.isOp("!") {
		p.next()
		x, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		return &notNode{x: x}, nil
	}
	// A term may be a relation such as "tcp[13] & 2 != 0" or "(ip[0] & 0xf) > 5";
	// try that first and fall back to a boolean term.
	var relErr error
	if p.mayStartArith() {
		save, saveLast := p.pos, p.last
		n, err := p.parseRelation()
		if err != nil {
			p.pos = save
		}
		if err == nil {
			p.last = nil
			return n, nil
		}
		// Only a parenthesis or a number may also begin a boolean term
		// ("(tcp or udp)", "host 10.0.0.1 or 10.0.0.2").
		if t := p.peek(); !(t.kind == tokOp && t.text == "(") && !p.isNumber() {
			return nil, err
		}
		relErr = err
		p.pos, p.last = save, saveLast
	}
	n, err := p.parseBoolTerm()
	if err != nil && relErr != nil && relErr.(*posError).off > err.(*posError).off {
		return nil, relErr
	}
	return n, err
}

func (p *parser) parseBoolTerm() (node, error) {
	if p.isOp("(") {
		p.next()
		n, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if !p.isOp(")") {
			return nil, unexpected(p.peek(), "\")\"")
		}
		p.next()
		return n, nil
	}
	return p.parsePrimitive()
}

// parsePrimitive parses one primitive such as "src host 10.0.0.1", "tcp",
// "ether broadcast" or a bare id continuing the previous qualifiers.
func (p *parser) parsePrimitive() (node, error) {
	t := p.peek()
	if t.kind != tokWord {
		return nil, unexpected(t, "a primitive")
	}
	kw := t.text
	if t.escaped {
		kw = ""
	}
	switch {
	case unsupportedKeywords[kw]:
		return nil, errAt(t, "%q is not supported (supported: %s)", kw, supportedList)
	case kw == "less" || kw == "greater":
		p.next()
		v, err := p.parseNumber(0xffffffff)
		if err != nil {
			return nil, err
		}
		p.last = nil
		op := "<="
		if kw == "greater" {
			op = ">="
		}
		return &relNode{op: op, l: lenArith{}, r: numArith{v: v}}, nil
	case kw == "broadcast":
		p.next()
		p.last = nil
		return etherBroadcastNode{}, nil
	case kw == "multicast":
		p.next()
		p.last = nil
		return etherMulticastNode{}, nil
	case kw == "vlan":
		p.next()
		p.last = nil
		id := -1
		if p.isNumber() {
			v, err := p.parseNumber(4095)
			if err != nil {
				return nil, err
			}
			id = int(v)
		}
		return &vlanNode{id: id}, nil
	case kw == "vxlan":
		p.next()
		p.last = nil
		n := &vxlanNode{vni: -1}
		if p.isWord("port") && p.peekN(1).kind == tokWord && looksLikeValue(p.peekN(1).text) {
			p.next()
			v, err := p.parseNumber(65535)
			if err != nil {
				return nil, err
			}
			n.ports = []uint16{uint16(v)}
		}
		if p.isNumber() {
			v, err := p.parseNumber(1<<24 - 1)
			if err != nil {
				return nil, err
			}
			n.vni = int64(v)
		}
		return n, nil
	case kw == "geneve":
		p.next()
		p.last = nil
		n := &geneveNode{vni: -1}
		if p.isNumber() {
			v, err := p.parseNumber(1<<24 - 1)
			if err != nil {
				return nil, err
			}
			n.vni = int64(v)
		}
		return n, nil
	case kw == "proto":
		p.next()
		p.last = nil
		v, err := p.parseProtoValue("")
		if err != nil {
			return nil, err
		}
		return &ipProtoNode{val: v}, nil
	}

	q := qual{dir: dirAny}
	if protoQualifiers[kw] {
		p.next()
		q.proto = kw
		switch {
		case p.isWord("broadcast"):
			bt := p.next()
			p.last = nil
			if q.proto == "ether" {
				return etherBroadcastNode{}, nil
			}
			return nil, errAt(bt, "\"%s broadcast\" is not supported (it needs the interface netmask); use \"ether broadcast\"", q.proto)
		case p.isWord("multicast"):
			mt := p.next()
			p.last = nil
			switch q.proto {
			case "ether":
				return etherMulticastNode{}, nil
			case "ip":
				return ipMulticastNode{}, nil
			case "ip6":
				return ipMulticastNode{v6: true}, nil
			}
			return nil, errAt(mt, "\"multicast\" cannot follow %q", q.proto)
		case p.isWord("proto"):
			pt := p.next()
			p.last = nil
			switch q.proto {
			case "ether":
				v, err := p.parseProtoValue("ether")
				if err != nil {
					return nil, err
				}
				if v <= 1500 {
					return nil, errAt(pt, "\"ether proto %d\" (an 802.3 length/LLC value) is not supported", v)
				}
				return &etherProtoNode{val: v}, nil
			case "ip", "ip6":
				v, err := p.parseProtoValue("")
				if err != nil {
					return nil, err
				}
				return &ipProtoNode{family: q.proto, val: v}, nil
			}
			return nil, errAt(pt, "\"proto\" cannot follow %q (use ether, ip or ip6)", q.proto)
		}
	}
	hasDir := false
	if p.isWord("src") || p.isWord("dst") {
		hasDir = true
		first := p.next().text
		q.dir = dirSrc
		if first == "dst" {
			q.dir = dirDst
		}
		other := map[string]string{"src": "dst", "dst": "src"}[first]
		if (p.isWord("or") || p.isWord("and")) && p.peekN(1).kind == tokWord && p.peekN(1).text == other && !p.peekN(1).escaped {
			if p.next().text == "or" {
				q.dir = dirAny
			} else {
				q.dir = dirBoth
			}
			p.next()
		}
	}
	hasType := false
	if typeKeywords[p.peek().text] && !p.peek().escaped {
		hasType = true
		q.typ = p.next().text
	} else if hasDir {
		q.typ = "host"
	}
	if q.proto != "" && !hasDir && !hasType {
		if q.proto == "ether" {
			return nil, unexpected(p.peek(), "host, src, dst, proto, broadcast or multicast after \"ether\"")
		}
		p.last = nil
		return &protoNode{name: q.proto}, nil
	}
	if q.proto == "" && !hasDir && !hasType {
		// A bare id: reuse the previous primitive's qualifiers.
		if isKeyword(t) || p.last == nil || !looksLikeValue(t.text) && p.last.typ != "port" {
			if !isKeyword(t) && p.last != nil {
				return nil, errAt(t, "hostname %q is not supported (use an address)", t.text)
			}
			return nil, unexpected(t, "a primitive")
		}
		if !looksLikeValue(t.text) {
			if _, ok := serviceNames[t.text]; !ok {
				return nil, errAt(t, "unknown keyword %q", t.text)
			}
		}
		q = *p.last
	}
	n, err := p.parseID(q)
	if err != nil {
		return nil, err
	}
	qq := q
	p.last = &qq
	return n, nil
}

func (p *parser) isNumber() bool {
	t := p.peek()
	return t.kind == tokWord && !t.escaped && t.text != "" && t.text[0] >= '0' && t.text[0] <= '9'
}

// parseNumber parses a decimal, hex (0x) or octal (leading 0) number.
func (p *parser) parseNumber(max uint64) (uint32, error) {
	t := p.peek()
	if t.kind != tokWord {
		return 0, unexpected(t, "a number")
	}
	v, err := strconv.ParseUint(t.text, 0, 64)
	if err != nil {
		if !looksLikeValue(t.text) && !isKeyword(t) {
			return 0, errAt(t, "unknown keyword %q", t.text)
		}
		return 0, errAt(t, "invalid number %q", t.text)
	}
	if v > max {
		return 0, errAt(t, "number %s out of range (maximum %d)", t.text, max)
	}
	p.next()
	return uint32(v), nil
}

var ipProtoNames = map[string]uint32{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmp6": 58, "ipv6-icmp": 58, "pim": 103, "vrrp": 112, "sctp": 132,
}

var etherProtoNames = map[string]uint32{
	"ip": 0x0800, "ip6": 0x86dd, "arp": 0x0806, "rarp": 0x8035, "vlan": 0x8100,
	"lldp": 0x88cc, "mpls": 0x8847,
}

var serviceNames = map[string]uint16{
	"echo": 7, "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
	"domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "pop3": 110,
	"ntp": 123, "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443,
	"syslog": 514, "mysql": 3306, "postgresql": 5432,
}

// parseProtoValue parses the value after "proto": a number or a protocol name.
func (p *parser) parseProtoValue(family string) (uint32, error) {
	t := p.peek()
	if p.isNumber() {
		max := uint64(255)
		if family == "ether" {
			max = 65535
		}
		return p.parseNumber(max)
	}
	if t.kind != tokWord {
		return 0, unexpected(t, "a protocol number or name")
	}
	names := ipProtoNames
	if family == "ether" {
		names = etherProtoNames
	}
	if v, ok := names[t.text]; ok {
		p.next()
		return v, nil
	}
	return 0, errAt(t, "unknown protocol name %q", t.text)
}

// parseID parses the value of a qualified primitive.
func (p *parser) parseID(q qual) (node, error) {
	t := p.peek()
	if t.kind != tokWord || isKeyword(t) {
		return nil, unexpected(t, "a value after "+q.typ)
	}
	switch q.typ {
	case "", "host", "net":
		if q.typ == "" {
			q.typ = "host"
		}
		return p.parseAddr(q)
	case "port":
		switch q.proto {
		case "", "tcp", "udp", "sctp":
		default:
			return nil, errAt(t, "\"%s port\" is not supported (use tcp, udp or sctp)", q.proto)
		}
		var v uint16
		if n, ok := serviceNames[t.text]; ok && !looksLikeValue(t.text) {
			v = n
			p.next()
		} else {
			n, err := p.parseNumber(65535)
			if err != nil {
				if !looksLikeValue(t.text) {
					return nil, errAt(t, "unknown port name %q", t.text)
				}
				return nil, err
			}
			v = uint16(n)
		}
		return &portNode{proto: q.proto, dir: q.dir, lo: v, hi: v}, nil
	case "portrange":
		switch q.proto {
		case "", "tcp", "udp", "sctp":
		default:
			return nil, errAt(t, "\"%s portrange\" is not supported (use tcp, udp or sctp)", q.proto)
		}
		a, b, ok := strings.Cut(t.text, "-")
		lo, err1 := strconv.ParseUint(a, 10, 16)
		hi, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, errAt(t, "invalid port range %q (want LOW-HIGH)", t.text)
		}
		p.next()
		if lo > hi {
			lo, hi = hi, lo
		}
		return &portNode{proto: q.proto, dir: q.dir, lo: uint16(lo), hi: uint16(hi)}, nil
	}
	return nil, errAt(t, "unsupported qualifier %q", q.typ)
}

// parseAddr parses the address of host or net.
func (p *parser) parseAddr(q qual) (node, error) {
	t := p.next()
	s := t.text
	if mac, ok := parseMAC(s); ok {
		if q.typ != "host" || (q.proto != "" && q.proto != "ether") {
			return nil, errAt(t, "ethernet address %q used in a non-ether expression", s)
		}
		return &etherHostNode{dir: q.dir, mac: mac}, nil
	}
	if q.proto == "ether" {
		return nil, errAt(t, "invalid ethernet address %q", s)
	}
	switch q.proto {
	case "", "ip", "ip6", "arp", "rarp":
	default:
		return nil, errAt(t, "%q qualifier cannot be applied to %s", q.proto, q.typ)
	}
	var pfx netip.Prefix
	if q.typ == "host" {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			if !looksLikeValue(s) {
				return nil, errAt(t, "hostname %q is not supported (use an address)", s)
			}
			return nil, errAt(t, "invalid address %q", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	} else {
		var err error
		pfx, err = p.parseNet(t)
		if err != nil {
			return nil, err
		}
	}
	a := pfx.Addr()
	if a.Is4() && q.proto == "ip6" {
		return nil, errAt(t, "IPv4 address %q used with \"ip6\"", s)
	}
	if a.Is6() && q.proto != "" && q.proto != "ip6" {
		return nil, errAt(t, "IPv6 address %q used with %q", s, q.proto)
	}
	return &hostNode{proto: q.proto, dir: q.dir, pfx: pfx}, nil
}

// parseNet parses a network: CIDR, an address (a full-length prefix), an
// abbreviated IPv4 network such as "10" or "192.168", or "A mask M".
func (p *parser) parseNet(t token) (netip.Prefix, error) {
	s := t.text
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			// libpcap also accepts abbreviated IPv4 before the slash.
			a, bits, ok := strings.Cut(s, "/")
			addr, _, ok2 := parseAbbrevIPv4(a)
			n, err2 := strconv.Atoi(bits)
			if !ok || !ok2 || err2 != nil || n < 0 || n > 32 {
				return netip.Prefix{}, errAt(t, "invalid network %q", s)
			}
			pfx = netip.PrefixFrom(addr, n)
		}
		if pfx.Masked() != pfx {
			return netip.Prefix{}, errAt(t, "non-network bits set in %q", s)
		}
		return pfx, nil
	}
	if p.isWord("mask") {
		mt := p.next()
		m := p.peek()
		addr, err1 := netip.ParseAddr(s)
		mask, err2 := netip.ParseAddr(m.text)
		if err1 != nil || err2 != nil || !addr.Is4() || !mask.Is4() {
			return netip.Prefix{}, errAt(mt, "invalid \"net %s mask %s\" (IPv4 only)", s, m.text)
		}
		p.next()
		mb := mask.As4()
		mv := uint32(mb[0])<<24 | uint32(mb[1])<<16 | uint32(mb[2])<<8 | uint32(mb[3])
		ones := 0
		for ones < 32 && mv&(1<<(31-ones)) != 0 {
			ones++
		}
		if ones < 32 && mv<<ones != 0 {
			return netip.Prefix{}, errAt(m, "non-contiguous netmask %q is not supported", m.text)
		}
		pfx := netip.PrefixFrom(addr, ones)
		if pfx.Masked() != pfx {
			return netip.Prefix{}, errAt(t, "non-network bits set in \"%s mask %s\"", s, m.text)
		}
		return pfx, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if a, bits, ok := parseAbbrevIPv4(s); ok {
		return netip.PrefixFrom(a, bits), nil
	}
	if !looksLikeValue(s) {
		return netip.Prefix{}, errAt(t, "network name %q is not supported (use an address)", s)
	}
	return netip.Prefix{}, errAt(t, "invalid network %q", s)
}

// parseAbbrevIPv4 parses "10", "10.1" or "10.1.2" as libpcap does for net:
// the given octets are the network, the mask covers them.
func parseAbbrevIPv4(s string) (netip.Addr, int, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, 0, false
	}
	var b [4]byte
	for i, part := range parts {
		v, err := strconv.ParseUint(part, 10, 8)
		if err != nil {
			return netip.Addr{}, 0, false
		}
		b[i] = byte(v)
	}
	return netip.AddrFrom4(b), 8 * len(parts), true
}

// parseMAC parses xx:xx:xx:xx:xx:xx, xx-xx-..., or xxxx.xxxx.xxxx.
func parseMAC(s string) ([6]byte, bool) {
	var mac [6]byte
	var parts []string
	switch {
	case strings.Count(s, ":") == 5:
		parts = strings.Split(s, ":")
	case strings.Count(s, "-") == 5:
		parts = strings.Split(s, "-")
	case strings.Count(s, ".") == 2 && len(s) == 14:
		for _, g := range strings.Split(s, ".") {
			if len(g) != 4 {
				return mac, false
			}
			parts = append(parts, g[:2], g[2:])
		}
	default:
		return mac, false
	}
	for i, part := range parts {
		if len(part) < 1 || len(part) > 2 {
			return mac, false
		}
		v, err := strconv.ParseUint(part, 16, 8)
		if err != nil {
			return mac, false
		}
		mac[i] = byte(v)
	}
	return mac, true
}
