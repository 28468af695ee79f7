package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// detaching runs real agents with the local launcher, but its Stop
// detaches as the cluster launcher's does from a lingering agent: the
// run's stream ends, the agent process and its input stay. What the
// agent writes after that is kept for the test (after), and kill ends it.
type detaching struct {
	local.Launcher
	mu     sync.Mutex
	agents []*detached
}

type detached struct {
	launch.Agent
	id    string
	pr    *io.PipeReader
	mu    sync.Mutex
	pw    *io.PipeWriter // the run's stream; nil once detached
	after chan string    // lines written after the detach
}

func (l *detaching) Start(ctx context.Context, s launch.Spec) (launch.Agent, error) {
	a, err := l.Launcher.Start(ctx, s)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	d := &detached{Agent: a, id: s.ID, pr: pr, pw: pw, after: make(chan string, 1024)}
	go func() {
		rd := bufio.NewReader(a.Stream())
		for {
			line, err := rd.ReadBytes('\n')
			d.mu.Lock()
			switch {
			case d.pw != nil && len(line) > 0:
				_, _ = d.pw.Write(line)
			case len(line) > 0:
				select {
				case d.after <- string(line):
				default:
				}
			}
			d.mu.Unlock()
			if err != nil {
				close(d.after)
				return
			}
		}
	}()
	l.mu.Lock()
	l.agents = append(l.agents, d)
	l.mu.Unlock()
	return d, nil
}

func (d *detached) Stream() io.Reader { return d.pr }

// Stop detaches: the run's stream ends; the agent runs on.
func (d *detached) Stop(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pw != nil {
		_ = d.pw.Close()
		d.pw = nil
	}
	return nil
}

func (d *detached) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = d.Agent.Stop(ctx)
}

// lineWatch is a standard error that tells when a line holding a word was
// written.
type lineWatch struct {
	mu   sync.Mutex
	b    bytes.Buffer
	word string
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.word) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A rerun on lingering agents interrupted during its probes (Ctrl-C):
// the error says first that it was interrupted, then that the agents
// stay warm until --linger from now, and nothing claims it before. And it
// is true: the real agents (run here by the local launcher in the lab's
// namespaces; Stop detaches as from a lingering agent in a cluster) are
// still running after the run, each serves a next run's start line with
// a hello, and ends when told to.
func TestInterruptedWarmRerunSaysSoFirstThenHowLongTheAgentsStay(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const nodeName = "node1"
	cs, _ := fakeCluster(runningPod("default", "pod-a", a.IP, nodeName), runningPod("default", "pod-b", b.IP, nodeName))
	var out bytes.Buffer
	errOut := &lineWatch{word: "podtrace: probing", seen: make(chan struct{})}
	o := NewClusterOptions(TraceOptions{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: errOut}})
	o.client = cs
	completeAsTyped(t, o, []string{"default/pod-a", "default/pod-b"}, "--count", "50", "--interval", "200ms", "--linger", "1m", "--color", "never",
		"--image", "registry.example.com/podtrace-agent:v1")
	ctx := context.Background()
	o.mode, o.modeWhy = chooseMode(o.Mode, o.Passive, o.srcLevel, o.podLevels)
	plan := o.Plan(o.mode)
	where := map[string]string{"pod-a": a.NetNS, "pod-b": b.NetNS, nodeName: l.Nodes[0].NetNS}
	for i := range plan.Agents {
		s := &plan.Agents[i]
		if where[s.ID] == "" || s.Linger != time.Minute {
			t.Fatalf("agent %+v: want pod-a, pod-b and %s, lingering 1m", *s, nodeName)
		}
		s.Target = where[s.ID] // the local launcher runs each in its lab namespace
	}
	if len(plan.Agents) != 3 {
		t.Fatalf("plan %+v; want pod-a, pod-b and the node", plan.Agents)
	}

	ln := &detaching{Launcher: local.Launcher{Binary: agentBinary}}
	t.Cleanup(func() {
		for _, d := range ln.agents {
			d.kill()
		}
	})
	rctx, interrupt := context.WithCancel(ctx)
	var interrupted time.Time
	go func() {
		select {
		case <-errOut.seen:
			time.Sleep(300 * time.Millisecond) // a probe or two out
			interrupted = time.Now()
			interrupt()
		case <-time.After(2 * time.Minute):
			interrupt()
		}
	}()
	served, err := o.rerun(rctx, ln, plan, nil)
	returned := time.Now()
	t.Logf("stderr:\n%serror: %v", errOut.String(), err)
	if !served || err == nil {
		t.Fatalf("served %v, error %v; want the run served and interrupted", served, err)
	}
	if interrupted.IsZero() {
		t.Fatal("the run never said it was probing")
	}
	if strings.Contains(errOut.String(), "stay warm") {
		t.Errorf("standard error says the agents stay warm before the error says the run was interrupted")
	}
	if strings.Contains(out.String(), "verdict") {
		t.Errorf("an interrupted run printed a trace:\n%s", out.String())
	}
	// The agents went back to waiting between the interrupt and the
	// return: they stay --linger from then.
	msg := err.Error()
	var until string
	for s := interrupted.Add(time.Minute).Truncate(time.Second); !s.After(returned.Add(time.Minute)); s = s.Add(time.Second) {
		if w := "; the agents stay warm until " + s.UTC().Format("15:04:05 UTC") + " (--linger 1m0s) for reruns; `kubectl podtrace cleanup` ends them now"; strings.HasSuffix(msg, w) {
			until = w
		}
	}
	if !strings.HasPrefix(msg, "interrupted") || until == "" {
		t.Fatalf("error %q; want it to say interrupted, then that the agents stay warm until --linger after the interrupt (%s to %s)",
			msg, interrupted.Add(time.Minute).UTC().Format("15:04:05"), returned.Add(time.Minute).UTC().Format("15:04:05"))
	}

	// Each agent waits for a next run: a start line gets its hello.
	if len(ln.agents) != 3 {
		t.Fatalf("%d agents started; want 3", len(ln.agents))
	}
	for _, d := range ln.agents {
		if err := d.Send(wire.Start{Run: "next", Deadline: 30 * time.Second}.Line()); err != nil {
			t.Fatalf("start line to a lingering agent: %v: %s", err, d.Diagnostics())
		}
	}
	for _, d := range ln.agents {
		hello := false
		timeout := time.After(time.Minute)
		for !hello {
			select {
			case line, ok := <-d.after:
				if !ok {
					t.Fatalf("agent %s ended after the interrupted run; want it waiting for the next: %s", d.id, d.Diagnostics())
				}
				var e struct{ Kind, Run string }
				_ = json.Unmarshal([]byte(line), &e)
				hello = e.Kind == wire.KindHello && e.Run == "next"
			case <-timeout:
				t.Fatalf("agent %s did not arm for the next run within a minute: %s", d.id, d.Diagnostics())
			}
		}
	}
	for _, d := range ln.agents {
		_ = d.Send(wire.CmdExit)
		ended := false
		timeout := time.After(30 * time.Second)
		for !ended {
			select {
			case _, ok := <-d.after:
				ended = !ok
			case <-timeout:
				t.Fatalf("agent %s did not end when told to exit", d.id)
			}
		}
	}
}
