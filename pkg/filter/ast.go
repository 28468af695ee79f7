package filter

import "net/netip"

// node is a parsed filter expression. The parser produces the types below;
// the code generator lowers them to classic BPF.
type node interface{}

// dir is a direction qualifier.
type dir int

const (
	dirAny dir = iota // "src or dst" (the default)
	dirSrc
	dirDst
	dirBoth // "src and dst"
)

type (
	trueNode struct{}
	andNode  struct{ terms []node }
	orNode   struct{ a, b node }
	notNode  struct{ x node }

	// protoNode is a bare protocol keyword: ip, ip6, arp, rarp, tcp, udp,
	// sctp, icmp, icmp6, igmp.
	protoNode struct{ name string }

	// hostNode is host or net: address prefix addr/bits. proto is "" (IPv4
	// and ARP/RARP, or IPv6 for an IPv6 address), "ip", "ip6", "arp" or
	// "rarp".
	hostNode struct {
		proto string
		dir   dir
		pfx   netip.Prefix
	}

	etherHostNode struct {
		dir dir
		mac [6]byte
	}
	etherBroadcastNode struct{}
	etherMulticastNode struct{}
	ipMulticastNode    struct{ v6 bool }

	etherProtoNode struct{ val uint32 }
	// ipProtoNode is "ip proto N", "ip6 proto N" (family "ip"/"ip6") or
	// "proto N" (family "").
	ipProtoNode struct {
		family string
		val    uint32
	}

	// portNode is port or portrange; proto is "tcp", "udp", "sctp" or ""
	// for all three.
	portNode struct {
		proto  string
		dir    dir
		lo, hi uint16
	}

	vlanNode  struct{ id int } // id < 0: any
	vxlanNode struct {
		ports []uint16
		vni   int64 // < 0: any
	}
	geneveNode struct{ vni int64 }

	relNode struct {
		op   string // > >= < <= = !=
		l, r arith
	}
)

// arith is an arithmetic expression of a relation.
type arith interface{}

type (
	numArith  struct{ v uint32 }
	lenArith  struct{}
	loadArith struct {
		proto string
		idx   arith
		size  int
	}
	binArith struct {
		op   string
		l, r arith
	}
	negArith struct{ x arith }
)
