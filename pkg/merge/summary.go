package merge

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Summarized is what one agent counted in summary lines instead of
// streaming each frame, once its capture went over its threshold.
type Summarized struct {
	Agent     *AgentInfo
	Since     time.Time     // when it switched (the first summarized frame)
	Until     time.Time     // end of its last summary
	Above     int           // the threshold crossed, frames per second
	Interval  time.Duration // between summaries
	Summaries int
	// Packets and Bytes count every summarized frame; Drops the frames
	// the kernel dropped meanwhile.
	Packets, Bytes uint64
	Drops          uint64
	// Records is the number of flow records (flow × interface ×
	// direction) the summaries listed; Other* what they summed beyond
	// their largest records; Untracked the frames that found the agent's
	// flow table full.
	Records                                           int
	OtherRecords, OtherPackets, OtherBytes, Untracked uint64
}

// FlowHop is one flow at one interface in one direction, summed over an
// agent's summaries.
type FlowHop struct {
	Agent          *AgentInfo
	If             *Iface
	Dir            string
	Encap          string
	VNI            uint32
	Packets, Bytes uint64
	First, Last    time.Time
	Flags          string // TCP flags seen
}

// Flow is one summarized flow and the hops that counted it: along the
// expected path when they are on it, else in the order they first saw it.
type Flow struct {
	wire.Flow
	Toward  bool // from src toward dst
	Hops    []*FlowHop
	Packets uint64 // the most frames any hop counted
	Bytes   uint64
	First   time.Time
}

// summarize collects the agents' summary lines into t.Summarized and
// t.Flows, and says plainly in t.Warnings who summarized.
func summarize(t *Trace, g *graph, s Session) {
	type hopKey struct {
		flow  wire.Flow
		agent *AgentInfo
		index int
		dir   string
		encap string
		vni   uint32
	}
	hops := map[hopKey]*FlowHop{}
	var order []hopKey
	for _, a := range t.Agents {
		if len(a.Summaries) == 0 {
			continue
		}
		sm := &Summarized{Agent: a}
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
					ik := IfKey{a.ID, r.Index}
					ifc := g.ifaces[ik]
					if ifc == nil { // a link that appeared after hello
						ifc = &Iface{Key: ik, Name: r.Iface, Agent: a, Role: "device"}
						g.add(ifc)
					}
					h = &FlowHop{Agent: a, If: ifc, Dir: r.Dir, Encap: r.Encap, VNI: r.VNI, First: r.First, Last: r.Last}
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
	byFlow := map[wire.Flow]*Flow{}
	for _, k := range order {
		h := hops[k]
		f := byFlow[k.flow]
		if f == nil {
			f = &Flow{Flow: k.flow, Toward: towardFlow(k.flow, s), First: h.First}
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
	tp := pathIfaces(g, t, s)
	for _, f := range t.Flows {
		path := tp.fwd
		if !f.Toward {
			path = tp.back
		}
		rank := map[*Iface]int{}
		for i, ifc := range path {
			if _, ok := rank[ifc]; !ok {
				rank[ifc] = i
			}
		}
		at := func(h *FlowHop) int {
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

// Text says what the agent summarized, relative to the trace start.
func (sm *Summarized) Text(start time.Time) string {
	since := sm.Since.Sub(start)
	sign := "+"
	if since < 0 {
		sign = ""
	}
	every := ""
	if sm.Interval > 0 {
		every = " every " + FormatDuration(sm.Interval)
	}
	msg := fmt.Sprintf("%s summarized from %s%s on (over %d frames/s): %d frames, %s, in %d flow records, %d summaries%s; those frames are counted per flow and hop, not shown one by one, not in --pcap",
		sm.Agent.Name, sign, FormatDuration(since), sm.Above, sm.Packets, FormatBytes(int64(sm.Bytes)), sm.Records, sm.Summaries, every)
	if sm.OtherPackets > 0 {
		msg += fmt.Sprintf("; %d frames (%s) of %d smaller flow records summed as \"other\"", sm.OtherPackets, FormatBytes(int64(sm.OtherBytes)), sm.OtherRecords)
		if sm.Untracked > 0 {
			msg += fmt.Sprintf(", %d of them found the flow table full", sm.Untracked)
		}
	}
	return msg + fmt.Sprintf("; kernel drops meanwhile: %d", sm.Drops)
}

// markSummarized marks the path hops where a summarized flow toward the
// destination was counted as seen, and, as markPath does, a hop not
// counted before one that was as not observable (bypassed, or a bridge
// that is not promiscuous).
func markSummarized(t *Trace, path []*Iface) {
	if len(t.Flows) == 0 {
		return
	}
	counted := map[*Iface]bool{}
	for _, f := range t.Flows {
		if f.Toward {
			for _, h := range f.Hops {
				counted[h.If] = true
			}
		}
	}
	last := -1
	for i := range t.Path {
		if i < len(path) && (counted[path[i]] || t.Path[i].Status == "seen") {
			last = i
		}
	}
	for i := range t.Path {
		if i >= len(path) {
			break
		}
		switch {
		case counted[path[i]]:
			t.Path[i].Status = "seen"
		case t.Path[i].Status == "not seen" && (!observable(path[i], nil) || i < last):
			t.Path[i].Status = "not observable"
		}
	}
}

func towardFlow(f wire.Flow, s Session) bool {
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
