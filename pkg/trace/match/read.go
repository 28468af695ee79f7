package match

import (
	"fmt"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Lines is what the agents' streams hold for the journeys: every packet
// line with the agent that saw it, and the changes they reported.
type Lines struct {
	packets []seenBy
	changes []*trace.Change
}

type seenBy struct {
	a *trace.AgentInfo
	p *wire.Packet
}

// Read takes in a session's streams: the trace's agents (hello, topology
// snapshots, stats, summaries, errors, bye), the probes' events, warnings
// of what was lost or cut on the way, and the packet and change lines
// for Journeys.
func Read(s trace.Session, streams []trace.Stream) (*trace.Trace, *Lines) {
	t := &trace.Trace{Session: s}
	in := &Lines{}
	for _, st := range streams {
		a := &trace.AgentInfo{ID: st.Agent, Name: st.Display, Gaps: st.Gaps, Intake: st.Intake}
		t.Agents = append(t.Agents, a)
		for _, e := range st.Lines {
			if e == nil || !wire.HasPayload(e) {
				continue
			}
			switch e.Kind {
			case wire.KindHello:
				a.Hello, a.Role, a.Node, a.NetNSID = e.Hello, e.Hello.Role, e.Hello.Node, e.Hello.NetNSID
				if a.Name == "" {
					a.Name = e.Hello.Name
				}
			case wire.KindTopology:
				if e.Topology.When == "after" {
					a.After = e.Topology
				} else if a.Before == nil {
					a.Before = e.Topology
				}
			case wire.KindPacket:
				in.packets = append(in.packets, seenBy{a, e.Packet})
			case wire.KindChange:
				in.changes = append(in.changes, &trace.Change{Agent: a, C: e.Change})
			case wire.KindProbe:
				t.Probes = append(t.Probes, e.Probe)
			case wire.KindStats:
				a.Stats = append(a.Stats, *e.Stats)
			case wire.KindSummary:
				a.Summaries = append(a.Summaries, e.Summary)
			case wire.KindError:
				a.Errors = append(a.Errors, e.Error.Msg)
			case wire.KindBye:
				a.Bye = e.Bye.Reason
			}
		}
		if a.Gaps > 0 {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: %d observations lost in transit (sequence gaps)", a.Name, a.Gaps))
		}
		for _, stt := range a.Stats {
			if stt.Drops > 0 {
				t.Warnings = append(t.Warnings, fmt.Sprintf("%s: the kernel dropped %d of %d captured frames (ring full)", a.Name, stt.Drops, stt.Packets+stt.Drops))
			}
		}
		for _, m := range a.Errors {
			t.Warnings = append(t.Warnings, a.Name+": "+m)
		}
		t.Warnings = append(t.Warnings, cutWarnings(a)...)
	}
	t.Changes = in.changes
	return t, in
}

// cutWarnings says what was cut from an agent's stream, by the agent's
// budget or by the plugin.
func cutWarnings(a *trace.AgentInfo) []string {
	var out []string
	if budget, lines, bytes := a.BudgetCut(); lines > 0 {
		out = append(out, fmt.Sprintf("%s: its byte budget (%s/s, --budget) cut %d packet and change lines (%s): hops and changes there may be missing",
			a.Name, trace.FormatBytes(budget), lines, trace.FormatBytes(int64(bytes))))
	}
	in := a.Intake
	if in.CutLines > 0 {
		out = append(out, fmt.Sprintf("%s: the plugin kept what it could hold and set aside %d more lines (%s): hops and changes there may be missing",
			a.Name, in.CutLines, trace.FormatBytes(int64(in.CutBytes))))
	}
	if in.Invalid > 0 {
		out = append(out, fmt.Sprintf("%s: %d invalid lines skipped (the first: %s)", a.Name, in.Invalid, in.InvalidReason))
	}
	if in.Clamped > 0 {
		out = append(out, fmt.Sprintf("%s: %d lines had fields longer than the plugin accepts: shortened", a.Name, in.Clamped))
	}
	return out
}
