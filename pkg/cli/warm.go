package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	clusterlaunch "github.com/podtrace/kubectl-podtrace/pkg/launch/cluster"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/version"
)

// DefaultLinger is how long agents stay armed after a trace, for reruns.
const DefaultLinger = 2 * time.Minute

// lifetimeLingers bounds a lingering agent's life: its first run's
// deadline plus this many linger times, however many reruns it serves.
const lifetimeLingers = 10

func (o *ClusterOptions) addLingerFlag(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.Linger, "linger", DefaultLinger, "keep the agents armed this long after the trace (each rerun restarts it, within "+strconv.Itoa(lifetimeLingers)+" times it from their start): a rerun between the same pods and nodes with the same capture options reuses them, creating nothing, and `kubectl podtrace cleanup` ends them at once; 0: agents end with the trace. Single active traces only (not --watch, --passive)")
}

// lingers tells whether this trace's agents linger after it: an active
// trace that is not a watch, with --linger.
func (o *ClusterOptions) lingers() bool {
	return o.Linger > 0 && !o.Passive && !o.Watch.On
}

// applyLinger makes the plan's agents linger, each with its warm key.
func (o *ClusterOptions) applyLinger(s *launch.Spec) {
	if !o.lingers() {
		return
	}
	s.Linger = o.Linger
	s.Lifetime = s.Deadline + lifetimeLingers*o.Linger
	p := o.params()
	v := version.Version
	if version.Commit != "" {
		v += "+" + version.Commit // a development build differs from the last by its commit
	}
	s.WarmKey = s.Key(v, "image="+p.Image, "pull="+string(p.PullPolicy), "caps="+p.Capabilities,
		"kdrops="+strconv.FormatBool(p.KernelDrops), "unprivileged="+strconv.FormatBool(p.Unprivileged && s.Role == "pod"),
		"agentns="+p.Namespace)
}

// launcher is the cluster launcher of this trace.
func (o *ClusterOptions) launcher() *clusterlaunch.Launcher {
	pods := map[string]*corev1.Pod{o.src.Ref.String(): o.src.Pod}
	if o.dst != nil {
		pods[o.dst.Ref.String()] = o.dst.Pod
	}
	return &clusterlaunch.Launcher{Client: o.client, Config: o.restConfig, Params: o.params(),
		Pods: pods, Progress: o.ErrOut, ReadyTimeout: o.ReadyTimeout, Timeline: o.timeline, StartsReported: o.startsReported}
}

// runWarm reruns the trace on lingering agents when every agent of its
// plan has one running (same pods, nodes, filter, options and agent
// version): nothing is created, no preflight is needed. It reports false
// (and says why on stderr) when the trace must be cold: no such agents,
// agents of another trace, or agents that could not serve it before
// arming (busy with another user's run, gone in the meantime).
func (o *ClusterOptions) runWarm(ctx context.Context) (bool, error) {
	o.mode, o.modeWhy = chooseMode(o.Mode, o.Passive, o.srcLevel, o.podLevels)
	plan := o.Plan(o.mode)
	l := o.launcher()
	defer func() {
		if err := l.Cleanup(); err != nil {
			fmt.Fprintf(o.ErrOut, "podtrace: cleanup: %v\n", err)
		}
	}()
	l.Keep() // nothing of a warm run is deleted by it
	warm, why, err := l.FindWarm(ctx, plan.Agents)
	if err != nil {
		why = err.Error()
	}
	if warm == nil {
		fmt.Fprintf(o.ErrOut, "podtrace: cold trace: %s\n", render.Safe(why))
		return false, nil
	}
	l.Warm = warm
	started := ""
	for _, w := range warm {
		started = w.Session
		break
	}
	fmt.Fprintf(o.ErrOut, "podtrace: warm rerun on the agents of session %s: nothing created\n", render.Safe(started))
	setLeftover(fmt.Sprintf("this warm rerun created nothing; the lingering agents of session %s may still run it until its deadline, "+
		"then wait for a rerun (--linger %s); `kubectl podtrace cleanup` ends them now", started, o.Linger))
	fmt.Fprintf(o.ErrOut, "podtrace: mode %s: %s\n", o.mode, render.Safe(o.modeWhy))
	notes := append(append([]string(nil), o.notes...), fmt.Sprintf("warm rerun: the lingering agents of session %s served this trace; nothing was created", started))
	return o.rerun(ctx, l, plan, notes)
}

// rerun runs plan on lingering agents and says what became of them: after
// a verdict, on a line of its own; after Ctrl-C or another error, in the
// error, after what ended the run (the error is printed last). It reports
// false, to fall back to a cold trace, when the agents could not serve
// the run before arming.
func (o *ClusterOptions) rerun(ctx context.Context, l launch.Launcher, plan session.Plan, notes []string) (bool, error) {
	var left []session.Lingering
	o.lingered = func(ls []session.Lingering) { left = ls }
	defer func() { o.lingered = nil }()
	err := o.RunPlan(ctx, l, plan, notes)
	var na *session.NotArmedError
	if errors.As(err, &na) && ctx.Err() == nil {
		fmt.Fprintf(o.ErrOut, "podtrace: cold trace: the warm agents did not serve this run: %s\n", render.Safe(na.Err.Error()))
		setLeftover("") // the cold trace says what it creates
		return false, nil
	}
	line := lingerLine(left, o.Linger, time.Now())
	if err == nil || errors.As(err, new(*ExitCodeError)) {
		fmt.Fprintf(o.ErrOut, "podtrace: %s\n", line)
		return true, err
	}
	return true, fmt.Errorf("%w; %s", err, line)
}

// lingerLine says what became of a run's lingering agents, as the run
// that stopped them saw it: each that went back to waiting stays armed
// for --linger from then (within its lifetime), and a rerun needs them
// all.
func lingerLine(left []session.Lingering, linger time.Duration, now time.Time) string {
	const cleanup = "`kubectl podtrace cleanup` ends them now"
	until, capped := now.Add(linger), false
	var not []string
	for _, a := range left {
		switch {
		case !a.Waiting:
			not = append(not, a.ID)
		case !a.Cap.IsZero() && a.Cap.Before(until):
			until, capped = a.Cap, true
		}
	}
	if len(not) > 0 || len(left) == 0 {
		who := "the agents"
		if len(not) > 0 {
			who = "agents " + strings.Join(not, ", ")
		}
		return fmt.Sprintf("%s did not say they went back to waiting for a rerun (they may still run this one, until its deadline, or have ended): "+
			"the next run may be cold; each ends by itself within its lifetime, and %s", render.Safe(who), cleanup)
	}
	why := "--linger " + linger.String()
	if capped {
		why = fmt.Sprintf("the end of their lifetime: --linger %s, at most %d times it from their start", linger, lifetimeLingers)
	}
	return fmt.Sprintf("the agents stay warm until %s (%s) for reruns; %s", until.UTC().Format("15:04:05 UTC"), why, cleanup)
}
