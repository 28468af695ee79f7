package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/watch"
)

// Watch bounds. The agents are armed once for the whole watch: the
// probing agent's spec holds every round (its count), and every agent's
// capture filter names the rounds' probes (at most 1000 source ports), so
// a watch has at most maxWatchRounds rounds and lasts at most
// --max-duration; the agents' deadline covers it, and they still exit on
// their own after it.
const (
	maxWatchRounds       = 1000
	defaultWatchInterval = time.Second
	minWatchInterval     = 100 * time.Millisecond
	maxWatchDuration     = 24 * time.Hour
)

// WatchOptions are --watch and its bound.
type WatchOptions struct {
	On          bool
	MaxDuration time.Duration

	flags *pflag.FlagSet
	span  time.Duration // how long the rounds may take, from the agents' arming
}

func (w *WatchOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	w.flags = f
	f.BoolVar(&w.On, "watch", false, "probe again every --interval (default 1s with --watch) until Ctrl-C or --count rounds; a table of every hop (loss, delta from the previous hop) redrawn in place on a terminal, path changes kept below it; -o json: one line a round")
	f.DurationVar(&w.MaxDuration, "max-duration", 10*time.Minute, "with --watch: end the watch after this long (at most 1000 rounds in any case); the agents are armed for it and exit on their own after it")
}

// validate applies --watch to the trace options: the probe count becomes
// the rounds, the interval defaults to a second, and the run's timeout
// (and so the agents' deadline) covers the whole watch.
func (o *TraceOptions) validateWatch() error {
	w := &o.Watch
	if !w.On {
		if w.flags != nil && w.flags.Changed("max-duration") {
			return errors.New("--max-duration applies to --watch")
		}
		return nil
	}
	switch {
	case o.Passive:
		return errors.New("--watch sends a probe a round: it does not combine with --passive")
	case o.Save != "":
		return errors.New("--watch keeps no streams (each round is dropped once shown): it does not combine with --save")
	case o.Pcap != "":
		return errors.New("--watch keeps no frames (each round is dropped once shown): it does not combine with --pcap")
	case w.MaxDuration <= 0 || w.MaxDuration > maxWatchDuration:
		return fmt.Errorf("--max-duration %s: want more than 0 and at most %s", w.MaxDuration, maxWatchDuration)
	}
	changed := func(name string) bool { return w.flags != nil && w.flags.Changed(name) }
	if !changed("interval") {
		o.Interval = defaultWatchInterval
	}
	if o.Interval < minWatchInterval {
		return fmt.Errorf("--interval %s: a watch wants at least %s between rounds", o.Interval, minWatchInterval)
	}
	if !changed("count") {
		o.Count = maxWatchRounds
	}
	if o.Count < 1 || o.Count > maxWatchRounds {
		return fmt.Errorf("--count %d: a watch has 1 to %d rounds", o.Count, maxWatchRounds)
	}
	// A round takes at most its wait for the answer and the interval.
	w.span = min(w.MaxDuration, time.Duration(o.Count)*(o.Interval+o.Wait)+5*time.Second)
	if o.Timeout > 0 {
		o.Timeout += w.span // arming, then the rounds
	}
	return nil
}

// watcher prints each round as it comes.
type watcher struct {
	tb   *watch.Table
	text *render.WatchText
	js   *render.WatchJSON
	h    render.Header
	err  error
}

func (w *watcher) Armed(head *trace.Trace, armed time.Duration) {
	w.h.Armed = armed
	if w.js != nil {
		w.keep(w.js.Head(head, w.h))
		return
	}
	w.keep(w.text.Head(head, w.h))
}

func (w *watcher) Round(n int, t *trace.Trace) {
	r := w.tb.Fold(n, t)
	if w.js != nil {
		w.keep(w.js.Round(r))
		return
	}
	w.keep(w.text.Round(w.tb, r))
}

func (w *watcher) keep(err error) {
	if w.err == nil {
		w.err = err
	}
}

// runWatch runs a plan as a watch and prints it; the error carries the
// exit code (the watch's verdict: delivered when every round was).
func (o *TraceOptions) runWatch(ctx context.Context, l launch.Launcher, p session.Plan, notes []string) error {
	if p.Session.Service != nil {
		return errors.New("--watch follows a probe to a pod or an address, not yet through a Service's translation: watch the endpoint pod, or trace the Service without --watch")
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p.Passive, p.Duration = false, o.Watch.span
	w := &watcher{tb: &watch.Table{}, h: render.Header{Notes: notes}}
	if o.Output == "json" {
		w.js = render.NewWatchJSON(o.Out)
	} else {
		on, _ := render.UseColor(o.Color, o.Out)
		w.text = render.NewWatchText(o.Out, render.IsTerminal(o.Out), on)
	}
	// A round is shown once its outcome is in and the other agents' frames
	// of it had time to arrive (through the API server in a cluster): up
	// to an interval, so that a slow stream costs no false loss while the
	// table lags at most one round.
	grace := min(max(o.Interval, session.DefaultRoundGrace), 2*time.Second)
	res, err := session.Watch(ctx, l, p, session.Options{Progress: o.ErrOut, RoundGrace: grace}, w)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("gave up after --timeout %s: %w", o.Timeout, err)
		}
		return err
	}
	if o.annotate != nil {
		o.annotate(res.Trace)
	}
	v := w.tb.Verdict()
	note := ""
	switch {
	case res.Interrupted && errors.Is(ctx.Err(), context.DeadlineExceeded):
		note = fmt.Sprintf("gave up after %s, %d rounds", o.Timeout, res.Rounds)
	case res.Interrupted:
		note = fmt.Sprintf("interrupted after %d rounds", res.Rounds)
	case res.Ended:
		note = fmt.Sprintf("ended at --max-duration %s, after %d rounds", o.Watch.MaxDuration, res.Rounds)
	}
	if res.Late > 0 || res.Cut > 0 {
		res.Trace.Warnings = append(res.Trace.Warnings, fmt.Sprintf("%d lines arrived after their round was shown and %d were over a round's bound: left out", res.Late, res.Cut))
	}
	if w.js != nil {
		err = w.js.Final(w.tb, res.Trace, v, render.WatchSummary{Late: res.Late, Cut: res.Cut, Interrupted: res.Interrupted})
	} else {
		err = w.text.Final(w.tb, res.Trace, v, note)
	}
	if err == nil {
		err = w.err
	}
	if err != nil {
		return err
	}
	if v.Result == "delivered" {
		return nil
	}
	return &ExitCodeError{Code: ExitLost, Msg: "probe not delivered in every round: " + v.Result}
}
