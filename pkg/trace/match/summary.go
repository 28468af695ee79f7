package match

import (
	"sort"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Summaries collects the agents' summary lines into t.Summarized and
// t.Flows, each flow's hops along the expected path, and says plainly in
// t.Warnings who summarized.
func Summaries(t *trace.Trace, g *graph.Graph) {
	s := t.Session
	type hopKey struct {
		flow  wire.Flow
		agent *trace.AgentInfo
		index int
		dir   string
		encap string
		vni   uint32
	}
	hops := map[hopKey]*trace.FlowHop{}
	var order []hopKey
	for _, a := range t.Agents {
		if len(a.Summaries) == 0 {
			continue
		}
		sm := &trace.Summarized{Agent: a}
		if a.Hello != nil {
			sm.Interval = a.Hello.SummaryInterval
		}
		for _, x := range a.Summaries {
			if sm.Summaries == 0 || x.Start.Before(sm.Since) {
				sm.Since = x.Start
			}
			if x.End.After(sm.Until) {
				sm.Until = x.End
			}
			sm.Above = x.Above
			sm.Summaries++
			sm.Packets += x.Packets
			sm.Bytes += x.Bytes
			sm.Drops += x.Drops
			if o := x.Other; o != nil {
				sm.OtherRecords += o.Records
				sm.OtherPackets += o.Packets
				sm.OtherBytes += o.Bytes
				sm.Untracked += o.Untracked
			}
			for i := range x.Records {
				r := &x.Records[i]
				k := hopKey{r.Flow, a, r.Index, r.Dir, r.Encap, r.VNI}
				h := hops[k]
				if h == nil {
					h = &trace.FlowHop{Agent: a, If: g.At(a, r.Index, r.Iface), Dir: r.Dir, Encap: r.Encap, VNI: r.VNI, First: r.First, Last: r.Last}
					hops[k] = h
					order = append(order, k)
					sm.Records++
				}
				h.Packets += r.Packets
				h.Bytes += r.Bytes
				if r.First.Before(h.First) {
					h.First = r.First
				}
				if r.Last.After(h.Last) {
					h.Last = r.Last
				}
				h.Flags = unionFlags(h.Flags, r.Flags)
			}
		}
		t.Summarized = append(t.Summarized, sm)
	}
	if len(t.Summarized) == 0 {
		return
	}
	byFlow := map[wire.Flow]*trace.Flow{}
	for _, k := range order {
		h := hops[k]
		f := byFlow[k.flow]
		if f == nil {
			f = &trace.Flow{Flow: k.flow, Toward: towardFlow(k.flow, s), First: h.First}
			byFlow[k.flow] = f
			t.Flows = append(t.Flows, f)
		}
		f.Hops = append(f.Hops, h)
		if h.Packets > f.Packets {
			f.Packets, f.Bytes = h.Packets, h.Bytes
		}
		if h.First.Before(f.First) {
			f.First = h.First
		}
	}
	tp := g.Expected(t)
	for _, f := range t.Flows {
		path := tp.Fwd
		if !f.Toward {
			path = tp.Back
		}
		rank := map[*trace.Iface]int{}
		for i, ifc := range path {
			if _, ok := rank[ifc]; !ok {
				rank[ifc] = i
			}
		}
		at := func(h *trace.FlowHop) int {
			if r, ok := rank[h.If]; ok {
				return r
			}
			return len(path)
		}
		sort.SliceStable(f.Hops, func(i, j int) bool {
			a, b := f.Hops[i], f.Hops[j]
			if at(a) != at(b) {
				return at(a) < at(b)
			}
			return a.First.Before(b.First)
		})
	}
	sort.SliceStable(t.Flows, func(i, j int) bool {
		if t.Flows[i].Packets != t.Flows[j].Packets {
			return t.Flows[i].Packets > t.Flows[j].Packets
		}
		return t.Flows[i].First.Before(t.Flows[j].First)
	})
	if t.Start.IsZero() {
		for _, sm := range t.Summarized {
			if t.Start.IsZero() || sm.Since.Before(t.Start) {
				t.Start = sm.Since
			}
		}
	}
	for _, sm := range t.Summarized {
		t.Warnings = append(t.Warnings, sm.Text(t.Start))
	}
	if s.Probe != nil {
		t.Warnings = append(t.Warnings, "agents summarized during an active trace: a probe's frames they counted are not shown hop by hop, and a hop there may read \"not seen\" although it was counted (run with --summarize-above 0)")
	}
}

func towardFlow(f wire.Flow, s trace.Session) bool {
	return f.Dst == s.Dst.IP || f.Src == s.Src.IP && f.Dst != s.Src.IP
}

var flagOrder = []string{"SYN", "FIN", "RST", "PSH", "ACK", "URG"}

// unionFlags merges two TCP flag lists ("SYN,ACK" and "FIN,ACK") in
// pkg/decode's order.
func unionFlags(a, b string) string {
	if a == b || b == "" {
		return a
	}
	if a == "" {
		return b
	}
	have := map[string]bool{}
	for _, x := range strings.Split(a+","+b, ",") {
		have[x] = true
	}
	var out []string
	for _, x := range flagOrder {
		if have[x] {
			out = append(out, x)
		}
	}
	return strings.Join(out, ",")
}
