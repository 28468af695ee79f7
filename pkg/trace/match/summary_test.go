package match_test

import (
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// summarizedBridge: pod-a and pod-b on a bridge, each agent summarizing
// from the start (no packet line at all): the UDP flow pod-a → pod-b at
// four hops, its ICMP errors back, over two intervals.
func summarizedBridge(probe *wire.ProbeSpec) (trace.Session, []trace.Stream) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := trace.Session{
		Src:   trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: "10.244.0.2", Node: "node1", Agent: "pod-a"},
		Dst:   trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: "10.244.0.3", Node: "node1", Agent: "pod-b"},
		Probe: probe,
	}
	hello := func(role string, links ...wire.Link) *wire.Envelope {
		for i := range links {
			links[i].Captured, links[i].State = true, "up"
		}
		return &wire.Envelope{Kind: wire.KindHello, Hello: &wire.Hello{Role: role, Node: "node1", Links: links, SummarizeAbove: 500, SummaryInterval: time.Second}}
	}
	udp := wire.Flow{EtherType: "ipv4", Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "udp", SrcPort: 40000, DstPort: 9000}
	icmp := wire.Flow{EtherType: "ipv4", Src: "10.244.0.3", Dst: "10.244.0.2", Proto: "icmp", ICMP: "dest-unreachable code 3"}
	rec := func(f wire.Flow, idx int, name, dir string, n uint64, at time.Duration, flags string) wire.FlowSummary {
		return wire.FlowSummary{Flow: f, Index: idx, Iface: name, Dir: dir, Packets: n, Bytes: 100 * n, First: t0.Add(at), Last: t0.Add(at + 900*time.Millisecond), Flags: flags}
	}
	sum := func(at time.Duration, drops uint64, rs ...wire.FlowSummary) *wire.Envelope {
		x := &wire.Summary{Start: t0.Add(at), End: t0.Add(at + time.Second), First: at == 0, Above: 500, Drops: drops, Records: rs}
		for _, r := range rs {
			x.Packets += r.Packets
			x.Bytes += r.Bytes
		}
		return &wire.Envelope{Kind: wire.KindSummary, Summary: x}
	}
	ms := time.Millisecond
	podA := trace.Stream{Agent: "pod-a", Display: "pod-a", Lines: []*wire.Envelope{
		hello(wire.RolePod, wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 10, Addrs: []string{"10.244.0.2/24"}}),
		sum(0, 0, rec(udp, 2, "eth0", "out", 1000, 1*ms, "SYN"), rec(icmp, 2, "eth0", "in", 3, 5*ms, "")),
		sum(time.Second, 0, rec(udp, 2, "eth0", "out", 1000, time.Second, "FIN,ACK")),
	}}
	node := trace.Stream{Agent: "node1", Display: "node1", Lines: []*wire.Envelope{
		hello(wire.RoleNode,
			wire.Link{Index: 5, Name: "cni0", Kind: "bridge"},
			wire.Link{Index: 10, Name: "veth-a", Kind: "veth", IfLink: 2, Master: 5},
			wire.Link{Index: 11, Name: "veth-b", Kind: "veth", IfLink: 2, Master: 5}),
		sum(0, 4, rec(udp, 11, "veth-b", "out", 990, 2*ms, ""), rec(udp, 10, "veth-a", "in", 995, 2*ms, ""),
			rec(icmp, 10, "veth-a", "out", 3, 4*ms, ""), rec(icmp, 11, "veth-b", "in", 3, 4*ms, "")),
	}}
	podB := trace.Stream{Agent: "pod-b", Display: "pod-b", Lines: []*wire.Envelope{
		hello(wire.RolePod, wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 11, Addrs: []string{"10.244.0.3/24"}}),
		sum(0, 0, rec(udp, 2, "eth0", "in", 990, 3*ms, "")),
	}}
	return s, []trace.Stream{podA, node, podB}
}

func TestSummariesAreShownPerFlowAndHopAndNamedInTheVerdict(t *testing.T) {
	tr := merge.Merge(summarizedBridge(nil))
	if len(tr.Summarized) != 3 {
		t.Fatalf("%d agents summarized; want 3", len(tr.Summarized))
	}
	a := tr.Summarized[0]
	if a.Agent.Name != "pod-a" || a.Summaries != 2 || a.Packets != 2003 || a.Bytes != 200300 || a.Records != 2 || !a.Since.Equal(tr.Start) || a.Interval != time.Second {
		t.Errorf("pod-a summarized %+v", *a)
	}
	if n := tr.Summarized[1]; n.Drops != 4 || n.Records != 4 {
		t.Errorf("node1 summarized %+v; want its 4 drops and 4 records", *n)
	}
	if len(tr.Flows) != 2 {
		t.Fatalf("%d flows; want the UDP flow and the ICMP errors", len(tr.Flows))
	}
	hops := func(f *trace.Flow) (out []string) {
		for _, h := range f.Hops {
			out = append(out, h.Agent.Name+" "+h.If.Name+" "+h.Dir)
		}
		return out
	}
	udp, icmp := tr.Flows[0], tr.Flows[1]
	if !udp.Toward || udp.Packets != 2000 || udp.DstPort != 9000 {
		t.Errorf("busiest flow %+v; want the UDP flow toward pod-b, 2000 frames", *udp)
	}
	if diff := cmp.Diff([]string{"pod-a eth0 out", "node1 veth-a in", "node1 veth-b out", "pod-b eth0 in"}, hops(udp)); diff != "" {
		t.Errorf("UDP flow hops, along the path (-want +got):\n%s", diff)
	}
	if udp.Hops[0].Flags != "SYN,FIN,ACK" || udp.Hops[0].Packets != 2000 {
		t.Errorf("pod-a's hop summed over both summaries: %d frames, flags %q; want 2000 and SYN,FIN,ACK", udp.Hops[0].Packets, udp.Hops[0].Flags)
	}
	if diff := cmp.Diff([]string{"node1 veth-b in", "node1 veth-a out", "pod-a eth0 in"}, hops(icmp)); icmp.Toward || diff != "" {
		t.Errorf("ICMP errors (toward %v), along the way back (-want +got):\n%s", icmp.Toward, diff)
	}
	// Every hop counted the flow but the bridge, which is not promiscuous
	// here: it cannot see forwarded unicast.
	var path []string
	for _, h := range tr.Path {
		path = append(path, h.Place+" "+h.Label+": "+h.Status)
	}
	want := []string{"pod-a eth0: seen", "node1 veth-a (pod-a): seen", "node1 cni0: not observable", "node1 veth-b (pod-b): seen", "pod-b eth0: seen"}
	if diff := cmp.Diff(want, path); diff != "" {
		t.Errorf("path (-want +got):\n%s", diff)
	}
	// pod-a 2003, node1 1991, pod-b 990.
	if tr.Verdict.Result != "observed" || !strings.Contains(tr.Verdict.Reason, "4984 frames counted in 2 summarized flows (pod-a, node1, pod-b summarized)") {
		t.Errorf("verdict %+v", tr.Verdict)
	}
	said := 0
	for _, w := range tr.Warnings {
		if strings.Contains(w, " summarized from +") && strings.Contains(w, "not in --pcap") && strings.Contains(w, "kernel drops meanwhile") {
			said++
		}
	}
	if said != 3 {
		t.Errorf("warnings %q: want one per summarizing agent", tr.Warnings)
	}
}

// Summaries in an active trace (an agent run by hand with its default
// threshold): the trace warns that a hop may read "not seen" although the
// probe was counted there.
func TestSummariesInAnActiveTraceAreWarnedAbout(t *testing.T) {
	tr := merge.Merge(summarizedBridge(&wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, ID: 4711}))
	for _, w := range tr.Warnings {
		if strings.Contains(w, "during an active trace") {
			return
		}
	}
	t.Errorf("warnings %q: want one about summaries in an active trace", tr.Warnings)
}
