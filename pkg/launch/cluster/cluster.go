// Package cluster launches agents in a Kubernetes cluster: a pod agent as an
// ephemeral container in a traced pod, a node agent as a short-lived
// hostNetwork pod on a node. Both are reached through the API server
// (pods/attach: stdout carries the observation stream, stdin the control
// lines). Node pods are deleted when the agent stops, and Cleanup deletes
// whatever a session still has, with its own context.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/remotecommand"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Launcher starts agents in a cluster.
type Launcher struct {
	Client   kubernetes.Interface
	Config   *rest.Config
	Params   kube.AgentParams
	Pods     map[string]*corev1.Pod // resolved traced pods by "ns/name"
	Progress io.Writer
	// ReadyTimeout bounds the wait for an agent container to run.
	ReadyTimeout time.Duration
	// TeardownBudget bounds the whole teardown, from the first agent
	// stopped to the last node pod deleted (DefaultTeardownBudget when
	// zero): every delete of the session shares it, so a slow or
	// unreachable API server costs the user this long, not a timeout per
	// pod.
	TeardownBudget time.Duration
	// Timeline, when set, records each agent's steps (--timing).
	Timeline *launch.Timeline
	// StartsReported are the nodes whose kubelet reports a started
	// container in the pod status at once (kube.ReportsStartAtOnce): there
	// the launcher waits for the status before it attaches, instead of
	// trying to attach at short intervals.
	StartsReported map[string]bool

	// Warm are running agents found for the plan's specs by ID (FindWarm):
	// Start attaches to them and creates nothing.
	Warm map[string]WarmAgent

	mu         sync.Mutex
	created    []*corev1.Pod
	unattached []unattached   // agent containers added, not attached (start interrupted)
	kept       bool           // Keep: lingering node pods stay after the run
	bg         sync.WaitGroup // deletions of exited lingering node pods (FindWarm)

	teardownOnce   sync.Once
	teardownCtx    context.Context
	teardownCancel context.CancelFunc // kept, not called: the budget ends on its own
}

// DefaultTeardownBudget is the teardown budget when none is set.
const DefaultTeardownBudget = 30 * time.Second

// teardown is the context every delete of the session runs in: it starts
// at the first call and ends after TeardownBudget, whatever the caller's
// context (a Ctrl-C cancelled that one).
func (l *Launcher) teardown() context.Context {
	l.teardownOnce.Do(func() {
		l.teardownCtx, l.teardownCancel = context.WithTimeout(context.Background(), l.teardownBudget())
	})
	return l.teardownCtx
}

func (l *Launcher) teardownBudget() time.Duration {
	if l.TeardownBudget <= 0 {
		return DefaultTeardownBudget
	}
	return l.TeardownBudget
}

func (l *Launcher) mark(id, what string) { l.Timeline.Mark(id, what) }

func (l *Launcher) progress(format string, a ...any) {
	if l.Progress != nil {
		fmt.Fprintf(l.Progress, "podtrace: "+format+"\n", a...)
	}
}

// Start starts one agent and attaches to it.
func (l *Launcher) Start(ctx context.Context, s launch.Spec) (launch.Agent, error) {
	timeout := l.ReadyTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	if w, ok := l.Warm[s.ID]; ok {
		a, err := l.attach(ctx, w.Namespace, w.Pod, w.Container, nil)
		if err != nil {
			return nil, err
		}
		if err := a.connected(ctx); err != nil {
			a.cancel()
			return nil, err
		}
		a.lingering = true
		l.mark(s.ID, "attached to the warm agent")
		return a, nil
	}
	switch s.Role {
	case wire.RolePod:
		pod := l.Pods[s.Target]
		if pod == nil {
			return nil, fmt.Errorf("agent %s: pod %s was not resolved", s.ID, s.Target)
		}
		ec := kube.EphemeralContainer(l.Params, s.Args())
		if err := kube.PatchEphemeral(ctx, l.Client, pod, ec, false); err != nil {
			return nil, err
		}
		l.progress("%s: added agent container %s", s.ID, ec.Name)
		l.mark(s.ID, "added")
		a, err := l.attachWhenRunning(ctx, timeout, pod.Namespace, pod.Name, ec.Name, true, nil, s.ID, l.StartsReported[pod.Spec.NodeName])
		if a != nil {
			a.lingering = s.Linger > 0
		}
		if err != nil && ctx.Err() != nil {
			// Interrupted before the attach (Ctrl-C, or another agent that
			// could not start): the container starts all the same and
			// would wait for its first line until its deadline.
			l.mu.Lock()
			l.unattached = append(l.unattached, unattached{id: s.ID, ns: pod.Namespace, pod: pod.Name, container: ec.Name})
			l.mu.Unlock()
		}
		return a, err
	case wire.RoleNode:
		p := kube.NodePod(l.Params, s.Target, s.Args())
		created, err := kube.CreateNodePod(ctx, l.Client, p, false)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.created = append(l.created, created)
		l.mu.Unlock()
		l.progress("%s: created node agent pod %s/%s", s.ID, created.Namespace, created.Name)
		l.mark(s.ID, "created")
		a, err := l.attachWhenRunning(ctx, timeout, created.Namespace, created.Name, "agent", false, created, s.ID, l.StartsReported[s.Target])
		if err != nil {
			_ = l.deletePod(l.teardown(), created)
			return nil, err
		}
		a.lingering = s.Linger > 0
		return a, nil
	}
	return nil, fmt.Errorf("agent %s: unknown role %q", s.ID, s.Role)
}

// attachWhenRunning attaches to the agent container as soon as the
// container runtime runs it, while it watches the pod's status for what
// ends the wait (the container running, an image that cannot be pulled, a
// container that exited, the timeout). Once the status says the container
// runs, an attach that still fails is an error. An attempt has succeeded
// when its stream takes the first control line: the executor reads stdin
// only once the connection is up.
//
// When to try is the kubelet's to say (reported): one that reports a
// started container at once (kube.ReportsStartAtOnce) is waited for, and
// attach attempts are a rare fallback (attachInterval); an older one shows
// the start only at its next relist, up to a second later, but serves an
// attach as soon as the runtime runs the container, so the launcher tries
// from the start and then at short intervals. A failed attempt is not
// free: the API server and the kubelet each set up a TLS connection and
// the kubelet asks the runtime, about 45 ms of their CPU together
// (measured on the e2e cluster), taken while the runtime starts the
// agents.
func (l *Launcher) attachWhenRunning(ctx context.Context, timeout time.Duration, ns, pod, container string, ephemeral bool, owned *corev1.Pod, id string, reported bool) (*agent, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	status := make(chan error, 1)
	go func() { status <- l.waitRunning(wctx, ns, pod, container, ephemeral, id) }()
	running := false
	begun := time.Now()
	attempts := 0
	for try := !reported; ; try = true {
		if try {
			attempts++
			a, err := l.attach(ctx, ns, pod, container, owned)
			if err == nil {
				if err = a.connected(wctx); err == nil {
					l.mark(id, fmt.Sprintf("attached (attempt %d)", attempts))
					return a, nil
				}
				a.cancel()
			}
			if running {
				return nil, err
			}
		}
		select {
		case serr := <-status:
			if serr != nil {
				return nil, serr
			}
			running = true // one more attempt, at once
			l.mark(id, "running in the pod status")
		case <-time.After(attachInterval(time.Since(begun), reported)):
		case <-wctx.Done():
			if serr := <-status; serr != nil { // the watch ends with wctx
				return nil, serr
			}
			return nil, wctx.Err()
		}
	}
}

// attachInterval is the wait before the next attach attempt, elapsed
// after the first. Where the kubelet reports a start at once (reported),
// attempts are a fallback for a status that comes late (the feature turned
// off on a 1.36 kubelet, a watch that lags): the first 2 s after the agent
// was added, past the time its node takes to start it while it starts the
// trace's other containers too (1.3 s for the six of a trace across the
// two nodes of the e2e cluster, which share two cores; an attempt at 1 s
// failed for most node agents there, and each costs the API server and the
// kubelet about 45 ms of CPU while they start the rest), then one a
// second. Elsewhere, 150 ms apart while a container usually starts (3 s:
// no agent container ran sooner than 0.4 s after it was added on the e2e
// cluster), then 500 ms (an image being pulled: the pod status says when
// it runs, and an attempt follows at once).
func attachInterval(elapsed time.Duration, reported bool) time.Duration {
	switch {
	case reported && elapsed < time.Second:
		return 2*time.Second - elapsed
	case reported:
		return time.Second
	case elapsed < 3*time.Second:
		return 150 * time.Millisecond
	}
	return 500 * time.Millisecond
}

// waitRunning watches the pod until the container runs, showing the
// kubelet's waiting reasons, and turns image and start failures into
// errors.
func (l *Launcher) waitRunning(ctx context.Context, ns, name, container string, ephemeral bool, id string) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return l.Client.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return l.Client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	last := ""
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("pod %s/%s was deleted while its agent was starting", ns, name)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		statuses := p.Status.ContainerStatuses
		if ephemeral {
			statuses = p.Status.EphemeralContainerStatuses
		}
		if p.Status.Phase == corev1.PodFailed && !ephemeral {
			return false, fmt.Errorf("%s: node agent pod %s/%s failed: %s %s", id, ns, name, p.Status.Reason, p.Status.Message)
		}
		for _, st := range statuses {
			if st.Name != container {
				continue
			}
			switch {
			case st.State.Running != nil:
				return true, nil
			case st.State.Terminated != nil:
				t := st.State.Terminated
				return false, fmt.Errorf("%s: the agent container exited (%s, code %d) before it was attached: %s", id, t.Reason, t.ExitCode, strings.TrimSpace(t.Message))
			case st.State.Waiting != nil:
				w := st.State.Waiting
				msg := w.Reason
				if w.Message != "" {
					msg += ": " + w.Message
				}
				if msg != last {
					last = msg
					l.progress("%s: agent container waiting: %s", id, msg)
					l.mark(id, "waiting in the pod status: "+w.Reason)
				}
				switch w.Reason {
				case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
					return false, fmt.Errorf("%s: the agent image %q cannot be pulled (%s): pass --image with an image your nodes can pull (a mirror for air-gapped clusters) and --image-pull-secret if it needs one", id, st.Image, msg)
				case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
					return false, fmt.Errorf("%s: the agent container could not start: %s", id, msg)
				}
			}
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: the agent container in %s/%s did not run in time (last state: %s)", id, ns, name, orNone(last))
		}
		return ctx.Err()
	}
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none reported"
	}
	return s
}

// attach connects to the container's stdin and stdout through the API
// server (WebSocket, falling back to SPDY).
func (l *Launcher) attach(ctx context.Context, ns, pod, container string, owned *corev1.Pod) (*agent, error) {
	req := l.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: container, Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(l.Config, "POST", req.URL())
	if err != nil {
		return nil, fmt.Errorf("attach to %s/%s: %w", ns, pod, err)
	}
	exec := spdy
	if ws, err := remotecommand.NewWebSocketExecutor(l.Config, "GET", req.URL().String()); err == nil {
		exec, _ = remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &agent{l: l, ns: ns, pod: pod, container: container, owned: owned, stdin: inW, stdout: outR, done: make(chan struct{})}
	// The attach lives as long as the agent, not as long as the caller's
	// context: stopping is explicit (Stop), so teardown works after Ctrl-C.
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	go func() {
		err := exec.StreamWithContext(actx, remotecommand.StreamOptions{Stdin: inR, Stdout: outW, Stderr: &a.stderr})
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		if err != nil {
			err = kube.Explain(err, fmt.Sprintf("attach to the agent in %s/%s", ns, pod))
		}
		inR.CloseWithError(errOr(err, io.EOF))
		outW.CloseWithError(errOr(err, io.EOF))
		close(a.done)
	}()
	return a, nil
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

type agent struct {
	l                   *Launcher
	ns, pod, container  string
	owned               *corev1.Pod
	stdin               *io.PipeWriter
	stdout              *io.PipeReader
	stderr              launch.TailBuffer
	cancel              context.CancelFunc
	mu                  sync.Mutex
	err                 error
	done                chan struct{}
	stopOnce, closeOnce sync.Once
	// lingering: the agent serves more runs (--linger): Stop detaches and
	// leaves it, and its node pod, to its linger time (Launcher.Keep).
	lingering bool
}

func (a *agent) Stream() io.Reader { return a.stdout }

// connected reports whether the attach is up: it writes an empty control
// line (agents pass over an empty line), which
// the executor consumes only once its stream is established; a failed
// attach closes the pipe with its error instead.
func (a *agent) connected(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { _, err := io.WriteString(a.stdin, "\n"); errc <- err }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		a.cancel() // ends the stream: the write returns
		<-errc
		return ctx.Err()
	}
}

func (a *agent) Send(cmd string) error {
	_, err := io.WriteString(a.stdin, cmd+"\n")
	return err
}

// Stop closes the agent's stdin (with StdinOnce the runtime closes the
// container's stdin: the agent stops and says bye), waits for the stream
// to end, then deletes the node pod if this agent owns one. A lingering
// agent's stream does not end: Stop detaches from it (the session told
// its run to stop), and Launcher.Cleanup decides about its node pod.
func (a *agent) Stop(ctx context.Context) error {
	var err error
	a.stopOnce.Do(func() {
		if a.lingering {
			_ = a.stdin.Close()
			a.cancel()
			return
		}
		td := a.l.teardown()
		_ = a.stdin.Close()
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		case <-td.Done():
		}
		a.cancel()
		if a.owned != nil {
			err = a.l.deletePod(td, a.owned)
		}
	})
	return err
}

func (a *agent) Diagnostics() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The attach error itself reaches the caller through the stream.
	return strings.TrimSpace(a.stderr.String())
}

// deletePod deletes a node agent pod within ctx (the teardown's, or a
// failed start's own).
func (l *Launcher) deletePod(ctx context.Context, p *corev1.Pod) error {
	err := l.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return kube.Explain(err, fmt.Sprintf("delete node agent pod %s/%s", p.Namespace, p.Name))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range l.created {
		if c.Name == p.Name && c.Namespace == p.Namespace {
			l.created = append(l.created[:i], l.created[i+1:]...)
			break
		}
	}
	return nil
}

// Cleanup ends the agent containers added to pods but never attached,
// their start interrupted (endUnattached), then deletes every node pod of
// the session that still exists — also those whose creation raced with a
// cancellation — within what is left of the teardown budget (it starts
// it if no agent was stopped), all at once. When the budget runs out, the
// error names what may be left and how to remove it.
//
// After Keep, the node pods of lingering agents stay: they serve reruns
// and end on their own.
func (l *Launcher) Cleanup() error {
	l.bg.Wait()
	ended := l.endUnattached()
	err := l.cleanupNodePods()
	return errors.Join(ended, err)
}

// unattached is an agent container added to a pod whose start was
// interrupted (Ctrl-C, or another agent that could not start) before the
// launcher attached to it.
type unattached struct{ id, ns, pod, container string }

// UnattachedWait bounds the wait for an unattached agent container to
// run, so that it can be ended.
const UnattachedWait = 10 * time.Second

// endUnattached ends the unattached agent containers, all at once: an
// ephemeral container cannot be removed, and one never attached would
// wait for its first line until its deadline. Each is waited for until it
// runs (within UnattachedWait and the teardown budget), then told to exit.
func (l *Launcher) endUnattached() error {
	l.mu.Lock()
	left := l.unattached
	l.unattached = nil
	l.mu.Unlock()
	if len(left) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(l.teardown(), UnattachedWait)
	defer cancel()
	errs := make([]error, len(left))
	var wg sync.WaitGroup
	for i, u := range left {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.progress("%s: ending the agent container %s, added but not attached, once it runs (interrupt again to leave it to its deadline)", u.id, u.container)
			if err := l.waitRunning(ctx, u.ns, u.pod, u.container, true, u.id); err != nil {
				if ctx.Err() == nil {
					return // it will not run (it exited, or its image cannot be pulled)
				}
				errs[i] = fmt.Errorf("the agent container %s in %s/%s, added but not attached, did not run within %s: it exits on its own within %s of its start",
					u.container, u.ns, u.pod, UnattachedWait, l.Params.Deadline)
				return
			}
			if err := l.EndAgent(ctx, u.ns, u.pod, u.container); err != nil {
				errs[i] = fmt.Errorf("%w (within %s of its start)", err, l.Params.Deadline)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cleanupNodePods deletes the session's node pods (see Cleanup).
func (l *Launcher) cleanupNodePods() error {
	l.mu.Lock()
	kept := l.kept
	l.mu.Unlock()
	if kept {
		return nil
	}
	ctx := l.teardown()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	del := func(p *corev1.Pod) {
		defer wg.Done()
		if err := l.deletePod(ctx, p); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	l.mu.Lock()
	left := append([]*corev1.Pod(nil), l.created...)
	l.mu.Unlock()
	deleting := map[string]bool{}
	for _, p := range left {
		deleting[p.Namespace+"/"+p.Name] = true
		wg.Add(1)
		go del(p)
	}
	// The session's label finds the pods whose creation raced with a
	// cancellation; those of left are being deleted already.
	list, err := l.Client.CoreV1().Pods(l.Params.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.ManagedByLabel + "=" + kube.ManagedBy + "," + kube.SessionLabel + "=" + l.Params.Session})
	if err == nil {
		for i := range list.Items {
			if p := &list.Items[i]; !deleting[p.Namespace+"/"+p.Name] {
				wg.Add(1)
				go del(p)
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		l.mu.Lock()
		var names []string
		for _, p := range l.created {
			names = append(names, p.Name)
		}
		l.mu.Unlock()
		what := "node agent pods of session " + l.Params.Session
		if len(names) > 0 {
			what += " (" + strings.Join(names, ", ") + ")"
		}
		return fmt.Errorf("the teardown did not finish within %s: %s may be left in namespace %s until their deadline; delete them with `kubectl podtrace cleanup --session %s`",
			l.teardownBudget(), what, l.Params.Namespace, l.Params.Session)
	}
	if len(errs) == 0 {
		return nil
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("%s; delete what is left with `kubectl podtrace cleanup --session %s`", strings.Join(msgs, "; "), l.Params.Session)
}
