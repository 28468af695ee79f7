package netsnap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Conntrack is read with exact lookups (IPCTNL_MSG_CT_GET with the
// original tuple: a hash lookup in the kernel), never with a dump of the
// table, which on a busy node holds hundreds of thousands of entries. The
// netlink attributes are those of include/uapi/linux/netfilter/
// nfnetlink_conntrack.h; vishvananda/netlink (already a dependency) has
// the request plumbing but its conntrack parser drops the status bits and
// the ICMP id, so the entry is parsed here.

// Attributes of nfnetlink_conntrack.h that package nl does not name.
const (
	ctaProtoICMPID     = 4
	ctaProtoICMPType   = 5
	ctaProtoICMPCode   = 6
	ctaProtoICMPv6ID   = 7
	ctaProtoICMPv6Type = 8
	ctaProtoICMPv6Code = 9

	ipsSeenReply = 1 << 1
	ipsSrcNAT    = 1 << 4
	ipsDstNAT    = 1 << 5
)

// Flow is the original tuple of a probe's connection, as its source sent
// it.
type Flow struct {
	Proto   string // tcp, udp, icmp (an echo request; icmp6 for IPv6)
	Src     netip.Addr
	Dst     netip.Addr
	SrcPort int // tcp, udp
	DstPort int
	ICMPID  int // icmp
}

// ErrNoEntry is returned by LookupConntrack when conntrack holds no entry
// for the flow (it never saw it, or the entry expired).
var ErrNoEntry = errors.New("no conntrack entry")

// LookupConntrack returns the conntrack entry of a flow in the calling
// thread's network namespace (zone 0), as a wire.NAT without Probe, TS
// and Rules. It needs CAP_NET_ADMIN in the namespace.
func LookupConntrack(f Flow) (*wire.NAT, error) {
	req, err := ctGetRequest(f)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, ErrNoEntry
	case errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("read conntrack: %w (needs NET_ADMIN)", err)
	case err != nil:
		return nil, fmt.Errorf("read conntrack: %w", err)
	case len(msgs) == 0:
		return nil, ErrNoEntry
	}
	return parseConntrack(msgs[0])
}

func ctGetRequest(f Flow) (*nl.NetlinkRequest, error) {
	if !f.Src.IsValid() || !f.Dst.IsValid() {
		return nil, errors.New("conntrack lookup: source and destination are required")
	}
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("conntrack lookup: %s and %s are of different families", src, dst)
	}
	fam := uint8(unix.AF_INET)
	srcAttr, dstAttr := nl.CTA_IP_V4_SRC, nl.CTA_IP_V4_DST
	if src.Is6() {
		fam = unix.AF_INET6
		srcAttr, dstAttr = nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
	}
	tuple := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_ORIG, nil)
	ip := tuple.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
	ip.AddRtAttr(srcAttr, src.AsSlice())
	ip.AddRtAttr(dstAttr, dst.AsSlice())
	proto := tuple.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_PROTO, nil)
	switch {
	case f.Proto == "tcp" || f.Proto == "udp":
		num := uint8(unix.IPPROTO_TCP)
		if f.Proto == "udp" {
			num = unix.IPPROTO_UDP
		}
		if !validPort(f.SrcPort) || !validPort(f.DstPort) {
			return nil, fmt.Errorf("conntrack lookup: %s ports %d → %d out of range", f.Proto, f.SrcPort, f.DstPort)
		}
		proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{num})
		proto.AddRtAttr(nl.CTA_PROTO_SRC_PORT, nl.BEUint16Attr(uint16(f.SrcPort)))
		proto.AddRtAttr(nl.CTA_PROTO_DST_PORT, nl.BEUint16Attr(uint16(f.DstPort)))
	case (f.Proto == "icmp" || f.Proto == "icmp6") && src.Is4():
		proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{unix.IPPROTO_ICMP})
		proto.AddRtAttr(ctaProtoICMPID, nl.BEUint16Attr(uint16(f.ICMPID)))
		proto.AddRtAttr(ctaProtoICMPType, []byte{8}) // echo request
		proto.AddRtAttr(ctaProtoICMPCode, []byte{0})
	case f.Proto == "icmp" || f.Proto == "icmp6":
		proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{unix.IPPROTO_ICMPV6})
		proto.AddRtAttr(ctaProtoICMPv6ID, nl.BEUint16Attr(uint16(f.ICMPID)))
		proto.AddRtAttr(ctaProtoICMPv6Type, []byte{128}) // echo request
		proto.AddRtAttr(ctaProtoICMPv6Code, []byte{0})
	default:
		return nil, fmt.Errorf("conntrack lookup: protocol %q (want tcp, udp or icmp)", f.Proto)
	}
	// The kernel marks its answer NLM_F_MULTI (ctnetlink_fill_info does
	// for every unicast): ask for the acknowledgement that ends it.
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_ACK)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: fam, Version: unix.NFNETLINK_V0})
	req.AddData(tuple)
	return req, nil
}

func validPort(p int) bool { return p > 0 && p <= 0xffff }

// parseConntrack reads one conntrack message (nfgenmsg, then attributes).
// Everything in it is checked: a short or malformed message is an error,
// never a panic.
func parseConntrack(msg []byte) (*wire.NAT, error) {
	if len(msg) < nl.SizeofNfgenmsg {
		return nil, errors.New("conntrack: short message")
	}
	attrs, err := nl.ParseRouteAttr(msg[nl.SizeofNfgenmsg:])
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	n := &wire.NAT{}
	var protoNum uint8
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case nl.CTA_TUPLE_ORIG:
			if protoNum, err = parseTuple(a.Value, &n.Orig); err != nil {
				return nil, err
			}
		case nl.CTA_TUPLE_REPLY:
			if _, err = parseTuple(a.Value, &n.Reply); err != nil {
				return nil, err
			}
		case nl.CTA_STATUS:
			if len(a.Value) >= 4 {
				st := binary.BigEndian.Uint32(a.Value)
				n.DNAT, n.SNAT, n.SeenReply = st&ipsDstNAT != 0, st&ipsSrcNAT != 0, st&ipsSeenReply != 0
			}
		case nl.CTA_MARK:
			if len(a.Value) >= 4 {
				n.Mark = binary.BigEndian.Uint32(a.Value)
			}
		case nl.CTA_ZONE:
			if len(a.Value) >= 2 {
				n.Zone = int(binary.BigEndian.Uint16(a.Value))
			}
		case nl.CTA_PROTOINFO:
			n.State = tcpState(a.Value)
		}
	}
	if n.Orig.Src == "" || n.Reply.Src == "" {
		return nil, errors.New("conntrack: entry without its tuples")
	}
	switch protoNum {
	case unix.IPPROTO_TCP:
		n.Proto = "tcp"
	case unix.IPPROTO_UDP:
		n.Proto = "udp"
	case unix.IPPROTO_ICMP:
		n.Proto = "icmp"
	case unix.IPPROTO_ICMPV6:
		n.Proto = "icmp6"
	default:
		n.Proto = fmt.Sprint(protoNum)
	}
	if n.Proto != "tcp" {
		n.State = ""
	}
	return n, nil
}

func parseTuple(b []byte, t *wire.Tuple) (proto uint8, err error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return 0, fmt.Errorf("conntrack tuple: %w", err)
	}
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case nl.CTA_TUPLE_IP:
			ips, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, fmt.Errorf("conntrack tuple address: %w", err)
			}
			for _, ip := range ips {
				addr, ok := netip.AddrFromSlice(ip.Value)
				if !ok {
					return 0, fmt.Errorf("conntrack tuple: address of %d bytes", len(ip.Value))
				}
				switch ip.Attr.Type {
				case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
					t.Src = addr.Unmap().String()
				case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
					t.Dst = addr.Unmap().String()
				}
			}
		case nl.CTA_TUPLE_PROTO:
			ps, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, fmt.Errorf("conntrack tuple protocol: %w", err)
			}
			for _, p := range ps {
				switch p.Attr.Type {
				case nl.CTA_PROTO_NUM:
					if len(p.Value) >= 1 {
						proto = p.Value[0]
					}
				case nl.CTA_PROTO_SRC_PORT:
					t.SrcPort = be16(p.Value)
				case nl.CTA_PROTO_DST_PORT:
					t.DstPort = be16(p.Value)
				case ctaProtoICMPID, ctaProtoICMPv6ID:
					t.ICMPID = be16(p.Value)
				}
			}
		}
	}
	return proto, nil
}

func be16(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

// tcpState reads CTA_PROTOINFO → CTA_PROTOINFO_TCP → state.
func tcpState(b []byte) string {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.Attr.Type&^unix.NLA_F_NESTED != nl.CTA_PROTOINFO_TCP {
			continue
		}
		in, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return ""
		}
		for _, x := range in {
			if x.Attr.Type == nl.CTA_PROTOINFO_TCP_STATE && len(x.Value) >= 1 {
				names := []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
					"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}
				if s := int(x.Value[0]); s < len(names) {
					return names[s]
				}
				return fmt.Sprintf("state-%d", x.Value[0])
			}
		}
	}
	return ""
}

// Attributes of nf_tables.h.
const (
	nftMsgGetChain     = 4
	nftaChainTable     = 1
	nftaChainName      = 3
	nftaChainHook      = 4
	nftaChainType      = 7
	nftaHookHooknum    = 1
	nfInetPreRouting   = 0
	nfInetLocalOut     = 3
	maxNATRuleSetNames = 16
)

// NATRuleSets names the rule sets of the calling thread's network
// namespace that hook NAT for IPv4 (v6 false) or IPv6 connections where a
// destination is translated (prerouting, output), in a chain that holds
// at least one rule: "nftables FAMILY TABLE"
// for an nftables table of family ip, ip6 or inet with a nat chain there,
// "iptables FAMILY nat (nf_tables)" for the table "nat" with the chains
// PREROUTING or OUTPUT as iptables-nft lays it out, and
// "iptables-legacy nat" (ip6tables-legacy for IPv6) when the legacy
// x_tables nat table is loaded. Conntrack does not record which rule
// translated a connection: these are the candidates.
func NATRuleSets(v6 bool) ([]string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] && len(out) < maxNATRuleSetNames {
			seen[s] = true
			out = append(out, s)
		}
	}
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgGetChain, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: unix.NFNETLINK_V0})
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofNfgenmsg {
			continue
		}
		fam := familyName(m[0])
		if fam != "inet" && (fam == "ip6") != v6 || fam != "ip" && fam != "ip6" && fam != "inet" {
			continue // rules of another address family cannot translate it
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofNfgenmsg:])
		if err != nil {
			continue
		}
		var table, chain, typ string
		hook := -1
		famNum := m[0]
		for _, a := range attrs {
			switch a.Attr.Type &^ unix.NLA_F_NESTED {
			case nftaChainTable:
				table = cString(a.Value)
			case nftaChainName:
				chain = cString(a.Value)
			case nftaChainType:
				typ = cString(a.Value)
			case nftaChainHook:
				if hs, err := nl.ParseRouteAttr(a.Value); err == nil {
					for _, h := range hs {
						if h.Attr.Type == nftaHookHooknum && len(h.Value) >= 4 {
							hook = int(binary.BigEndian.Uint32(h.Value))
						}
					}
				}
			}
		}
		if typ != "nat" || (hook != nfInetPreRouting && hook != nfInetLocalOut) {
			continue
		}
		// An empty base chain translates nothing (iptables-nft makes all
		// of a table's base chains at its first rule, and they stay when
		// the rules go).
		if n, err := chainRules(famNum, table, chain); err == nil && n == 0 {
			continue
		}
		if table == "nat" && (chain == "PREROUTING" || chain == "OUTPUT") {
			add("iptables " + fam + " nat (nf_tables)")
		} else {
			add("nftables " + fam + " " + table)
		}
	}
	legacy, names := "iptables-legacy nat", "/proc/net/ip_tables_names"
	if v6 {
		legacy, names = "ip6tables-legacy nat", "/proc/net/ip6_tables_names"
	}
	if b, err := os.ReadFile(names); err == nil {
		for _, l := range strings.Fields(string(b)) {
			if l == "nat" {
				add(legacy)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// nftMsgGetRule and the rule attributes that filter a dump (nf_tables.h).
const (
	nftMsgGetRule   = 7
	nftaRuleTable   = 1
	nftaRuleChain   = 2
	maxRulesCounted = 1 << 16
)

// chainRules counts the rules of one nftables chain: a dump filtered by
// the kernel to that table and chain (a hook chain holds a few rules that
// jump elsewhere, whatever the size of the rule set).
func chainRules(family uint8, table, chain string) (int, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgGetRule, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: unix.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nftaRuleTable, nl.ZeroTerminated(table)))
	req.AddData(nl.NewRtAttr(nftaRuleChain, nl.ZeroTerminated(chain)))
	n := 0
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func([]byte) bool {
		n++
		return n < maxRulesCounted
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return 0, err
	}
	return n, nil
}

func familyName(f uint8) string {
	switch f {
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_NETDEV:
		return "netdev"
	case unix.NFPROTO_ARP:
		return "arp"
	}
	return fmt.Sprintf("family-%d", f)
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
