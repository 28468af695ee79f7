// Package filter compiles tcpdump filter expressions to classic BPF for
// Ethernet (DLT_EN10MB) frames, in pure Go, without libpcap.
//
// The supported primitives are those most used with tcpdump:
//
//	host H, src host H, dst host H      IPv4 or IPv6 literal; for IPv4 "host"
//	                                    also matches ARP/RARP sender/target
//	ip host, ip6 host, arp host, rarp host
//	net CIDR, src net, dst net          also "net 10", "net 10.1", "net A mask M"
//	port N, src port N, dst port N      TCP, UDP and SCTP over IPv4 and IPv6
//	portrange A-B                       likewise
//	tcp|udp|sctp [src|dst] port N
//	ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6, igmp
//	ip proto N, ip6 proto N, proto N    N may be a name: "proto \tcp"
//	ether host|src|dst MAC, ether broadcast, ether multicast, ether proto N
//	broadcast, multicast, ip multicast, ip6 multicast
//	less N, greater N
//	vlan [ID]
//	vxlan [port N] [VNI], geneve [VNI]  (see below)
//	relations: tcp[tcpflags] & (tcp-syn|tcp-ack) != 0, ip[2:2] > 576,
//	           len >= 100, icmp[icmptype] = icmp-echo, ...
//	and &&, or ||, not !, parentheses
//
// As in tcpdump, "and" and "or" have equal precedence and associate left
// to right, and a bare value reuses the qualifiers of the primitive before
// it: "host 10.0.0.1 or 10.0.0.2", "tcp port 80 or 443".
//
// Ports and transport protocols over IPv6 are looked for right after the
// fixed 40-byte header: extension headers are not walked (as libpcap does
// for ports; for "tcp", "icmp6", "ip6 proto N" a fragment header is
// skipped, again like libpcap). IPv4 port tests skip non-first fragments
// and honour the header length (IHL). tcp[], udp[], icmp[] and the like
// index IPv4 packets only, as in libpcap; icmp6[] indexes IPv6 packets
// whose next header is ICMPv6.
//
// vlan, vxlan and geneve are encapsulations: the primitives after them in
// the same and-chain apply to what they carry. After "vlan" the EtherType
// and network header are 4 bytes further (Ethernet addresses stay the
// outer ones); after "vxlan" (UDP destination port 4789 or 8472, or the
// given port) and "geneve" (UDP port 6081, version 0) everything applies to
// the inner Ethernet frame, whose position is computed at run time from
// the outer IPv4 header length (or the fixed IPv6 header) and, for Geneve,
// the option length. Unlike tcpdump, where such a keyword shifts all later
// primitives of the whole expression, the shift here ends with the
// and-chain: in "(vlan and tcp) or udp", udp is tested on untagged
// frames. VXLAN is not in libpcap; Geneve payloads are assumed to be
// Ethernet (protocol type 0x6558). Linux delivers VLAN tags to packet
// sockets out of band unless the device keeps them in the frame, so
// "vlan" matches in-band tags only.
package filter

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Compile compiles a tcpdump-style expression into a classic BPF program
// that returns snaplen for a matching frame and 0 otherwise. An empty
// expression matches everything. Errors are one line and name the
// position of the problem as a 0-based byte offset into expr.
//
// Programs never exceed MaxInstructions and conditional jumps never skip
// more than 255 instructions (farther targets go through an
// unconditional jump). The kernel also charges a socket filter against
// net.core.optmem_max, which with the default limit rejects programs of
// more than about 2,500 instructions with ENOMEM.
func Compile(expr string, snaplen int) ([]bpf.Instruction, error) {
	if snaplen <= 0 || snaplen > 1<<30 {
		return nil, wrap(expr, fmt.Errorf("invalid snaplen %d", snaplen))
	}
	toks, err := lex(expr)
	if err != nil {
		return nil, wrap(expr, err)
	}
	tree, err := parse(toks)
	if err != nil {
		return nil, wrap(expr, err)
	}
	lw := &lowerer{}
	code, err := lw.lower(outerCtx, tree)
	if err != nil {
		return nil, wrap(expr, err)
	}
	a := &assembler{}
	accept, reject := a.label(), a.label()
	a.gen(code, accept, reject)
	a.place(accept)
	a.items = append(a.items, item{kind: itPlain, ins: bpf.RetConstant{Val: uint32(snaplen)}})
	a.place(reject)
	a.items = append(a.items, item{kind: itPlain, ins: bpf.RetConstant{Val: 0}})
	a.dropRedundantLoads()
	prog, err := a.resolve()
	if err != nil {
		return nil, wrap(expr, err)
	}
	return prog, nil
}

// Assemble compiles expr like Compile and assembles the program into raw
// instructions, ready for SO_ATTACH_FILTER.
func Assemble(expr string, snaplen int) ([]bpf.RawInstruction, error) {
	prog, err := Compile(expr, snaplen)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, wrap(expr, err)
	}
	return raw, nil
}

// maxQuoted bounds how much of a long expression an error message quotes.
const maxQuoted = 100

func wrap(expr string, err error) error {
	if len(expr) > maxQuoted {
		expr = expr[:maxQuoted] + "..."
	}
	var pe *posError
	if errors.As(err, &pe) {
		if pe.noOffset {
			return fmt.Errorf("filter %q: %s", expr, pe.msg)
		}
		return fmt.Errorf("filter %q: %s at offset %d", expr, pe.msg, pe.off)
	}
	return fmt.Errorf("filter %q: %v", expr, err)
}
