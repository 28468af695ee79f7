package netsnap

import (
	"errors"
	"fmt"
	"runtime"
	"sort"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Rule and expression attributes of nf_tables.h, and the xtables target's
// name attribute (nft_compat).
const (
	nftaRuleExpressions = 4
	nftaListElem        = 1
	nftaExprName        = 1
	nftaExprData        = 2
	nftaTargetName      = 1
	maxQueueRuleSets    = 16
)

// QueueRuleSets names the nftables tables of the calling thread's network
// namespace (families ip, ip6, inet and bridge, the ones a bridged frame
// meets) with a rule that hands packets to a userspace program: the nft
// queue statement, or the xtables NFQUEUE target (iptables-nft, and
// programs that write it for kernels without the queue expression), as
// "nftables FAMILY TABLE". Policy engines such as kube-network-policies
// queue the new connections of the pods that policies select. Rules of the
// legacy x_tables backend cannot be read here and are not named.
func QueueRuleSets() ([]string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgGetRule, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: unix.NFNETLINK_V0})
	seen := map[string]bool{}
	var out []string
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(m []byte) bool {
		if len(m) < nl.SizeofNfgenmsg {
			return true
		}
		fam := familyName(m[0])
		if fam != "ip" && fam != "ip6" && fam != "inet" && fam != "bridge" {
			return true
		}
		if table, ok := queueRule(m[nl.SizeofNfgenmsg:]); ok {
			if s := "nftables " + fam + " " + table; !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		return len(out) < maxQueueRuleSets
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list nftables rules: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// queueRule reads one rule of a dump (its attributes): its table, and
// whether one of its expressions queues to userspace.
func queueRule(b []byte) (table string, queues bool) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return "", false
	}
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case nftaRuleTable:
			table = cString(a.Value)
		case nftaRuleExpressions:
			elems, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				continue
			}
			for _, e := range elems {
				if e.Attr.Type&^unix.NLA_F_NESTED == nftaListElem && queueExpr(e.Value) {
					queues = true
				}
			}
		}
	}
	return table, queues
}

// queueExpr: one expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA) is the queue
// statement or the NFQUEUE target.
func queueExpr(b []byte) bool {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return false
	}
	var name string
	var data []byte
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case nftaExprName:
			name = cString(a.Value)
		case nftaExprData:
			data = a.Value
		}
	}
	switch name {
	case "queue":
		return true
	case "target":
		ts, err := nl.ParseRouteAttr(data)
		if err != nil {
			return false
		}
		for _, t := range ts {
			if t.Attr.Type&^unix.NLA_F_NESTED == nftaTargetName && cString(t.Value) == "NFQUEUE" {
				return true
			}
		}
	}
	return false
}
