package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// A watch runs one session whose probing agent sends its probes one a
// round (the probe spec's count and interval: probe N of the spec is round
// N, with its own ICMP sequence number or source port), reads every
// agent's stream live, and merges each round on its own as soon as it is
// complete: the round's lines of every agent, beside each agent's hello
// and topology snapshot. A round is complete when the prober's outcome of
// its probe (reply, timeout, …) arrived and RoundGrace passed for the
// other agents' frames to arrive (through the API server in a cluster).
// Once merged and handed to the Watcher, a round's lines are dropped: a
// watch keeps one or two rounds of lines whatever its length.

// Watcher receives a watch's progress.
type Watcher interface {
	// Armed is called once every agent said hello: head is the session
	// merged from the agents' hellos and snapshots, without a round.
	Armed(head *trace.Trace, armed time.Duration)
	// Round is called with each round, merged, in order.
	Round(n int, t *trace.Trace)
}

// WatchResult is a finished watch.
type WatchResult struct {
	// Trace is the session merged from what the agents said besides
	// their rounds (hellos, snapshots, stats, errors, byes): agents,
	// intake and warnings for the summary.
	Trace *trace.Trace
	Armed time.Duration
	// Rounds is how many rounds were merged; Late counts lines that
	// arrived for a round already merged (left out), Cut the lines over
	// a round's bound.
	Rounds    int
	Late, Cut uint64
	// Interrupted: ctx ended the watch (Ctrl-C) before its last round;
	// Ended: it reached Plan.Duration.
	Interrupted, Ended bool
}

// Bounds of a watch's memory: the lines one agent may add to one round
// (a round of a probe holds a few dozen), and rounds open at once (one or
// two unless an agent misbehaves): about 1.5 KB a decoded line, at most
// about 6 MB an agent, below what a single trace keeps (MaxPacketLines).
const (
	maxRoundLines = 1000
	maxOpenRounds = 4
)

// DefaultRoundGrace is how long a round stays open after its probe's
// outcome reached the plugin.
const DefaultRoundGrace = 300 * time.Millisecond

type watchLine struct {
	agent int
	e     *wire.Envelope
	at    time.Time
}

type round struct {
	n         int
	lines     [][]*wire.Envelope // per agent
	outcomeAt time.Time          // when the prober's outcome arrived
	sentAt    time.Time
	last      bool // the spec's last probe
}

// Watch runs a watch of plan p (which must have a probing agent whose
// spec's count bounds the rounds); it ends after the last round, at
// p.Duration after the agents armed (when positive), or when ctx ends
// (Ctrl-C), and always stops the agents.
func Watch(ctx context.Context, l launch.Launcher, p Plan, o Options, w Watcher) (*WatchResult, error) {
	o = o.defaults()
	if o.RoundGrace <= 0 {
		o.RoundGrace = DefaultRoundGrace
	}
	progress := o.progress
	start := time.Now()
	var spec *wire.ProbeSpec
	for _, a := range p.Agents {
		if a.Probe != nil {
			spec = a.Probe
		}
	}
	if spec == nil {
		return nil, errors.New("plan has no probing agent")
	}
	in := make(chan watchLine, 1024)
	// quit ends the feeding: once the rounds are over, the readers drop
	// what still comes (and so read on to each agent's bye).
	quit := make(chan struct{})
	var quitOnce sync.Once
	stopFeeding := func() { quitOnce.Do(func() { close(quit) }) }
	defer stopFeeding()
	sink := func(i int, e *wire.Envelope) bool {
		switch e.Kind {
		case wire.KindPacket, wire.KindChange, wire.KindProbe, wire.KindNAT, wire.KindSummary:
		default:
			return false
		}
		select {
		case in <- watchLine{agent: i, e: e, at: time.Now()}:
		case <-quit:
		}
		return true
	}
	rs, err := startAgents(ctx, l, p, o, func() {}, sink)
	defer stopAll(rs, progress, nil)
	if err != nil {
		return nil, err
	}
	if err := waitArmed(ctx, rs, o); err != nil {
		return nil, err
	}
	res := &WatchResult{Armed: time.Since(start)}
	progress("podtrace: all agents armed in %.2f s", res.Armed.Seconds())
	base := func() []trace.Stream {
		var st []trace.Stream
		for _, r := range rs {
			r.mu.Lock()
			var lines []*wire.Envelope
			for _, e := range r.lines {
				if e.Kind == wire.KindHello || e.Kind == wire.KindTopology && e.Topology.When != "after" {
					lines = append(lines, e)
				}
			}
			r.mu.Unlock()
			st = append(st, trace.Stream{Agent: r.spec.ID, Display: r.spec.ID, Lines: lines})
		}
		return st
	}
	head := merge.Merge(p.Session, base())
	if head.Start.IsZero() {
		head.Start = time.Now() // no frame yet: the watch starts now
	}
	w.Armed(head, res.Armed)

	var prober *running
	for _, r := range rs {
		if r.spec.Probe != nil {
			prober = r
		}
	}
	if err := prober.agent.Send(prober.cmd(wire.CmdProbe)); err != nil {
		return nil, fmt.Errorf("start probe on %s: %w: %s", prober.spec.ID, err, prober.diag())
	}
	progress("podtrace: watching %s, up to %d rounds %s apart", spec.Proto, spec.Count, spec.Interval)

	var end <-chan time.Time
	if p.Duration > 0 {
		t := time.NewTimer(p.Duration)
		defer t.Stop()
		end = t.C
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	open := map[int]*round{}
	merged, current := 0, 1 // rounds up to merged are done; current: the last one sent
	get := func(n int) *round {
		r := open[n]
		if r == nil {
			r = &round{n: n, lines: make([][]*wire.Envelope, len(rs))}
			open[n] = r
		}
		return r
	}
	// mergeReady merges the rounds that are complete, in order; it
	// reports whether the last round of the spec was merged.
	mergeReady := func(now time.Time) bool {
		for {
			r := open[merged+1]
			if r == nil {
				return false
			}
			stuck := !r.sentAt.IsZero() && now.Sub(r.sentAt) > spec.Timeout+spec.Interval+10*time.Second
			if next := open[merged+2]; r.sentAt.IsZero() && r.outcomeAt.IsZero() && next != nil && !next.sentAt.IsZero() {
				stuck = true // never sent: the prober went on
			}
			if !stuck && (r.outcomeAt.IsZero() || now.Sub(r.outcomeAt) < o.RoundGrace) {
				return false
			}
			st := base()
			for i := range st {
				st[i].Lines = append(st[i].Lines, r.lines[i]...)
			}
			w.Round(r.n, merge.Merge(p.Session, st))
			delete(open, r.n)
			merged = r.n
			res.Rounds++
			if r.last {
				return true
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			res.Interrupted = true
			return finishWatch(rs, p, res, stopFeeding, progress), nil
		case <-end:
			res.Ended = true
			return finishWatch(rs, p, res, stopFeeding, progress), nil
		case <-prober.bye:
			// Lines already queued come first.
			for len(in) > 0 {
				wl := <-in
				res.place(wl, spec, get, &merged, &current, open)
			}
			if mergeReady(time.Now().Add(time.Hour)) {
				return finishWatch(rs, p, res, stopFeeding, progress), nil
			}
			return nil, prober.failure("ended its stream during the watch")
		case wl := <-in:
			res.place(wl, spec, get, &merged, &current, open)
			if mergeReady(time.Now()) {
				return finishWatch(rs, p, res, stopFeeding, progress), nil
			}
		case now := <-tick.C:
			if mergeReady(now) {
				return finishWatch(rs, p, res, stopFeeding, progress), nil
			}
		}
	}
}

// place files one line under its round: a probe event and a NAT entry by
// the probe's sequence number, a packet by the probe identity it carries
// (ICMP sequence, source or destination port), anything else (address
// resolution, neighbour and FDB changes) under the last round sent.
func (res *WatchResult) place(wl watchLine, spec *wire.ProbeSpec, get func(int) *round, merged, current *int, open map[int]*round) {
	n := 0
	e := wl.e
	switch e.Kind {
	case wire.KindProbe:
		n = e.Probe.Seq
	case wire.KindNAT:
		if _, s, ok := strings.Cut(e.NAT.Probe, "/"); ok {
			n, _ = strconv.Atoi(s)
		}
	case wire.KindPacket:
		n = probeSeq(spec, e.Packet)
	}
	// A number out of the spec, or beyond the next round (a frame may
	// come before the prober said it sent it), goes to the last round
	// sent, as an unnumbered line does.
	if n < 1 || n > spec.Count || n > *current+1 {
		n = *current
	}
	if n <= *merged {
		res.Late++
		return
	}
	if open[n] == nil && len(open) >= maxOpenRounds {
		res.Cut++
		return
	}
	r := get(n)
	if e.Kind == wire.KindProbe {
		if e.Probe.Event == "sent" {
			r.sentAt = wl.at
			*current = max(*current, n)
		} else {
			r.outcomeAt = wl.at
			r.last = e.Probe.Done || n == spec.Count
		}
	}
	if len(r.lines[wl.agent]) >= maxRoundLines {
		res.Cut++
		return
	}
	r.lines[wl.agent] = append(r.lines[wl.agent], e)
}

// probeSeq is the probe sequence number a frame carries (of the probe or
// of its answer, inside a tunnel too: the decoded inner packet), 0 when
// it carries none of this spec.
func probeSeq(spec *wire.ProbeSpec, p *wire.Packet) int {
	if p == nil || p.L4 == nil {
		return 0
	}
	l4 := p.L4
	switch spec.Proto {
	case "icmp":
		if (l4.Proto == "icmp" || l4.Proto == "icmp6") && (l4.Type == "echo-request" || l4.Type == "echo-reply") && l4.ICMPID == spec.ID&0xffff {
			return l4.ICMPSeq
		}
	case "tcp", "udp":
		if l4.Proto != spec.Proto {
			return 0
		}
		// The probe leaves from its port; its answer comes back to it.
		for _, port := range []int{l4.SrcPort, l4.DstPort} {
			if n := port - spec.ID + 1; n >= 1 && n <= spec.Count && port != spec.Port {
				return n
			}
		}
	}
	return 0
}

// finishWatch stops the agents and merges what they said besides their
// rounds: the summary's agents, stats and warnings.
func finishWatch(rs []*running, p Plan, res *WatchResult, stopFeeding func(), progress func(string, ...any)) *WatchResult {
	stopFeeding()
	streams := stopAndCollect(rs, progress)
	progress("%s", ReceivedLine(streams))
	s := p.Session
	res.Trace = merge.Merge(s, streams)
	return res
}
