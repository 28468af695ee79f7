package verdict

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// netfilterDrop names the netfilter verdict that ended the probe (or its
// answer, reply) on a node whose agent traced it: a rule or chain policy
// whose verdict is drop, or a queue verdict after which the kernel
// reported nothing more of that packet (a userspace program took it and
// never gave it back). Nodes where the hop was lost (at) are asked first.
// When no node can name one, it says why when a node could not trace the
// probe; nil when every node traced it and none dropped it.
func netfilterDrop(t *trace.Trace, probe string, reply bool, at ...*trace.AgentInfo) *trace.Drop {
	agents := append(append([]*trace.AgentInfo(nil), at...), t.Agents...)
	seen := map[*trace.AgentInfo]bool{}
	for _, a := range agents {
		if a == nil || seen[a] || a.Role != wire.RoleNode {
			continue
		}
		seen[a] = true
		if d := terminal(a, probe, reply); d != nil {
			return d
		}
	}
	// Nothing named: why, where a node could not trace.
	var why []string
	for _, a := range agents {
		if a == nil || !seen[a] || a.Hello == nil {
			continue
		}
		seen[a] = false // once each
		st := a.Hello.NFTrace
		switch {
		case st == nil:
			why = append(why, a.Name+" did not trace netfilter (--nftrace=false, or an agent without it)")
		case !st.Armed:
			why = append(why, a.Name+" could not trace netfilter: "+st.Unavailable)
		case len(st.Legacy) > 0:
			why = append(why, a.Name+" has "+strings.Join(st.Legacy, ", ")+" tables, whose rules are not in nf_tables and cannot be traced")
		}
	}
	if len(why) == 0 {
		return nil
	}
	return &trace.Drop{By: "netfilter", Unavailable: true,
		Text: "no netfilter rule could be named: " + strings.Join(why, "; ")}
}

// terminal is the verdict that ended the probe's packet in one agent's
// trace events, nil when none did.
func terminal(a *trace.AgentInfo, probe string, reply bool) *trace.Drop {
	ev := a.NFTrace
	for i, e := range ev {
		if e.Probe != probe || e.Reply != reply {
			continue
		}
		switch e.Verdict {
		case "drop":
		case "queue":
			later := false
			for _, f := range ev[i+1:] {
				if f.ID == e.ID {
					later = true
					break
				}
			}
			if later {
				continue // given back by the program that took it
			}
		default:
			continue
		}
		return dropOf(a, e)
	}
	return nil
}

func dropOf(a *trace.AgentInfo, e *wire.NFTrace) *trace.Drop {
	d := &trace.Drop{By: "netfilter", Agent: a.Name, Family: e.Family, Table: e.Table, Chain: e.Chain,
		Handle: e.Handle, Rule: e.Rule, Verdict: e.Verdict, Queue: e.Queue, Policy: e.Type == "policy", Reply: e.Reply}
	d.Backend = "nftables"
	if e.IPTables {
		d.Backend = "iptables-nft"
	}
	if d.Verdict == "drop" && (strings.Contains(e.Rule, "reject") || strings.Contains(e.Rule, `xt target "REJECT"`)) {
		d.Verdict = "reject"
	}
	where := fmt.Sprintf("nftables %s %s %s", e.Family, e.Table, e.Chain)
	if e.IPTables {
		where = fmt.Sprintf("iptables-nft table %s chain %s", e.Table, e.Chain)
	}
	what := "the probe"
	if e.Reply {
		what = "the answer"
	}
	var rule string
	switch {
	case d.Policy:
		rule = "policy " + e.Verdict
	case e.Rule != "":
		rule = "rule " + strconv.Quote(e.Rule)
	default:
		rule = fmt.Sprintf("rule handle %d", e.Handle)
	}
	switch d.Verdict {
	case "queue":
		// The kernel traces the queueing, not the answer of the program
		// reading the queue (a policy engine's accept or drop): a lost
		// probe whose packet was queued and not traced again was dropped
		// by that program's verdict, or by the kernel because no program
		// reads the queue (unless the rule says bypass).
		d.Text = fmt.Sprintf("%s was queued to userspace NFQUEUE %d by %s %s on %s and never given back: the program reading that queue dropped it, or none reads it", what, e.Queue, where, rule, a.Name)
	case "reject":
		d.Text = fmt.Sprintf("%s was rejected by %s %s on %s", what, where, rule, a.Name)
	default:
		d.Text = fmt.Sprintf("%s was dropped by %s %s on %s", what, where, rule, a.Name)
	}
	return d
}
