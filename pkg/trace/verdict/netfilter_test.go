package verdict

import (
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// What the verdict says of a node's trace events, by hand: which verdict
// ended the probe's packet, and what it says when none can be named.
func TestNetfilterDropTruthTable(t *testing.T) {
	armed := &wire.Hello{Role: wire.RoleNode, NFTrace: &wire.NFTraceStatus{Armed: true, Table: "podtrace_trace_1"}}
	jump := &wire.NFTrace{Probe: "tcp/1", ID: 7, Family: "ip", Table: "filter", Chain: "FORWARD", Type: "rule", Verdict: "jump", Target: "PT", IPTables: true, Rule: "counter jump PT"}
	drop := &wire.NFTrace{Probe: "tcp/1", ID: 7, Family: "ip", Table: "filter", Chain: "PT", Handle: 4, Type: "rule", Verdict: "drop", IPTables: true, Rule: "tcp dport 8080 counter drop"}
	for _, c := range []struct {
		name    string
		hello   *wire.Hello
		events  []*wire.NFTrace
		reply   bool
		want    string // Drop.Text, "" for no Drop
		verdict string
	}{
		{"iptables-nft rule after a jump", armed, []*wire.NFTrace{jump, drop}, false,
			`the probe was dropped by iptables-nft table filter chain PT rule "tcp dport 8080 counter drop" on node-1`, "drop"},
		{"nftables rule", armed, []*wire.NFTrace{{Probe: "tcp/1", ID: 3, Family: "inet", Table: "t", Chain: "c", Handle: 2, Type: "rule", Verdict: "drop", Rule: "tcp dport 8080 drop"}}, false,
			`the probe was dropped by nftables inet t c rule "tcp dport 8080 drop" on node-1`, "drop"},
		{"a rule that rejects", armed, []*wire.NFTrace{{Probe: "tcp/1", ID: 3, Family: "inet", Table: "t", Chain: "c", Handle: 2, Type: "rule", Verdict: "drop", Rule: "tcp dport 8080 reject with tcp reset"}}, false,
			`the probe was rejected by nftables inet t c rule "tcp dport 8080 reject with tcp reset" on node-1`, "reject"},
		{"a base chain's policy", armed, []*wire.NFTrace{{Probe: "tcp/1", ID: 3, Family: "ip", Table: "filter", Chain: "FORWARD", Type: "policy", Verdict: "drop", IPTables: true}}, false,
			`the probe was dropped by iptables-nft table filter chain FORWARD policy drop on node-1`, "drop"},
		{"queued and never returned", armed, []*wire.NFTrace{{Probe: "tcp/1", ID: 9, Family: "inet", Table: "knp", Chain: "fwd", Handle: 5, Type: "rule", Verdict: "queue", Queue: 100, Rule: "queue num 100"}}, false,
			`the probe was queued to userspace NFQUEUE 100 by nftables inet knp fwd rule "queue num 100" on node-1 and never given back: the program reading that queue dropped it, or none reads it`, "queue"},
		{"queued and returned: not what dropped it", armed, []*wire.NFTrace{
			{Probe: "tcp/1", ID: 9, Family: "inet", Table: "knp", Chain: "fwd", Handle: 5, Type: "rule", Verdict: "queue", Queue: 100},
			{Probe: "tcp/1", ID: 9, Family: "ip", Table: "filter", Chain: "FORWARD", Type: "policy", Verdict: "accept"}}, false, "", ""},
		{"accepted everywhere", armed, []*wire.NFTrace{jump, {Probe: "tcp/1", ID: 7, Family: "ip", Table: "filter", Chain: "PT", Type: "return", Verdict: "continue"}}, false, "", ""},
		{"another probe's drop", armed, []*wire.NFTrace{{Probe: "tcp/2", ID: 3, Family: "inet", Table: "t", Chain: "c", Type: "rule", Verdict: "drop"}}, false, "", ""},
		{"the answer's drop, asked for the answer", armed, []*wire.NFTrace{{Probe: "tcp/1", Reply: true, ID: 3, Family: "inet", Table: "t", Chain: "c", Handle: 9, Type: "rule", Verdict: "drop", Rule: "tcp sport 8080 drop"}}, true,
			`the answer was dropped by nftables inet t c rule "tcp sport 8080 drop" on node-1`, "drop"},
		{"the answer's drop, asked for the probe", armed, []*wire.NFTrace{{Probe: "tcp/1", Reply: true, ID: 3, Family: "inet", Table: "t", Chain: "c", Type: "rule", Verdict: "drop"}}, false, "", ""},
		{"tracing off", &wire.Hello{Role: wire.RoleNode}, nil, false,
			"no netfilter rule could be named: node-1 did not trace netfilter (--nftrace=false, or an agent without it)", ""},
		{"tracing unavailable", &wire.Hello{Role: wire.RoleNode, NFTrace: &wire.NFTraceStatus{Unavailable: "the agent has no NET_ADMIN capability"}}, nil, false,
			"no netfilter rule could be named: node-1 could not trace netfilter: the agent has no NET_ADMIN capability", ""},
		{"legacy tables beside", &wire.Hello{Role: wire.RoleNode, NFTrace: &wire.NFTraceStatus{Armed: true, Legacy: []string{"iptables-legacy filter"}}}, nil, false,
			"no netfilter rule could be named: node-1 has iptables-legacy filter tables, whose rules are not in nf_tables and cannot be traced", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			node := &trace.AgentInfo{ID: "node-1", Name: "node-1", Role: wire.RoleNode, Hello: c.hello, NFTrace: c.events}
			pod := &trace.AgentInfo{ID: "pod-a", Name: "pod-a", Role: wire.RolePod, Hello: &wire.Hello{Role: wire.RolePod}}
			tr := &trace.Trace{Agents: []*trace.AgentInfo{pod, node}}
			d := netfilterDrop(tr, "tcp/1", c.reply, pod, node)
			switch {
			case c.want == "" && d != nil:
				t.Errorf("drop %+v; want none", d)
			case c.want != "" && d == nil:
				t.Errorf("no drop; want %q", c.want)
			case d != nil && (d.Text != c.want || d.Verdict != c.verdict):
				t.Errorf("drop %q (verdict %q); want %q (%q)", d.Text, d.Verdict, c.want, c.verdict)
			}
		})
	}
}
