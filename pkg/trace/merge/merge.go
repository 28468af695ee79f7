// Package merge is the trace engine's entry point: a session's streams in,
// one trace out. It runs the engine's jobs in order — read the streams
// (match), join the agents' interfaces (graph), place every packet in its
// journey and estimate the clocks (match), lay out the expected path
// (graph), collect summarized flows (match), judge (verdict), and put
// everything in display order (match).
package merge

import (
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/match"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/verdict"
)

// Merge builds the trace of a session from what its agents said.
func Merge(s trace.Session, streams []trace.Stream) *trace.Trace {
	t, lines := match.Read(s, streams)
	g := graph.Build(t.Agents)
	match.Journeys(t, g, lines)
	t.Path, t.Shape = g.Hops(t)
	match.Summaries(t, g)
	verdict.Judge(t, g)
	match.Order(t)
	return t
}
