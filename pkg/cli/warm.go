package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
		Pods: pods, Progress: o.ErrOut, ReadyTimeout: o.ReadyTimeout, Timeline: o.timeline}
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
	fmt.Fprintf(o.ErrOut, "podtrace: mode %s: %s\n", o.mode, render.Safe(o.modeWhy))
	notes := append(append([]string(nil), o.notes...), fmt.Sprintf("warm rerun: the lingering agents of session %s served this trace; nothing was created", started))
	err = o.RunPlan(ctx, l, plan, notes)
	var na *session.NotArmedError
	if errors.As(err, &na) && ctx.Err() == nil {
		fmt.Fprintf(o.ErrOut, "podtrace: cold trace: the warm agents did not serve this run: %s\n", render.Safe(na.Err.Error()))
		return false, nil
	}
	o.sayWarm()
	return true, err
}

// sayWarm tells how long the agents stay.
func (o *ClusterOptions) sayWarm() {
	fmt.Fprintf(o.ErrOut, "podtrace: the agents stay warm until %s (--linger %s) for reruns; `kubectl podtrace cleanup` ends them now\n",
		time.Now().Add(o.Linger).UTC().Format("15:04:05 UTC"), o.Linger)
}
