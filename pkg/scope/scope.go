// Package scope decides what an agent's kernel filter lets through to user
// space, as tcpdump expressions (package filter compiles them).
//
// An active trace is scoped to its probe: the probe's own frames in both
// directions (ICMP echo id, or the TCP/UDP source ports of the probes and
// the destination port), the ICMP errors that quote a probe, and the ARP
// and NDP frames that concern the two endpoints and the addresses the path
// resolves (gateways, VTEPs) — in the clear and inside VXLAN and Geneve.
// Application traffic between the same pods, on the same ports, never
// reaches user space, so a busy pod costs the trace nothing.
//
// A passive trace observes the traffic between the traced hosts (Hosts).
package scope

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Hosts is the filter of a passive trace between hosts: their mutual
// traffic, and ARP/ICMP/NDP that involve either (address resolution,
// errors from routers on the way), also inside VXLAN and Geneve tunnels.
func Hosts(hosts []string) string {
	if len(hosts) == 0 {
		return ""
	}
	var each []string
	for _, h := range hosts {
		each = append(each, "host "+h)
	}
	any := "(" + strings.Join(each, " or ") + ")"
	flow := any
	if len(hosts) == 2 {
		flow = "(" + strings.Join(each, " and ") + ")"
	}
	return fmt.Sprintf("%s or ((arp or icmp or icmp6) and %s) or (vxlan and %s) or (geneve and %s)", flow, any, flow, flow)
}

// maxProbes bounds the source ports a TCP/UDP probe scope lists.
const maxProbes = 1000

// Probe is the filter of an active trace: the frames of the probes
// described by spec, sent from src to dst, and the address resolution of
// src, dst and resolved (the next hops and tunnel endpoints the observing
// namespace uses on the way: see netsnap.PathAddrs).
//
// When spec.NAT is set the destination may be translated on the way (a
// Service's virtual IP, a DNAT rule): the frames are then recognised by
// the probe's identity at the source alone (ICMP echo id, TCP/UDP source
// ports, to and from src), towards any address and port, so that the
// frames after the translation pass too.
func Probe(src, dst string, spec *wire.ProbeSpec, resolved []string) (string, error) {
	if spec == nil {
		return "", fmt.Errorf("scope: no probe")
	}
	s, err := netip.ParseAddr(src)
	if err != nil {
		return "", fmt.Errorf("scope: probe source %q is not an IP address", src)
	}
	d, err := netip.ParseAddr(dst)
	if err != nil {
		return "", fmt.Errorf("scope: probe destination %q is not an IP address", dst)
	}
	s, d = s.Unmap(), d.Unmap()
	if s.Is4() != d.Is4() {
		return "", fmt.Errorf("scope: probe source %s and destination %s are of different families", s, d)
	}
	count := spec.Count
	if count <= 0 {
		count = 1
	}
	if count > maxProbes {
		return "", fmt.Errorf("scope: %d probes: at most %d", count, maxProbes)
	}
	var frames string
	peer := d // the far end of the probe's frames; invalid: any address
	if spec.NAT {
		peer = netip.Addr{}
	}
	switch spec.Proto {
	case "icmp":
		id := spec.ID & 0xffff
		frames = echo(s, peer, id) + " or " + icmpError(s, peer, func(l4 string) string {
			return fmt.Sprintf("%s[%s + 4:2] = %d", icmpName(s), l4, id)
		}, protoICMP(s))
	case "tcp", "udp":
		if spec.Port <= 0 || spec.Port > 0xffff {
			return "", fmt.Errorf("scope: %s probe needs a destination port, got %d", spec.Proto, spec.Port)
		}
		lo := spec.ID
		hi := lo + count - 1
		if lo <= 0 || hi > 0xffff {
			return "", fmt.Errorf("scope: probe source ports %d-%d are out of range", lo, hi)
		}
		ports := fmt.Sprintf("port %d", lo)
		if hi > lo {
			ports = fmt.Sprintf("portrange %d-%d", lo, hi)
		}
		p := spec.Proto
		if spec.NAT {
			frames = fmt.Sprintf("(%s and ((src host %s and src %s) or (dst host %s and dst %s)))", p, s, ports, s, ports)
		} else {
			frames = fmt.Sprintf("(%s and ((src host %s and src %s and dst host %s and dst port %d) or (src host %s and src port %d and dst host %s and dst %s)))",
				p, s, ports, d, spec.Port, d, spec.Port, s, ports)
		}
		ipproto := 6
		if p == "udp" {
			ipproto = 17
		}
		frames += " or " + icmpError(s, peer, func(l4 string) string {
			name := icmpName(s)
			if spec.NAT { // the quoted destination port may be the translated one
				return fmt.Sprintf("%s[%s:2] >= %d and %s[%s:2] <= %d", name, l4, lo, name, l4, hi)
			}
			return fmt.Sprintf("%s[%s:2] >= %d and %s[%s:2] <= %d and %s[%s + 2:2] = %d",
				name, l4, lo, name, l4, hi, name, l4, spec.Port)
		}, ipproto)
	default:
		return "", fmt.Errorf("scope: unknown probe protocol %q (want icmp, tcp or udp)", spec.Proto)
	}
	addrs := []netip.Addr{s, d}
	for _, r := range resolved {
		a, err := netip.ParseAddr(r)
		if err != nil {
			return "", fmt.Errorf("scope: resolved address %q is not an IP address", r)
		}
		a = a.Unmap()
		if !contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	inner := "(" + frames + ") or " + resolution(addrs)
	return fmt.Sprintf("%s or (vxlan and (%s)) or (geneve and (%s))", inner, inner, inner), nil
}

// echo is an echo request or reply of the probe's id between src and dst
// (any address when d is not valid).
func echo(s, d netip.Addr, id int) string {
	hosts := fmt.Sprintf("host %s", s)
	if d.IsValid() {
		hosts += fmt.Sprintf(" and host %s", d)
	}
	if s.Is4() {
		return fmt.Sprintf("(icmp and %s and (icmp[0] = 8 or icmp[0] = 0) and icmp[4:2] = %d)", hosts, id)
	}
	return fmt.Sprintf("(icmp6 and %s and (icmp6[0] = 128 or icmp6[0] = 129) and icmp6[4:2] = %d)", hosts, id)
}

// icmpError is an ICMP error (destination unreachable, time exceeded,
// parameter problem, and for IPv4 source quench and redirect) whose quoted
// packet went from s to d (to anywhere when d is not valid) with the given IP protocol, and whose quoted
// transport header passes l4test (given the expression of its offset in
// the ICMP message). ICMPv6 errors are taken to quote an IPv6 header
// without extension headers, as probes are sent.
func icmpError(s, d netip.Addr, l4test func(l4 string) string, ipproto int) string {
	if s.Is4() {
		// The quoted IPv4 header starts at icmp[8]: protocol at +9,
		// source at +12, destination at +16, then the transport header
		// after IHL*4 bytes.
		dst := ""
		if d.IsValid() {
			dst = fmt.Sprintf(" and icmp[24:4] = %d", be32(d.As4()))
		}
		return fmt.Sprintf("(icmp and (icmp[0] = 3 or icmp[0] = 4 or icmp[0] = 5 or icmp[0] = 11 or icmp[0] = 12) and icmp[17] = %d and icmp[20:4] = %d%s and %s)",
			ipproto, be32(s.As4()), dst, l4test("8 + (icmp[8] & 15) * 4"))
	}
	// The quoted IPv6 header starts at icmp6[8]: next header at +6,
	// source at +8, destination at +24, the transport header at +40.
	dst := ""
	if d.IsValid() {
		dst = " and " + words("icmp6", 32, d)
	}
	return fmt.Sprintf("(icmp6 and icmp6[0] >= 1 and icmp6[0] <= 4 and icmp6[14] = %d and %s%s and %s)",
		ipproto, words("icmp6", 16, s), dst, l4test("48"))
}

// resolution is ARP (IPv4) or NDP neighbour solicitation/advertisement
// (IPv6) about any of addrs: sent by or for one of them.
func resolution(addrs []netip.Addr) string {
	var v4, v6, targets []string
	for _, a := range addrs {
		if a.Is4() {
			v4 = append(v4, "host "+a.String())
		} else {
			v6 = append(v6, "host "+a.String())
			targets = append(targets, "("+words("icmp6", 8, a)+")")
		}
	}
	var parts []string
	if len(v4) > 0 {
		parts = append(parts, "(arp and ("+strings.Join(v4, " or ")+"))")
	}
	if len(v6) > 0 {
		parts = append(parts, "(icmp6 and (icmp6[0] = 135 or icmp6[0] = 136) and ("+
			strings.Join(v6, " or ")+" or "+strings.Join(targets, " or ")+"))")
	}
	return "(" + strings.Join(parts, " or ") + ")"
}

func icmpName(a netip.Addr) string {
	if a.Is4() {
		return "icmp"
	}
	return "icmp6"
}

func protoICMP(a netip.Addr) int {
	if a.Is4() {
		return 1
	}
	return 58
}

// words compares the 16 bytes of an IPv6 address at proto[off] as four
// 32-bit loads.
func words(proto string, off int, a netip.Addr) string {
	b := a.As16()
	var w []string
	for i := 0; i < 4; i++ {
		w = append(w, fmt.Sprintf("%s[%d:4] = %d", proto, off+4*i, be32([4]byte(b[4*i:4*i+4]))))
	}
	return strings.Join(w, " and ")
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}
