package filter

// Parsing of relations: "arith relop arith", where arith is built from
// numbers, len, named constants, packet loads proto[offset] or
// proto[offset:size], unary minus, and binary operators. Precedence, from
// loosest: | ^, &, << >>, + -, * / %, as in libpcap.

var arithLevels = [][]string{{"|", "^"}, {"&"}, {"<<", ">>"}, {"+", "-"}, {"*", "/", "%"}}

var relOps = map[string]string{">": ">", "<": "<", ">=": ">=", "<=": "<=", "=": "=", "==": "=", "!=": "!="}

// loadProtos are the protocols that may be indexed as proto[...].
var loadProtos = map[string]bool{
	"ether": true, "ip": true, "ip6": true, "arp": true, "rarp": true,
	"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmp6": true, "igmp": true,
}

var namedConstants = map[string]uint32{
	"tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
	"tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
	"icmptype": 0, "icmpcode": 1,
	"icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
	"icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
	"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
	"icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
	"icmp6type": 0, "icmp6code": 1,
	"icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
	"icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
	"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
	"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133,
	"icmp6-routeradvert": 134, "icmp6-neighborsolicit": 135,
	"icmp6-neighboradvert": 136, "icmp6-redirect": 137,
}

// mayStartArith reports whether the next token can begin an arithmetic
// expression.
func (p *parser) mayStartArith() bool {
	t := p.peek()
	switch {
	case t.kind == tokOp:
		return t.text == "(" || t.text == "-"
	case t.kind != tokWord:
		return false
	case p.isNumber() || p.isWord("len"):
		return true
	case loadProtos[t.text] && !t.escaped:
		n := p.peekN(1)
		return n.kind == tokOp && n.text == "["
	}
	_, ok := namedConstants[t.text]
	return ok
}

func (p *parser) parseRelation() (node, error) {
	l, err := p.parseArith(0)
	if err != nil {
		return nil, err
	}
	t := p.peek()
	op, ok := relOps[t.text]
	if t.kind != tokOp || !ok {
		return nil, unexpected(t, "a comparison operator")
	}
	p.next()
	r, err := p.parseArith(0)
	if err != nil {
		return nil, err
	}
	return &relNode{op: op, l: l, r: r}, nil
}

func (p *parser) parseArith(level int) (arith, error) {
	if level == len(arithLevels) {
		return p.parseArithUnary()
	}
	l, err := p.parseArith(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tokOp || !contains(arithLevels[level], t.text) {
			return l, nil
		}
		p.next()
		r, err := p.parseArith(level + 1)
		if err != nil {
			return nil, err
		}
		l = &binArith{op: t.text, l: l, r: r}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) parseArithUnary() (arith, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	t := p.peek()
	switch {
	case t.kind == tokOp && t.text == "-":
		p.next()
		x, err := p.parseArithUnary()
		if err != nil {
			return nil, err
		}
		return &negArith{x: x}, nil
	case t.kind == tokOp && t.text == "(":
		p.next()
		x, err := p.parseArith(0)
		if err != nil {
			return nil, err
		}
		if !p.isOp(")") {
			return nil, unexpected(p.peek(), "\")\"")
		}
		p.next()
		return x, nil
	case p.isNumber():
		v, err := p.parseNumber(0xffffffff)
		if err != nil {
			return nil, err
		}
		return numArith{v: v}, nil
	case p.isWord("len"):
		p.next()
		return lenArith{}, nil
	case t.kind == tokWord && !t.escaped && loadProtos[t.text]:
		p.next()
		if !p.isOp("[") {
			return nil, unexpected(p.peek(), "\"[\"")
		}
		p.next()
		idx, err := p.parseArith(0)
		if err != nil {
			return nil, err
		}
		size := 1
		if p.isOp(":") {
			p.next()
			st := p.peek()
			v, err := p.parseNumber(4)
			if err != nil {
				return nil, err
			}
			if v != 1 && v != 2 && v != 4 {
				return nil, errAt(st, "data size must be 1, 2 or 4, not %d", v)
			}
			size = int(v)
		}
		if !p.isOp("]") {
			return nil, unexpected(p.peek(), "\"]\"")
		}
		p.next()
		return &loadArith{proto: t.text, idx: idx, size: size}, nil
	case t.kind == tokWord:
		if v, ok := namedConstants[t.text]; ok {
			p.next()
			return numArith{v: v}, nil
		}
	}
	return nil, unexpected(t, "a number, len or proto[offset]")
}
