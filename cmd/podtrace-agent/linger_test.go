package main

// A lingering agent (--linger) on this machine's kernel: it serves runs one
// after another on one stdin, each a complete stream under its run token,
// refuses a second start while a run is in progress, and ends on its own
// after its linger time, at an exit line, and at its lifetime.

import (
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

func send(t *testing.T, p *proc, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
}

// runLines returns the lines of one run, in order.
func (p *proc) runLines(run string) []*wire.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*wire.Envelope
	for _, e := range p.lines {
		if e.Run == run {
			out = append(out, e)
		}
	}
	return out
}

func ofRun(run, kind string) func(*wire.Envelope) bool {
	return func(e *wire.Envelope) bool { return e.Run == run && e.Kind == kind }
}

// checkRun checks one run's stream: hello first, seq 1..N, the probe's
// outcome (a reply from the lab's other pod), bye stopped last.
func checkRun(t *testing.T, lines []*wire.Envelope, probeID int) {
	t.Helper()
	for i, e := range lines {
		if e.Seq != uint64(i+1) {
			t.Fatalf("run %s: line %d has seq %d, want %d (each run's stream starts afresh)", e.Run, i+1, e.Seq, i+1)
		}
	}
	checkLifecycle(t, lines, wire.ByeStopped)
	h := lines[0].Hello
	if h.Probe == nil || h.Probe.ID != probeID {
		t.Errorf("run %s: hello's probe %+v, want id %d", lines[0].Run, h.Probe, probeID)
	}
	replied := false
	for _, e := range lines {
		if e.Kind == wire.KindProbe && e.Probe.Event == "reply" {
			replied = true
		}
	}
	if !replied {
		t.Errorf("run %s: no probe reply in %d lines", lines[0].Run, len(lines))
	}
}

func TestLingerServesRunsInSequence(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const linger = 3 * time.Second
	p := start(t, true, "--netns", a.NetNS, "--role", "pod", "--id", "pod-a", "--hosts", a.IP+","+b.IP,
		"--control=stdin", "--deadline", "60s", "--linger", linger.String(), "--lifetime", "100s",
		"--probe", "icmp", "--dst", b.IP, "--probe-id", "4711")
	defer p.stdin.Close()

	// Run 1: armed from the arguments.
	send(t, p, wire.Start{Run: "r1"}.Line())
	p.waitLines("hello of r1", 1, ofRun("r1", wire.KindHello))
	send(t, p, wire.CmdProbe+" r1")
	p.waitLines("probe outcome of r1", 1, func(e *wire.Envelope) bool { return e.Run == "r1" && e.Kind == wire.KindProbe && e.Probe.Done })
	send(t, p, wire.CmdStop+" r1")
	p.waitLines("bye of r1", 1, ofRun("r1", wire.KindBye))

	// Run 2: its own probe identity, from the start line.
	spec := &wire.ProbeSpec{Proto: "icmp", Dst: b.IP, Count: 1, Interval: 200 * time.Millisecond, Timeout: time.Second, ID: 4812}
	send(t, p, wire.Start{Run: "r2", Probe: spec, Deadline: 30 * time.Second}.Line())
	p.waitLines("hello of r2", 1, ofRun("r2", wire.KindHello))
	// A stop for another run is not for this one; a start while it runs
	// is refused under the refused run's token.
	send(t, p, wire.CmdStop+" r1")
	send(t, p, wire.Start{Run: "r3"}.Line())
	p.waitLines("bye of refused r3", 1, ofRun("r3", wire.KindBye))
	send(t, p, wire.CmdProbe+" r2")
	p.waitLines("probe outcome of r2", 1, func(e *wire.Envelope) bool { return e.Run == "r2" && e.Kind == wire.KindProbe && e.Probe.Done })
	if n := p.count(ofRun("r2", wire.KindBye)); n != 0 {
		t.Fatalf("run r2 ended on a stop line for r1")
	}
	send(t, p, wire.CmdStop+" r2")
	p.waitLines("bye of r2", 1, ofRun("r2", wire.KindBye))
	lastBye := time.Now()

	// Nobody starts another run: it exits on its own after its linger time.
	code, _ := p.wait()
	idle := p.exited.Sub(lastBye)
	t.Logf("exited %d, %s after the last run's bye (linger %s)", code, idle.Round(time.Millisecond), linger)
	if code != 0 {
		t.Errorf("exit code %d, want 0\nstderr: %s", code, p.stderr.String())
	}
	if idle < linger-100*time.Millisecond { // the bye was read a little after it was written
		t.Errorf("exited %s after the last run, before its linger time %s", idle, linger)
	}

	checkRun(t, p.runLines("r1"), 4711)
	checkRun(t, p.runLines("r2"), 4812)
	r3 := p.runLines("r3")
	if len(r3) != 2 || r3[0].Kind != wire.KindError || r3[0].Error.Msg != wire.Busy+strconv.Quote("r2") || r3[1].Bye.Reason != wire.ByeBusy {
		t.Errorf("refused run r3: got %d lines %+v, want the busy error naming r2 and bye busy", len(r3), r3)
	}
	if n := len(p.lines); n != len(p.runLines("r1"))+len(p.runLines("r2"))+len(r3) {
		t.Errorf("%d lines outside the three runs", n-len(p.runLines("r1"))-len(p.runLines("r2"))-len(r3))
	}
}

func TestLingerEnds(t *testing.T) {
	l := newLab(t)
	n := node(t, l)
	for _, tc := range []struct {
		name string
		args []string
		end  func(p *proc)
	}{
		{"exit line while idle", []string{"--linger", "100s"}, func(p *proc) { send(t, p, wire.CmdExit) }},
		{"exit line during a run", []string{"--linger", "100s"}, func(p *proc) {
			send(t, p, wire.Start{Run: "r2", Match: &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 99}}.Line())
			p.waitLines("hello of r2", 1, ofRun("r2", wire.KindHello))
			send(t, p, wire.CmdExit)
		}},
		{"lifetime while idle", []string{"--linger", "100s", "--lifetime", "5s"}, func(*proc) {}},
		{"end of input while idle", []string{"--linger", "100s"}, func(p *proc) { _ = p.stdin.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, true, nodeAgent(n, append([]string{"--control=stdin", "--deadline", "60s", "--trace-probe", "icmp", "--probe-id", "98", "--count", "1"}, tc.args...)...)...)
			defer p.stdin.Close()
			send(t, p, wire.Start{Run: "r1"}.Line())
			p.waitLines("hello of r1", 1, ofRun("r1", wire.KindHello))
			send(t, p, wire.CmdStop+" r1")
			p.waitLines("bye of r1", 1, ofRun("r1", wire.KindBye))
			ended := time.Now()
			tc.end(p)
			code, _ := p.wait()
			t.Logf("exited %d, %s after the run", code, p.exited.Sub(ended).Round(time.Millisecond))
			if code != 0 {
				t.Errorf("exit code %d, want 0\nstderr: %s", code, p.stderr.String())
			}
			checkLifecycle(t, p.runLines("r1"), wire.ByeStopped)
			if r2 := p.runLines("r2"); len(r2) > 0 {
				checkLifecycle(t, r2, wire.ByeStopped)
				if h := r2[0].Hello; h.Filter == p.runLines("r1")[0].Hello.Filter {
					t.Errorf("run r2 traces probe id 99 with run r1's filter %q", h.Filter)
				}
			}
			if h := p.runLines("r1")[0].Hello; h.Linger != 100*time.Second || h.LingerCap.IsZero() {
				t.Errorf("hello linger %s, cap %s: want 100s and the end of its lifetime", h.Linger, h.LingerCap)
			}
		})
	}
}
