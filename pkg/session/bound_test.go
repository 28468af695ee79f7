package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// fakeAgent plays a stream that a function writes into a pipe as the
// session reads it: nothing of it is held in the test.
type fakeAgent struct {
	r *io.PipeReader
}

func (a *fakeAgent) Stream() io.Reader          { return a.r }
func (a *fakeAgent) Send(string) error          { return nil }
func (a *fakeAgent) Stop(context.Context) error { return a.r.Close() }
func (a *fakeAgent) Diagnostics() string        { return "" }

type fakeLauncher struct {
	play    func(id string, w io.Writer)
	mu      sync.Mutex
	written map[string]*atomic.Int64
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (l *fakeLauncher) Start(_ context.Context, s launch.Spec) (launch.Agent, error) {
	r, w := io.Pipe()
	n := new(atomic.Int64)
	l.mu.Lock()
	l.written[s.ID] = n
	l.mu.Unlock()
	go func() {
		l.play(s.ID, countingWriter{w, n})
		w.Close()
	}()
	return &fakeAgent{r: r}, nil
}

func line(seq int, agent, kind, payload string) string {
	return fmt.Sprintf(`{"v":1,"seq":%d,"agent":%q,"kind":%q,"ts":"2026-12-01T10:00:00Z",%q:%s}`+"\n", seq, agent, kind, kind, payload)
}

func plan() Plan {
	probe := &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, Interval: time.Millisecond, Timeout: time.Second, ID: 4711}
	return Plan{
		Session: trace.Session{Src: trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: "10.244.0.2", Agent: "pod-a"},
			Dst: trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: "10.244.0.3", Agent: "pod-b"}, Probe: probe},
		Agents: []launch.Spec{{ID: "pod-a", Role: wire.RolePod, Probe: probe}, {ID: "pod-b", Role: wire.RolePod}},
	}
}

func TestSessionKeepsABoundedAmountOfAnAgentsFlood(t *testing.T) {
	const flood = 3 * MaxPacketLines
	pkt := `{"ts":"2026-12-01T10:00:00.000001Z","ifindex":2,"iface":"eth0","dir":"out","pkttype":"outgoing","len":106,"caplen":106,` +
		`"eth":{"src":"0a:58:0a:f4:00:02","dst":"0a:58:0a:f4:00:03","type":"ipv4"},"ip":{"version":4,"src":"10.244.0.2","dst":"10.244.0.3","id":%d,"ttl":64,"proto":"udp","len":92},` +
		`"l4":{"proto":"udp","sport":40000,"dport":8081,"payloadLen":64},"summary":"UDP 10.244.0.2:40000 > 10.244.0.3:8081 len 64","fp":"%016x"}`
	l := &fakeLauncher{written: map[string]*atomic.Int64{}, play: func(id string, w io.Writer) {
		seq := 1
		io.WriteString(w, line(seq, id, "hello", `{"role":"pod","netnsInode":1,"pid":1,"filter":"","snaplen":192,"deadline":"2026-12-01T10:01:00Z","links":[],"clock":"realtime"}`))
		if id == "pod-a" {
			for i := 0; i < flood; i++ {
				seq++
				io.WriteString(w, line(seq, id, "packet", fmt.Sprintf(pkt, i, i)))
			}
			seq++
			io.WriteString(w, line(seq, id, "probe", `{"id":"icmp/1","seq":1,"event":"reply","ts":"2026-12-01T10:00:00Z","done":true}`))
		}
		seq++
		io.WriteString(w, line(seq, id, "bye", `{"reason":"stopped"}`))
	}}
	var progress bytes.Buffer
	res, err := Run(context.Background(), l, plan(), Options{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	a := res.Streams[0]
	packets := 0
	for _, e := range a.Lines {
		if e.Kind == wire.KindPacket {
			packets++
		}
	}
	if packets != MaxPacketLines {
		t.Errorf("kept %d packet lines of %d; want the bound, %d", packets, flood, MaxPacketLines)
	}
	if a.Intake.CutLines != flood-MaxPacketLines || a.Intake.CutBytes == 0 {
		t.Errorf("cut %d lines (%d bytes); want %d", a.Intake.CutLines, a.Intake.CutBytes, flood-MaxPacketLines)
	}
	if want := l.written["pod-a"].Load(); a.Intake.ReceivedBytes != want {
		t.Errorf("received %d bytes; the agent wrote %d", a.Intake.ReceivedBytes, want)
	}
	if !strings.Contains(progress.String(), "podtrace: received ") || !strings.Contains(progress.String(), "from 2 agents (pod-a ") {
		t.Errorf("no received line in the progress:\n%s", progress.String())
	}
	var warned bool
	for _, w := range res.Trace.Warnings {
		warned = warned || strings.HasPrefix(w, "pod-a: the plugin kept what it could hold and set aside 20000 more lines")
	}
	if !warned {
		t.Errorf("the trace does not say what was set aside: %q", res.Trace.Warnings)
	}
}

func TestSessionSurvivesPayloadlessAndHostileLines(t *testing.T) {
	l := &fakeLauncher{written: map[string]*atomic.Int64{}, play: func(id string, w io.Writer) {
		for _, k := range []string{"hello", "topology", "packet", "change", "probe", "stats", "error", "bye"} {
			io.WriteString(w, `{"v":1,"kind":"`+k+`"}`+"\n")
		}
		io.WriteString(w, `{"v":1,"seq":1,"kind":"probe","probe":null}`+"\n")
		io.WriteString(w, "{"+strings.Repeat(" ", wire.MaxLine+1)+"}\n")
		io.WriteString(w, line(2, id, "hello", `{"role":"pod","links":[]}`))
		if id == "pod-a" {
			io.WriteString(w, line(3, id, "probe", `{"id":"icmp/1","seq":1,"event":"timeout","done":true}`))
		}
		io.WriteString(w, line(4, id, "bye", `{"reason":"stopped"}`))
	}}
	res, err := Run(context.Background(), l, plan(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := res.Streams[0].Intake
	if in.Invalid != 10 || !strings.Contains(in.InvalidReason, `"hello" line without its "hello" payload`) {
		t.Errorf("invalid %d (%q); want 10, the first a payload-less hello", in.Invalid, in.InvalidReason)
	}
	if res.Trace.Verdict.Result == "" {
		t.Error("no verdict")
	}
}

func TestMergeSkipsEnvelopesWithoutPayload(t *testing.T) {
	var lines []*wire.Envelope
	for _, k := range []string{"hello", "topology", "packet", "change", "probe", "stats", "error", "bye"} {
		lines = append(lines, &wire.Envelope{V: 1, Kind: k})
	}
	lines = append(lines, nil)
	tr := merge.Merge(plan().Session, []Stream{{Agent: "pod-a", Display: "pod-a", Lines: lines}})
	if tr.Verdict.Result == "" {
		t.Error("no verdict")
	}
}

// Stream is trace.Stream, for the test above.
type Stream = trace.Stream

// An agent of another stream version writes lines this plugin skips, and
// keeps running: the run ends at the arm timeout with an error that says
// why no hello came, not "no diagnostics".
func TestAgentOfAnotherStreamVersionIsNamedWithTheReason(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	l := &fakeLauncher{written: map[string]*atomic.Int64{}, play: func(id string, w io.Writer) {
		io.WriteString(w, `{"v":2,"seq":1,"agent":"`+id+`","kind":"hello","hello":{"role":"pod"}}`+"\n")
		<-release // still running, saying nothing this plugin reads
	}}
	_, err := Run(context.Background(), l, plan(), Options{ArmTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "was not armed within 10s: 1 invalid lines skipped (the first: stream version 2 is not supported (this plugin reads 1..1)") {
		t.Fatalf("Run: %v; want the arm timeout naming the skipped version 2 line", err)
	}
}
