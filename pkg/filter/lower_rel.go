package filter

import (
	"fmt"

	"golang.org/x/net/bpf"
)

var aluOps = map[string]bpf.ALUOp{
	"+": bpf.ALUOpAdd, "-": bpf.ALUOpSub, "*": bpf.ALUOpMul, "/": bpf.ALUOpDiv,
	"%": bpf.ALUOpMod, "&": bpf.ALUOpAnd, "|": bpf.ALUOpOr, "^": bpf.ALUOpXor,
	"<<": bpf.ALUOpShiftLeft, ">>": bpf.ALUOpShiftRight,
}

// fold evaluates a constant arithmetic expression.
func fold(e arith) (uint32, bool, error) {
	switch e := e.(type) {
	case numArith:
		return e.v, true, nil
	case *negArith:
		v, ok, err := fold(e.x)
		return -v, ok, err
	case *binArith:
		l, lok, err := fold(e.l)
		if err != nil {
			return 0, false, err
		}
		r, rok, err := fold(e.r)
		if err != nil {
			return 0, false, err
		}
		if rok && r == 0 && (e.op == "/" || e.op == "%") {
			return 0, false, fmt.Errorf("division by zero")
		}
		if rok && r >= 32 && (e.op == "<<" || e.op == ">>") {
			return 0, false, fmt.Errorf("shift by %d is out of range", r)
		}
		if !lok || !rok {
			return 0, false, nil
		}
		switch e.op {
		case "+":
			return l + r, true, nil
		case "-":
			return l - r, true, nil
		case "*":
			return l * r, true, nil
		case "/":
			return l / r, true, nil
		case "%":
			return l % r, true, nil
		case "&":
			return l & r, true, nil
		case "|":
			return l | r, true, nil
		case "^":
			return l ^ r, true, nil
		case "<<":
			return l << r, true, nil
		case ">>":
			return l >> r, true, nil
		}
	}
	return 0, false, nil
}

// relState collects the protocol checks that loads in a relation imply.
type relState struct {
	lw   *lowerer
	c    ctx
	pre  irAnd
	seen map[string]bool
	next int // next free temporary slot
}

// temp allocates a scratch slot that lives only within this relation, above
// the slots already holding encapsulation offsets. (Encapsulations lowered
// later run later, so they may reuse these.)
func (rs *relState) temp() (int, error) {
	if rs.next >= maxScratch {
		return 0, fmt.Errorf("expression too complex: more than %d scratch memory slots needed", maxScratch)
	}
	rs.next++
	return rs.next - 1, nil
}

// where returns the position of proto[0], adding the protocol check.
func (rs *relState) where(proto string) loc {
	c := rs.c
	var check ir
	var l loc
	switch proto {
	case "ether":
		l = c.link.at(0)
	case "ip":
		check, l = c.isIPv4(), c.net.at(0)
	case "ip6":
		check, l = c.isIPv6(), c.net.at(0)
	case "arp":
		check, l = c.etherType(0x0806), c.net.at(0)
	case "rarp":
		check, l = c.etherType(0x8035), c.net.at(0)
	case "icmp6":
		// As libpcap: the next header directly, no fragment header.
		check, l = irAnd{c.isIPv6(), eq(c.net.at(6), 1, 58)}, c.l4v6(0)
	default: // tcp, udp, sctp, icmp, igmp: IPv4 only, as in libpcap
		check, l = irAnd{c.ip4Proto(protoNumbers[proto]), c.notFrag()}, c.l4v4(0)
	}
	if check != nil && !rs.seen[proto] {
		rs.seen[proto] = true
		rs.pre = append(rs.pre, check)
	}
	return l
}

// gen returns code leaving the value of e in A.
func (rs *relState) gen(e arith) ([]bpf.Instruction, error) {
	v, ok, err := fold(e)
	if err != nil {
		return nil, err
	}
	if ok {
		return []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: v}}, nil
	}
	switch e := e.(type) {
	case lenArith:
		return []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtLen}}, nil
	case *negArith:
		// 0 - A rather than the neg instruction, which x/net/bpf's VM lacks.
		code, err := rs.gen(e.x)
		return append(code, bpf.TAX{}, bpf.LoadConstant{Dst: bpf.RegA, Val: 0}, bpf.ALUOpX{Op: bpf.ALUOpSub}), err
	case *binArith:
		lcode, err := rs.gen(e.l)
		if err != nil {
			return nil, err
		}
		if r, ok, _ := fold(e.r); ok {
			return append(lcode, bpf.ALUOpConstant{Op: aluOps[e.op], Val: r}), nil
		}
		rcode, err := rs.gen(e.r)
		if err != nil {
			return nil, err
		}
		t, err := rs.temp()
		if err != nil {
			return nil, err
		}
		code := append(rcode, bpf.StoreScratch{Src: bpf.RegA, N: t})
		code = append(code, lcode...)
		return append(code, bpf.LoadScratch{Dst: bpf.RegX, N: t}, bpf.ALUOpX{Op: aluOps[e.op]}), nil
	case *loadArith:
		l := rs.where(e.proto)
		if off, ok, _ := fold(e.idx); ok {
			if uint64(off)+uint64(l.off) > 0xffffffff-4 {
				return nil, fmt.Errorf("offset %d out of range", off)
			}
			l.off += int(off)
			return load(l, e.size), nil
		}
		code, err := rs.gen(e.idx)
		if err != nil {
			return nil, err
		}
		if isAbs(l) {
			return append(code, bpf.TAX{}, bpf.LoadIndirect{Off: uint32(l.off), Size: e.size}), nil
		}
		t, err := rs.temp()
		if err != nil {
			return nil, err
		}
		code = append(code, bpf.StoreScratch{Src: bpf.RegA, N: t})
		code = append(code, setX(l)...)
		return append(code,
			bpf.LoadScratch{Dst: bpf.RegA, N: t},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{},
			bpf.LoadIndirect{Off: uint32(l.off), Size: e.size}), nil
	}
	return nil, fmt.Errorf("internal error: unknown arithmetic %T", e)
}

var flipOp = map[string]string{">": "<", "<": ">", ">=": "<=", "<=": ">=", "=": "=", "!=": "!="}

func (lw *lowerer) lowerRel(c ctx, n *relNode) (ir, error) {
	rs := &relState{lw: lw, c: c, seen: map[string]bool{}, next: lw.slots}
	l, r, op := n.l, n.r, n.op
	lv, lok, err := fold(l)
	if err != nil {
		return nil, err
	}
	rv, rok, err := fold(r)
	if err != nil {
		return nil, err
	}
	if lok && rok {
		var res bool
		switch op {
		case ">":
			res = lv > rv
		case "<":
			res = lv < rv
		case ">=":
			res = lv >= rv
		case "<=":
			res = lv <= rv
		case "=":
			res = lv == rv
		case "!=":
			res = lv != rv
		}
		return irConst(res), nil
	}
	if lok {
		l, r, op, rv, rok = r, l, flipOp[op], lv, true
	}
	code, err := rs.gen(l)
	if err != nil {
		return nil, err
	}
	leaf := &irLeaf{k: rv}
	if !rok {
		rcode, err := rs.gen(r)
		if err != nil {
			return nil, err
		}
		t, err := rs.temp()
		if err != nil {
			return nil, err
		}
		rcode = append(rcode, bpf.StoreScratch{Src: bpf.RegA, N: t})
		code = append(rcode, append(code, bpf.LoadScratch{Dst: bpf.RegX, N: t})...)
		leaf.useX = true
	}
	leaf.code = code
	var test ir = leaf
	switch op {
	case ">":
		leaf.cond = bpf.JumpGreaterThan
	case ">=":
		leaf.cond = bpf.JumpGreaterOrEqual
	case "<":
		leaf.cond = bpf.JumpGreaterOrEqual
		test = &irNot{x: leaf}
	case "<=":
		leaf.cond = bpf.JumpGreaterThan
		test = &irNot{x: leaf}
	case "=":
		leaf.cond = bpf.JumpEqual
	case "!=":
		leaf.cond = bpf.JumpEqual
		test = &irNot{x: leaf}
	}
	return append(rs.pre, test), nil
}
