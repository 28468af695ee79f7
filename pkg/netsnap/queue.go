package netsnap

import (
	"encoding/binary"
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
	nftaLookupSet       = 1
	nftaLookupFlags     = 5
	nftLookupFInv       = 1
	nftMsgGetSetElem    = 13
	nftaSetElemTable    = 1
	nftaSetElemSet      = 2
	nftaSetElemElements = 3
	maxQueueRuleSets    = 16
)

// QueueRuleSets names the nftables tables of the calling thread's network
// namespace (families ip, ip6, inet and bridge, the ones a bridged frame
// meets) with a rule that hands packets to a userspace program: the nft
// queue statement, or the xtables NFQUEUE target (iptables-nft, and
// programs that write it for kernels without the queue expression), as
// "nftables FAMILY TABLE". Policy engines such as kube-network-policies
// queue the new connections of the pods that policies select. Rules of the
// legacy x_tables backend cannot be read here and are not named. A rule
// that looks an address up in a set that is empty matches nothing and is
// left out: such an engine queues only the packets of the pods that
// policies select, and with none selected on the node it queues nothing.
func QueueRuleSets() ([]string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgGetRule, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: unix.NFNETLINK_V0})
	seen := map[string]bool{}
	var out []string
	var rules []rule
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(m []byte) bool {
		if len(m) < nl.SizeofNfgenmsg {
			return true
		}
		fam := familyName(m[0])
		if fam != "ip" && fam != "ip6" && fam != "inet" && fam != "bridge" {
			return true
		}
		if table, sets, ok := queueRule(m[nl.SizeofNfgenmsg:]); ok {
			rules = append(rules, rule{m[0], fam, table, sets})
		}
		return true
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list nftables rules: %w", err)
	}
	for _, r := range rules {
		s := "nftables " + r.fam + " " + r.table
		if seen[s] || len(out) >= maxQueueRuleSets {
			continue
		}
		empty := false
		for _, set := range r.sets {
			if n, err := setElems(r.famNum, r.table, set); err == nil && n == 0 {
				empty = true
			}
		}
		if !empty {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

// rule is a queue rule of the dump, with the sets it looks addresses up in.
type rule struct {
	famNum     uint8
	fam, table string
	sets       []string
}

// queueRule reads one rule of a dump (its attributes): its table, the sets
// it requires a key to be in (non-inverted lookups), and whether one of its
// expressions queues to userspace.
func queueRule(b []byte) (table string, sets []string, queues bool) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return "", nil, false
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
				if e.Attr.Type&^unix.NLA_F_NESTED != nftaListElem {
					continue
				}
				if queueExpr(e.Value) {
					queues = true
				}
				if set := lookupSet(e.Value); set != "" {
					sets = append(sets, set)
				}
			}
		}
	}
	return table, sets, queues
}

// nftExpr splits one expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA) into its
// name and data.
func nftExpr(b []byte) (name string, data []byte, ok bool) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return "", nil, false
	}
	for _, a := range attrs {
		switch a.Attr.Type &^ unix.NLA_F_NESTED {
		case nftaExprName:
			name = cString(a.Value)
		case nftaExprData:
			data = a.Value
		}
	}
	return name, data, true
}

// lookupSet: the set of a non-inverted lookup expression, "" otherwise.
func lookupSet(b []byte) string {
	name, data, ok := nftExpr(b)
	if !ok || name != "lookup" {
		return ""
	}
	ls, err := nl.ParseRouteAttr(data)
	if err != nil {
		return ""
	}
	var set string
	for _, l := range ls {
		switch l.Attr.Type &^ unix.NLA_F_NESTED {
		case nftaLookupSet:
			set = cString(l.Value)
		case nftaLookupFlags:
			if len(l.Value) >= 4 && binary.BigEndian.Uint32(l.Value)&nftLookupFInv != 0 {
				return ""
			}
		}
	}
	return set
}

// setElems counts the elements of a set, up to the first message that holds
// any.
func setElems(family uint8, table, set string) (int, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|nftMsgGetSetElem, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: unix.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nftaSetElemTable, nl.ZeroTerminated(table)))
	req.AddData(nl.NewRtAttr(nftaSetElemSet, nl.ZeroTerminated(set)))
	n := 0
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(m []byte) bool {
		if len(m) < nl.SizeofNfgenmsg {
			return true
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofNfgenmsg:])
		if err != nil {
			return true
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED == nftaSetElemElements {
				if es, err := nl.ParseRouteAttr(a.Value); err == nil {
					n += len(es)
				}
			}
		}
		return n == 0
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return 0, err
	}
	return n, nil
}

// queueExpr: one expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA) is the queue
// statement or the NFQUEUE target.
func queueExpr(b []byte) bool {
	name, data, ok := nftExpr(b)
	if !ok {
		return false
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
