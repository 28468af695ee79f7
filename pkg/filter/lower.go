package filter

import (
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// The lowering turns the parsed expression into a boolean tree of
// straight-line tests (ir), which the assembler in asm.go lays out with
// short-circuit jumps.

type ir interface{}

type (
	irAnd   []ir
	irOr    []ir
	irNot   struct{ x ir }
	irConst bool
	// irLeaf runs code and then either jumps on a test of A (against k, or
	// X if useX) or, if always, is simply true.
	irLeaf struct {
		code   []bpf.Instruction
		cond   bpf.JumpTest // JumpEqual, JumpGreaterThan, JumpGreaterOrEqual or JumpBitsSet
		k      uint32
		useX   bool
		always bool
	}
)

// base is a packet position: slot < 0 means absolute, otherwise it is
// relative to the offset stored in scratch memory M[slot].
type base struct {
	slot int
	off  int
}

// loc is a load position: base plus, if ihl >= 0, the length of the IPv4
// header that starts at ihl (relative to the same base).
type loc struct {
	slot int
	ihl  int
	off  int
}

// ctx tells where the link header, the EtherType and the network header
// are. Outer Ethernet: 0, 12, 14; VLAN tags move the last two; VXLAN and
// Geneve switch to the inner frame, whose start is computed at run time.
type ctx struct {
	link, typ, net base
}

var outerCtx = ctx{link: base{-1, 0}, typ: base{-1, 12}, net: base{-1, 14}}

// maxScratch is the number of BPF scratch memory slots.
const maxScratch = 16

type lowerer struct {
	slots int // scratch slots in use
}

func (lw *lowerer) newSlot() (int, error) {
	if lw.slots >= maxScratch {
		return 0, fmt.Errorf("expression too complex: more than %d scratch memory slots needed", maxScratch)
	}
	lw.slots++
	return lw.slots - 1, nil
}

func (b base) at(off int) loc { return loc{slot: b.slot, ihl: -1, off: b.off + off} }

// l4v4 is the IPv4 transport header position (variable IHL) plus off.
func (c ctx) l4v4(off int) loc { return loc{slot: c.net.slot, ihl: c.net.off, off: c.net.off + off} }

// l4v6 is the IPv6 transport header (fixed 40-byte header, no extension
// headers) plus off.
func (c ctx) l4v6(off int) loc { return c.net.at(40 + off) }

// setX returns code that puts l's variable part into X.
func setX(l loc) []bpf.Instruction {
	switch {
	case l.slot < 0 && l.ihl < 0:
		return nil
	case l.slot < 0:
		return []bpf.Instruction{bpf.LoadMemShift{Off: uint32(l.ihl)}}
	case l.ihl < 0:
		return []bpf.Instruction{bpf.LoadScratch{Dst: bpf.RegX, N: l.slot}}
	}
	return []bpf.Instruction{
		bpf.LoadScratch{Dst: bpf.RegX, N: l.slot},
		bpf.LoadIndirect{Off: uint32(l.ihl), Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{},
	}
}

func isAbs(l loc) bool { return l.slot < 0 && l.ihl < 0 }

// load returns code loading size bytes at l into A.
func load(l loc, size int) []bpf.Instruction {
	if isAbs(l) {
		return []bpf.Instruction{bpf.LoadAbsolute{Off: uint32(l.off), Size: size}}
	}
	return append(setX(l), bpf.LoadIndirect{Off: uint32(l.off), Size: size})
}

// addr returns code putting the packet offset of l into A.
func addr(l loc) []bpf.Instruction {
	if isAbs(l) {
		return []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(l.off)}}
	}
	return append(setX(l), bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: uint32(l.off)})
}

func cmpMasked(l loc, size int, mask uint32, cond bpf.JumpTest, k uint32) ir {
	code := load(l, size)
	if mask != 0 {
		code = append(code, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
	}
	return &irLeaf{code: code, cond: cond, k: k}
}

func eq(l loc, size int, k uint32) ir { return cmpMasked(l, size, 0, bpf.JumpEqual, k) }

func (c ctx) etherType(v uint32) ir { return eq(c.typ.at(0), 2, v) }

func (c ctx) isIPv4() ir { return c.etherType(0x0800) }
func (c ctx) isIPv6() ir { return c.etherType(0x86dd) }

// notFrag is true for IPv4 packets that are not a non-first fragment.
func (c ctx) notFrag() ir {
	return &irNot{x: cmpMasked(c.net.at(6), 2, 0, bpf.JumpBitsSet, 0x1fff)}
}

// ip4Proto tests the IPv4 protocol field (after checking for IPv4).
func (c ctx) ip4Proto(p uint32) ir { return irAnd{c.isIPv4(), eq(c.net.at(9), 1, p)} }

// ip6Proto tests the IPv6 next header, also looking behind a fragment
// header as libpcap does.
func (c ctx) ip6Proto(p uint32) ir {
	return irAnd{c.isIPv6(), irOr{
		eq(c.net.at(6), 1, p),
		irAnd{eq(c.net.at(6), 1, 44), eq(c.net.at(40), 1, p)},
	}}
}

var protoNumbers = map[string]uint32{"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "igmp": 2, "icmp6": 58}

func (c ctx) proto(name string) ir {
	switch name {
	case "ip":
		return c.isIPv4()
	case "ip6":
		return c.isIPv6()
	case "arp":
		return c.etherType(0x0806)
	case "rarp":
		return c.etherType(0x8035)
	case "icmp", "igmp":
		return c.ip4Proto(protoNumbers[name])
	case "icmp6":
		return c.ip6Proto(58)
	}
	p := protoNumbers[name]
	return irOr{c.ip4Proto(p), c.ip6Proto(p)}
}

// byDir combines the source and destination tests for a direction.
func byDir(d dir, src, dst func() ir) ir {
	switch d {
	case dirSrc:
		return src()
	case dirDst:
		return dst()
	case dirBoth:
		return irAnd{src(), dst()}
	}
	return irOr{src(), dst()}
}

// prefixMatch compares the address at l with a prefix, 32 bits at a time.
func prefixMatch(l loc, pfx netip.Prefix) ir {
	b := pfx.Addr().AsSlice()
	bits := pfx.Bits()
	var out irAnd
	for i := 0; i < len(b); i += 4 {
		w := uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		n := bits - 8*i
		if n <= 0 {
			break
		}
		var mask uint32 = 0xffffffff
		if n < 32 {
			mask = ^uint32(0) << (32 - n)
		}
		if mask == 0xffffffff {
			out = append(out, eq(loc{slot: l.slot, ihl: l.ihl, off: l.off + i}, 4, w))
		} else {
			out = append(out, cmpMasked(loc{slot: l.slot, ihl: l.ihl, off: l.off + i}, 4, mask, bpf.JumpEqual, w&mask))
		}
	}
	if len(out) == 0 {
		return irConst(true)
	}
	return out
}

func (lw *lowerer) lowerHost(c ctx, n *hostNode) ir {
	if n.pfx.Addr().Is6() {
		return irAnd{c.isIPv6(), byDir(n.dir,
			func() ir { return prefixMatch(c.net.at(8), n.pfx) },
			func() ir { return prefixMatch(c.net.at(24), n.pfx) })}
	}
	ip := func() ir {
		return irAnd{c.isIPv4(), byDir(n.dir,
			func() ir { return prefixMatch(c.net.at(12), n.pfx) },
			func() ir { return prefixMatch(c.net.at(16), n.pfx) })}
	}
	// ARP and RARP for IPv4 over Ethernet: sender protocol address at 14,
	// target protocol address at 24.
	arp := func(types ...uint32) ir {
		var t irOr
		for _, v := range types {
			t = append(t, c.etherType(v))
		}
		return irAnd{t, byDir(n.dir,
			func() ir { return prefixMatch(c.net.at(14), n.pfx) },
			func() ir { return prefixMatch(c.net.at(24), n.pfx) })}
	}
	switch n.proto {
	case "ip":
		return ip()
	case "arp":
		return arp(0x0806)
	case "rarp":
		return arp(0x8035)
	}
	return irOr{ip(), arp(0x0806, 0x8035)}
}

func macMatch(b base, off int, mac [6]byte) ir {
	return irAnd{
		eq(b.at(off+2), 4, uint32(mac[2])<<24|uint32(mac[3])<<16|uint32(mac[4])<<8|uint32(mac[5])),
		eq(b.at(off), 2, uint32(mac[0])<<8|uint32(mac[1])),
	}
}

func (lw *lowerer) lowerPort(c ctx, n *portNode) ir {
	protos := []string{"sctp", "tcp", "udp"}
	if n.proto != "" {
		protos = []string{n.proto}
	}
	match := func(l loc) ir {
		if n.lo == n.hi {
			return eq(l, 2, uint32(n.lo))
		}
		return irAnd{
			cmpMasked(l, 2, 0, bpf.JumpGreaterOrEqual, uint32(n.lo)),
			&irNot{x: cmpMasked(l, 2, 0, bpf.JumpGreaterThan, uint32(n.hi))},
		}
	}
	ports := func(at func(int) loc) ir {
		return byDir(n.dir, func() ir { return match(at(0)) }, func() ir { return match(at(2)) })
	}
	var p6, p4 irOr
	for _, p := range protos {
		p6 = append(p6, eq(c.net.at(6), 1, protoNumbers[p]))
		p4 = append(p4, eq(c.net.at(9), 1, protoNumbers[p]))
	}
	return irOr{
		irAnd{c.isIPv6(), p6, ports(c.l4v6)},
		irAnd{c.isIPv4(), p4, c.notFrag(), ports(c.l4v4)},
	}
}

// udpDst matches UDP (IPv4 non-fragment or IPv6) to one of ports and then
// runs then(udpHeader) for the rest of the test.
func (c ctx) udpDst(ports []uint16, then func(udp func(int) loc) ir) ir {
	pm := func(at func(int) loc) ir {
		var o irOr
		for _, p := range ports {
			o = append(o, eq(at(2), 2, uint32(p)))
		}
		return o
	}
	return irOr{
		irAnd{c.isIPv4(), eq(c.net.at(9), 1, 17), c.notFrag(), pm(c.l4v4), then(c.l4v4)},
		irAnd{c.isIPv6(), eq(c.net.at(6), 1, 17), pm(c.l4v6), then(c.l4v6)},
	}
}

// lowerEncap lowers vlan, vxlan and geneve. It returns the test and the
// context for the terms that follow it in an and-chain.
func (lw *lowerer) lowerEncap(c ctx, n node) (ir, ctx, error) {
	switch n := n.(type) {
	case *vlanNode:
		t := irAnd{irOr{c.etherType(0x8100), c.etherType(0x88a8), c.etherType(0x9100)}}
		if n.id >= 0 {
			t = append(t, cmpMasked(c.typ.at(2), 2, 0xfff, bpf.JumpEqual, uint32(n.id)))
		}
		inner := c
		inner.typ.off += 4
		inner.net.off += 4
		return t, inner, nil
	case *vxlanNode:
		s, err := lw.newSlot()
		if err != nil {
			return nil, c, err
		}
		ports := n.ports
		if len(ports) == 0 {
			ports = []uint16{4789, 8472}
		}
		t := c.udpDst(ports, func(udp func(int) loc) ir {
			var a irAnd
			if n.vni >= 0 {
				a = append(a, cmpMasked(udp(12), 4, 0xffffff00, bpf.JumpEqual, uint32(n.vni)<<8))
			}
			// Inner Ethernet frame after UDP (8) and VXLAN (8) headers.
			code := append(addr(udp(16)), bpf.StoreScratch{Src: bpf.RegA, N: s})
			return append(a, &irLeaf{code: code, always: true})
		})
		return t, ctx{link: base{s, 0}, typ: base{s, 12}, net: base{s, 14}}, nil
	case *geneveNode:
		s, err := lw.newSlot()
		if err != nil {
			return nil, c, err
		}
		t := c.udpDst([]uint16{6081}, func(udp func(int) loc) ir {
			// Version (top two bits of the first Geneve byte) must be 0.
			a := irAnd{cmpMasked(udp(8), 1, 0xc0, bpf.JumpEqual, 0)}
			if n.vni >= 0 {
				a = append(a, cmpMasked(udp(12), 4, 0xffffff00, bpf.JumpEqual, uint32(n.vni)<<8))
			}
			// Inner frame after the 8-byte header and 4*OptLen option bytes.
			code := append(addr(udp(8)),
				bpf.TAX{},
				bpf.LoadIndirect{Off: 0, Size: 1},
				bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x3f},
				bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
				bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 8},
				bpf.ALUOpX{Op: bpf.ALUOpAdd},
				bpf.StoreScratch{Src: bpf.RegA, N: s},
			)
			return append(a, &irLeaf{code: code, always: true})
		})
		return t, ctx{link: base{s, 0}, typ: base{s, 12}, net: base{s, 14}}, nil
	}
	return nil, c, fmt.Errorf("internal error: %T is not an encapsulation", n)
}

func isEncap(n node) bool {
	switch n.(type) {
	case *vlanNode, *vxlanNode, *geneveNode:
		return true
	}
	return false
}

// lower converts a parsed expression in context c.
func (lw *lowerer) lower(c ctx, n node) (ir, error) {
	switch n := n.(type) {
	case trueNode:
		return irConst(true), nil
	case *andNode:
		var out irAnd
		for _, t := range n.terms {
			if isEncap(t) {
				x, inner, err := lw.lowerEncap(c, t)
				if err != nil {
					return nil, err
				}
				out = append(out, x)
				c = inner
				continue
			}
			x, err := lw.lower(c, t)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case *orNode:
		a, err := lw.lower(c, n.a)
		if err != nil {
			return nil, err
		}
		b, err := lw.lower(c, n.b)
		if err != nil {
			return nil, err
		}
		return irOr{a, b}, nil
	case *notNode:
		x, err := lw.lower(c, n.x)
		if err != nil {
			return nil, err
		}
		return &irNot{x: x}, nil
	case *vlanNode, *vxlanNode, *geneveNode:
		x, _, err := lw.lowerEncap(c, n)
		return x, err
	case *protoNode:
		return c.proto(n.name), nil
	case *hostNode:
		return lw.lowerHost(c, n), nil
	case *etherHostNode:
		return byDir(n.dir,
			func() ir { return macMatch(c.link, 6, n.mac) },
			func() ir { return macMatch(c.link, 0, n.mac) }), nil
	case etherBroadcastNode:
		return macMatch(c.link, 0, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), nil
	case etherMulticastNode:
		return cmpMasked(c.link.at(0), 1, 0, bpf.JumpBitsSet, 1), nil
	case ipMulticastNode:
		if n.v6 {
			return irAnd{c.isIPv6(), eq(c.net.at(24), 1, 0xff)}, nil
		}
		return irAnd{c.isIPv4(), cmpMasked(c.net.at(16), 1, 0, bpf.JumpGreaterOrEqual, 224)}, nil
	case *etherProtoNode:
		return c.etherType(n.val), nil
	case *ipProtoNode:
		switch n.family {
		case "ip":
			return c.ip4Proto(n.val), nil
		case "ip6":
			return c.ip6Proto(n.val), nil
		}
		return irOr{c.ip4Proto(n.val), c.ip6Proto(n.val)}, nil
	case *portNode:
		return lw.lowerPort(c, n), nil
	case *relNode:
		return lw.lowerRel(c, n)
	}
	return nil, fmt.Errorf("internal error: unknown node %T", n)
}
