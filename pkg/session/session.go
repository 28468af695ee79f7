// Package session runs one trace: it starts every agent of a plan through a
// launcher, waits until all of them are armed (said hello), starts the
// probe (or observes for a while), stops the agents, and merges their
// streams. It is the same for the lab, local namespaces and clusters.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Plan is what to run.
type Plan struct {
	Session trace.Session
	Agents  []launch.Spec
	// Passive observes for Duration instead of probing.
	Passive  bool
	Duration time.Duration
	// Run is the run's token, given to every agent with its start line
	// and carried by every line of the run (wire.Envelope.Run): an agent
	// that serves runs in sequence (a warm rerun) may be read by several
	// plugins at once. A random one when empty.
	Run string
}

// NotArmedError is a run that failed before every agent was armed: before
// any probe was sent. A warm rerun that fails so can fall back to a cold
// trace.
type NotArmedError struct{ Err error }

func (e *NotArmedError) Error() string { return e.Err.Error() }
func (e *NotArmedError) Unwrap() error { return e.Err }

// ErrBusy is a warm agent refusing the run: it serves another (wire.Busy).
var ErrBusy = errors.New("a warm agent is serving another run")

// newRunToken returns a random run token.
func newRunToken() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Options tune a run.
type Options struct {
	ArmTimeout time.Duration // how long agents may take to say hello (default 60s)
	Grace      time.Duration // how long to keep listening after the probe's outcome (default DefaultGrace)
	Progress   io.Writer     // lifecycle lines for humans; may be nil
	// RoundGrace is how long a watch's round stays open after its
	// probe's outcome arrived (default DefaultRoundGrace).
	RoundGrace time.Duration
	// Timeline, when set, records the run's steps (--timing).
	Timeline *launch.Timeline
	// Show, when set, is given the result before the agents are stopped
	// and their pods deleted: the verdict is on screen while the teardown
	// runs. Its error is Run's.
	Show func(*Result) error
	// Lingered, when set, is told once the agents were stopped, also
	// after an error or Ctrl-C, what became of those that linger
	// (launch.Spec.Linger), in the plan's order.
	Lingered func([]Lingering)
}

// Lingering is what became of a lingering agent when its run was
// stopped.
type Lingering struct {
	ID string
	// Waiting: the agent said bye to the run, stopped, and its stream
	// stayed open: it waits for the next run, up to its linger time
	// from then. False when the run never reached it (nothing was sent
	// to it: it is as it was), when it did not say bye in time (it may
	// still be running the run, until the run's deadline), or when it
	// ended instead.
	Waiting bool
	// Cap is the end of the agent's life, whatever its runs (its hello's
	// lingerCap); zero when it said no hello in this run.
	Cap time.Time
}

// Result is a finished run.
type Result struct {
	Trace   *trace.Trace
	Streams []trace.Stream // what every agent said, for a recording
	Armed   time.Duration  // start to the last hello
	Total   time.Duration
}

func (o Options) defaults() Options {
	if o.ArmTimeout <= 0 {
		o.ArmTimeout = 60 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	return o
}

func (o Options) progress(format string, a ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", a...)
	}
}

type running struct {
	spec  launch.Spec
	agent launch.Agent
	run   string // the run's token (Plan.Run)
	busy  bool   // the agent refused the run: it serves another
	mu    sync.Mutex
	lines []*wire.Envelope
	gaps  uint64
	kept  keeper
	hello chan struct{}
	// bye is closed when the stream ends, or at the bye line of the run
	// (an agent that serves runs in sequence keeps its output open).
	bye     chan struct{}
	byeOnce sync.Once
	// saidBye is closed at the agent's bye line: its last (the stream
	// itself ends when the process has exited and the attach closed).
	saidBye chan struct{}
	// sink, when set (a watch), sees each line first and takes those it
	// returns true for: they are not kept here.
	sink     func(*wire.Envelope) bool
	timeline *launch.Timeline
	done     bool      // saw the probe's last outcome
	err      error     // stream error
	fatal    string    // a fatal error the agent reported
	byeWhy   string    // the reason of the run's bye line
	eof      bool      // the stream ended
	lingerTo time.Time // its hello's lingerCap
}

// Interrupted is a run's error when the user interrupted it (its context
// was cancelled): it says when, and wraps the context's error.
type Interrupted struct {
	When string
	Err  error
}

func (e Interrupted) Error() string { return "interrupted " + e.When }
func (e Interrupted) Unwrap() error { return e.Err }

// Run runs the plan. Agents are always stopped before it returns, also
// when ctx is cancelled (Ctrl-C): teardown uses its own context.
func Run(ctx context.Context, l launch.Launcher, p Plan, o Options) (*Result, error) {
	o = o.defaults()
	progress := o.progress
	start := time.Now()
	probeDone := make(chan struct{})
	var probeOnce sync.Once
	rs, err := startAgents(ctx, l, p, o, func() { probeOnce.Do(func() { close(probeDone) }) }, nil)
	defer func() {
		stopAll(rs, progress, o.Lingered)
		o.Timeline.Mark("", "agents stopped, their pods deleted")
	}()
	if err != nil {
		return nil, &NotArmedError{err}
	}
	if err := waitArmed(ctx, rs, o); err != nil {
		return nil, &NotArmedError{err}
	}
	armed := time.Since(start)
	o.Timeline.Mark("", "all agents armed")
	progress("podtrace: all agents armed in %.2f s", armed.Seconds())

	// Probe, or observe.
	if p.Passive {
		progress("podtrace: observing for %s", p.Duration)
		select {
		case <-time.After(p.Duration):
		case <-ctx.Done():
		}
	} else {
		var prober *running
		for _, r := range rs {
			if r.spec.Probe != nil {
				prober = r
			}
		}
		if prober == nil {
			return nil, errors.New("plan has no probing agent")
		}
		if err := prober.agent.Send(prober.cmd(wire.CmdProbe)); err != nil {
			return nil, fmt.Errorf("start probe on %s: %w: %s", prober.spec.ID, err, prober.diag())
		}
		spec := prober.spec.Probe
		limit := time.Duration(spec.Count)*(spec.Interval+spec.Timeout) + 5*time.Second
		o.Timeline.Mark(prober.spec.ID, "probe sent")
		progress("podtrace: probing %s ×%d", spec.Proto, spec.Count)
		select {
		case <-probeDone:
			o.Timeline.Mark(prober.spec.ID, "probe outcome")
		case <-prober.bye:
			if !closed(probeDone) {
				return nil, prober.failure("exited during the probe")
			}
		case <-time.After(limit):
			progress("podtrace: the probe did not finish within %s", limit)
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return nil, Interrupted{"during the probe", ctx.Err()}
	}
	// When the source has the answer, every hop has already seen the
	// packet; a short grace (DefaultGrace) covers frames still on the wire
	// elsewhere (the TCP probe's closing RST, a flooded copy). Then stop:
	// each agent drains its ring and writes every frame before its bye.
	time.Sleep(o.Grace)
	streams := stopAndCollect(rs, progress)
	o.Timeline.Mark("", "every stream ended")
	progress("%s", ReceivedLine(streams))
	t := merge.Merge(p.Session, streams)
	res := &Result{Trace: t, Streams: streams, Armed: armed, Total: time.Since(start)}
	if o.Show != nil {
		if err := o.Show(res); err != nil {
			return res, err
		}
		o.Timeline.Mark("", "verdict shown")
	}
	return res, nil
}

// DefaultGrace is how long a trace keeps listening after its probe's
// outcome before it stops the agents. The frames that follow the
// outcome (the TCP probe's RST, sent before the outcome is reported)
// cross a node, or two, in well under a millisecond, and each agent
// reports every frame its kernel stamped before the stop reached it: the
// outcome's way to the plugin and the stop's way back to the agents add
// their own time to the grace.
const DefaultGrace = 20 * time.Millisecond

// stopAndCollect tells every agent to stop, waits (bounded) for each bye
// line or the end of its stream (each agent drains its ring and writes
// every frame before its bye), and returns what each agent said.
func stopAndCollect(rs []*running, progress func(string, ...any)) []trace.Stream {
	for _, r := range rs {
		_ = r.agent.Send(r.cmd(wire.CmdStop))
	}
	byeWait := time.After(10 * time.Second)
	for _, r := range rs {
		select {
		case <-r.bye:
		case <-r.saidBye:
		case <-byeWait:
			progress("podtrace: agent %s did not say bye in time; using what it sent", r.spec.ID)
		}
	}
	var streams []trace.Stream
	for _, r := range rs {
		r.mu.Lock()
		streams = append(streams, trace.Stream{Agent: r.spec.ID, Display: r.spec.ID, Gaps: r.gaps, Lines: r.lines, Intake: r.kept.in})
		if r.err != nil {
			streams[len(streams)-1].Lines = append(streams[len(streams)-1].Lines, &wire.Envelope{Kind: wire.KindError, Error: &wire.Error{Msg: "stream: " + r.err.Error()}})
		}
		r.mu.Unlock()
	}
	return streams
}

// startAgents starts every agent of the plan in parallel; the first that
// cannot start stops the others from waiting (a missing image fails them
// all alike). The agents it started are returned with the error too: the
// caller stops them. sink, when set, sees each line first (see read).
func startAgents(ctx context.Context, l launch.Launcher, p Plan, o Options, probeDone func(), sink func(int, *wire.Envelope) bool) ([]*running, error) {
	progress := o.progress
	if p.Run == "" {
		p.Run = newRunToken()
	}
	rs := make([]*running, len(p.Agents))
	var wg sync.WaitGroup
	errs := make([]error, len(p.Agents))
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	for i, s := range p.Agents {
		r := &running{spec: s, run: p.Run, hello: make(chan struct{}), bye: make(chan struct{}), saidBye: make(chan struct{}), timeline: o.Timeline}
		if sink != nil {
			r.sink = func(e *wire.Envelope) bool { return sink(i, e) }
		}
		rs[i] = r
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := l.Start(startCtx, r.spec)
			if err != nil {
				if startCtx.Err() == nil || ctx.Err() != nil {
					errs[i] = err
				}
				cancelStart()
				r.ended()
				return
			}
			r.agent = a
			// The start line carries the run's token and its probe: an
			// agent that arms after it (a warm one) uses them.
			start := wire.Start{Run: r.run, Probe: s.Probe, Match: s.Match, Deadline: s.Deadline}
			if s.Probe != nil {
				start.Match = nil
			}
			if err := a.Send(start.Line()); err != nil {
				errs[i] = fmt.Errorf("agent %s: %w: %s", r.spec.ID, err, a.Diagnostics())
			}
			go r.read(probeDone)
		}(i)
	}
	wg.Wait()
	if ctx.Err() != nil { // the agents' errors are the interrupt's
		return rs, Interrupted{"while the agents started", ctx.Err()}
	}
	if err := joinByCause(p.Agents, errs); err != nil {
		return rs, err
	}
	progress("podtrace: %d agents started, waiting for them to arm", len(rs))
	return rs, nil
}

// waitArmed waits for every agent's hello.
func waitArmed(ctx context.Context, rs []*running, o Options) error {
	armCtx, cancel := context.WithTimeout(ctx, o.ArmTimeout)
	defer cancel()
	for _, r := range rs {
		select {
		case <-r.hello:
		case <-r.bye:
			if !closed(r.hello) { // both may be ready: a short stream said hello and ended
				if r.isBusy() {
					return fmt.Errorf("%w: agent %s: %s", ErrBusy, r.spec.ID, r.diag())
				}
				return r.failure("exited before it was armed")
			}
		case <-armCtx.Done():
			if ctx.Err() != nil {
				return Interrupted{"while the agents armed", ctx.Err()}
			}
			return fmt.Errorf("agent %s was not armed within %s: %s", r.spec.ID, o.ArmTimeout, r.diag())
		}
	}
	return nil
}

// ended closes bye, once.
func (r *running) ended() { r.byeOnce.Do(func() { close(r.bye) }) }

// cmd is a probe or stop line for this run.
func (r *running) cmd(c string) string {
	if r.run == "" {
		return c
	}
	return c + " " + r.run
}

func (r *running) isBusy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy
}

func (r *running) read(probeDone func()) {
	defer r.ended()
	defer func() {
		r.mu.Lock()
		r.eof = true
		r.mu.Unlock()
	}()
	rd := wire.NewReader(r.agent.Stream())
	rd.Run = r.run
	// Skipped lines are noted as they come: an agent whose every line is
	// invalid (another stream version) is named with the reason when it
	// is not armed in time.
	rd.OnSkip = func() {
		r.mu.Lock()
		r.kept.note(rd)
		r.mu.Unlock()
	}
	helloSeen, byeSeen := false, false
	for {
		e, err := rd.Next()
		if err != nil {
			r.mu.Lock()
			r.kept.note(rd)
			if err != io.EOF {
				r.err = err
			}
			r.mu.Unlock()
			return
		}
		if r.sink != nil && r.sink(e) {
			r.mu.Lock()
			r.kept.note(rd)
			r.gaps = rd.Gaps
			r.mu.Unlock()
			continue
		}
		r.mu.Lock()
		if r.kept.keep(e, rd.LineBytes) {
			r.lines = append(r.lines, e)
		}
		r.kept.note(rd)
		r.gaps = rd.Gaps
		if e.Kind == wire.KindError && e.Error.Fatal {
			r.fatal = e.Error.Msg
		}
		if e.Kind == wire.KindHello && !helloSeen {
			r.lingerTo = e.Hello.LingerCap
		}
		if e.Kind == wire.KindBye && !byeSeen {
			r.byeWhy = e.Bye.Reason
		}
		r.mu.Unlock()
		switch {
		case e.Kind == wire.KindHello && !helloSeen:
			helloSeen = true
			r.timeline.Mark(r.spec.ID, "armed (hello)")
			close(r.hello)
		case e.Kind == wire.KindProbe && e.Probe.Done:
			probeDone()
		case e.Kind == wire.KindBye && !byeSeen:
			// The agent's last line: the run need not wait for the
			// process to exit. Keep reading to EOF so the launcher can
			// reap it.
			byeSeen = true
			if e.Bye.Reason == wire.ByeBusy {
				r.mu.Lock()
				r.busy = true
				r.mu.Unlock()
			}
			close(r.saidBye)
			if e.Run != "" {
				// The run is over; an agent that serves more runs
				// keeps its output open.
				r.ended()
			}
		}
	}
}

// closed reports whether c is closed (select picks at random among ready
// cases: a stream that ended right after its news has both ready).
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (r *running) diag() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	if r.fatal != "" {
		parts = append(parts, r.fatal)
	}
	if in := r.kept.in; in.Invalid > 0 {
		parts = append(parts, fmt.Sprintf("%d invalid lines skipped (the first: %s)", in.Invalid, in.InvalidReason))
	}
	if r.agent != nil {
		if d := r.agent.Diagnostics(); d != "" {
			parts = append(parts, d)
		}
	}
	if len(parts) == 0 {
		return "no diagnostics"
	}
	return strings.Join(parts, "; ")
}

func (r *running) failure(what string) error {
	return fmt.Errorf("agent %s %s: %s", r.spec.ID, what, r.diag())
}

// stopAll stops every agent with a fresh context: teardown must work when
// the run's context is already cancelled. lingered, when set, is told
// what became of the lingering agents.
func stopAll(rs []*running, progress func(string, ...any), lingered func([]Lingering)) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	left := make([]Lingering, len(rs))
	for i, r := range rs {
		if r == nil {
			continue
		}
		left[i].ID = r.spec.ID
		if r.agent == nil {
			continue
		}
		wg.Add(1)
		go func(r *running) {
			defer wg.Done()
			// A run interrupted before its stop (an error, Ctrl-C) is
			// stopped: a lingering agent goes back to waiting for the
			// next, once it said bye (its stream does not end).
			_ = r.agent.Send(r.cmd(wire.CmdStop))
			if r.spec.Linger > 0 {
				select {
				case <-r.saidBye:
				case <-r.bye:
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				// Before Stop detaches, which ends the stream here.
				r.mu.Lock()
				left[i].Waiting = closed(r.saidBye) && r.byeWhy == wire.ByeStopped && !r.eof
				left[i].Cap = r.lingerTo
				r.mu.Unlock()
			}
			if err := r.agent.Stop(ctx); err != nil {
				progress("podtrace: stopping agent %s: %v", r.spec.ID, err)
			}
		}(r)
	}
	wg.Wait()
	if lingered == nil {
		return
	}
	var out []Lingering
	for i, r := range rs {
		if r != nil && r.spec.Linger > 0 {
			out = append(out, left[i])
		}
	}
	if len(out) > 0 {
		lingered(out)
	}
}

// joinByCause joins the agents' start errors, saying once what several
// agents ran into alike ("pod-a, node-1: the agent image … cannot be
// pulled") instead of once per agent.
func joinByCause(specs []launch.Spec, errs []error) error {
	var order []string
	who := map[string][]string{}
	for i, err := range errs {
		if err == nil {
			continue
		}
		id := specs[i].ID
		msg := strings.TrimPrefix(err.Error(), id+": ")
		if _, ok := who[msg]; !ok {
			order = append(order, msg)
		}
		who[msg] = append(who[msg], id)
	}
	if len(order) == 0 {
		return nil
	}
	var lines []string
	for _, msg := range order {
		lines = append(lines, strings.Join(who[msg], ", ")+": "+msg)
	}
	return errors.New(strings.Join(lines, "\n"))
}
