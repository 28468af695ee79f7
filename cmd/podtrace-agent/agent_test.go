package main

// Lifecycle tests of the real agent binary, run inside a lab's network
// namespaces on this machine's kernel (root). They check how the agent
// starts, stops and reports, and that it leaves the network as it found it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

var agentBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bin, cleanup, err := nettest.AgentBinary(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	agentBin = bin
	return m.Run()
}

// newLab builds a bridge lab and removes it at the end of the test,
// checking that none of its namespaces is left.
func newLab(t *testing.T) *lab.Lab {
	t.Helper()
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Build(ctx, lab.Options{Prefix: prefix, Topology: "bridge"})
	t.Cleanup(func() {
		if l != nil {
			if err := l.Teardown(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		left, err := lab.Leftovers(prefix)
		if err != nil {
			t.Error(err)
		}
		if len(left) != 0 {
			t.Errorf("leftover namespaces: %v", left)
			_, _ = lab.Purge(prefix)
		}
	})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	return l
}

func node(t *testing.T, l *lab.Lab) lab.Node {
	t.Helper()
	n, ok := l.Node("node1")
	if !ok {
		t.Fatal("lab has no node1")
	}
	return n
}

func pod(t *testing.T, l *lab.Lab, name string) lab.Pod {
	t.Helper()
	p, ok := l.Pod(name)
	if !ok {
		t.Fatalf("lab has no %s", name)
	}
	return p
}

// proc is a running agent and what it wrote.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	hello   chan struct{} // closed when the hello line arrived
	done    chan struct{} // closed when the process was reaped
	exited  time.Time
	waitErr error
	stderr  bytes.Buffer

	mu       sync.Mutex
	lines    []*wire.Envelope
	readErr  error
	gaps     uint64
	noise    []string
	readDone chan struct{}
	// lineBytes is the length of each line read, by sequence number.
	lineBytes map[uint64]int
}

// start runs the agent with args; withStdin gives it a pipe as stdin
// (closed by the test or at cleanup), else stdin is /dev/null.
func start(t *testing.T, withStdin bool, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, hello: make(chan struct{}), done: make(chan struct{}), readDone: make(chan struct{}), lineBytes: map[uint64]int{}}
	p.cmd = exec.Command(agentBin, args...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if withStdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s (pid %d)", strings.Join(args, " "), p.cmd.Process.Pid)
	if withStdin && strings.Contains(strings.Join(args, " "), "--control stdin") {
		// The agent writes nothing until its reader says it is there.
		if _, err := io.WriteString(p.stdin, "start\n"); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		defer close(p.readDone)
		r := wire.NewReader(out)
		once := sync.Once{}
		for {
			e, err := r.Next()
			p.mu.Lock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					p.readErr = err
				}
				p.gaps, p.noise = r.Gaps, r.Noise
				p.mu.Unlock()
				_, _ = io.Copy(io.Discard, out)
				return
			}
			p.lines = append(p.lines, e)
			p.lineBytes[e.Seq] = r.LineBytes
			p.mu.Unlock()
			if e.Kind == wire.KindHello {
				once.Do(func() { close(p.hello) })
			}
		}
	}()
	go func() {
		<-p.readDone // Wait closes the pipe: read everything first
		p.waitErr = p.cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// hang bounds every wait of these tests: they wait for events (hello, a
// line, the exit), and only an agent that hangs takes this long, however
// loaded the machine. How fast the agent is is a figure (make measure).
const hang = 2 * time.Minute

// waitHello waits until the agent armed its capture.
func (p *proc) waitHello() {
	p.t.Helper()
	select {
	case <-p.hello:
	case <-p.done:
		p.t.Fatalf("agent exited before hello: %v\nstderr: %s", p.waitErr, p.stderr.String())
	case <-time.After(hang):
		p.t.Fatalf("no hello within %v\nstderr: %s", hang, p.stderr.String())
	}
}

// count returns how many lines written so far satisfy ok.
func (p *proc) count(ok func(*wire.Envelope) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.lines {
		if ok(e) {
			n++
		}
	}
	return n
}

// waitLines waits until the agent wrote at least n lines that satisfy ok.
func (p *proc) waitLines(what string, n int, ok func(*wire.Envelope) bool) {
	p.t.Helper()
	for end := time.Now().Add(hang); p.count(ok) < n; time.Sleep(10 * time.Millisecond) {
		select {
		case <-p.done:
			p.t.Fatalf("agent exited before writing %d lines of %s (%d)\nstderr: %s", n, what, p.count(ok), p.stderr.String())
		default:
		}
		if time.Now().After(end) {
			p.t.Fatalf("agent wrote %d lines of %s in %v, want %d", p.count(ok), what, hang, n)
		}
	}
}

// wait waits for the agent to exit and returns its exit code and how long
// it ran. Only a hang fails it: an agent still running after hang.
func (p *proc) wait() (int, time.Duration) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(hang):
		p.t.Fatalf("agent still running %v after it was started: it hangs", time.Since(p.started).Round(time.Millisecond))
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		code = ee.ExitCode()
	} else if p.waitErr != nil {
		p.t.Fatal(p.waitErr)
	}
	return code, p.exited.Sub(p.started)
}

// stream checks the stream's framing (hello first, seq 1..N without gaps,
// bye last, nothing but observations) and returns its lines.
func (p *proc) stream() []*wire.Envelope {
	p.t.Helper()
	<-p.readDone
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readErr != nil {
		p.t.Fatalf("stream: %v", p.readErr)
	}
	if len(p.noise) != 0 {
		p.t.Errorf("lines that are not observations: %q", p.noise)
	}
	if p.gaps != 0 {
		p.t.Errorf("reader counted %d gaps", p.gaps)
	}
	for i, e := range p.lines {
		if e.Seq != uint64(i+1) {
			p.t.Fatalf("line %d has seq %d, want %d", i+1, e.Seq, i+1)
		}
	}
	return p.lines
}

// checkLifecycle checks a complete stream of a run that armed its capture:
// hello (v 1) first, a stats line before the final bye with the reason.
func checkLifecycle(t *testing.T, lines []*wire.Envelope, reason string) *wire.Stats {
	t.Helper()
	if len(lines) < 3 {
		t.Fatalf("stream has %d lines, want at least hello, stats, bye", len(lines))
	}
	first, last := lines[0], lines[len(lines)-1]
	if first.Kind != wire.KindHello || first.V != 1 || first.Hello == nil {
		t.Errorf("first line is %s v%d, want hello v1", first.Kind, first.V)
	}
	if last.Kind != wire.KindBye || last.Bye == nil {
		t.Fatalf("last line is %s, want bye", last.Kind)
	}
	if last.Bye.Reason != reason {
		t.Errorf("bye reason %q, want %q", last.Bye.Reason, reason)
	}
	var st *wire.Stats
	for _, e := range lines[:len(lines)-1] {
		switch e.Kind {
		case wire.KindStats:
			st = e.Stats
		case wire.KindBye:
			t.Errorf("bye at seq %d before the last line", e.Seq)
		case wire.KindError:
			t.Errorf("error in the stream: %+v", e.Error)
		}
	}
	if st == nil {
		t.Fatal("no stats line before bye")
	}
	return st
}

func nodeAgent(n lab.Node, extra ...string) []string {
	return append([]string{"--netns", n.NetNS, "--role", "node", "--id", "node1",
		"--hosts", "10.244.0.2,10.244.0.3"}, extra...)
}

// TestDeadline: an agent nobody stops ends on its own at its deadline, not
// before, and says so (bye deadline). That it ends soon after the deadline
// is a figure: only a hang fails here.
func TestDeadline(t *testing.T) {
	l := newLab(t)
	const deadline = 2 * time.Second
	p := start(t, false, nodeAgent(node(t, l), "--deadline", deadline.String(), "--control", "none")...)
	code, took := p.wait()
	t.Logf("exited %d after %v", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstderr: %s", code, p.stderr.String())
	}
	if took < deadline {
		t.Errorf("agent exited after %v, before its deadline of %v", took, deadline)
	}
	checkLifecycle(t, p.stream(), "deadline")
}

// TestDeadlineUnderFlood checks that a busy ring does not keep the agent
// past its deadline: pod-a floods pod-b (traffic the filter matches) from
// before the first flooded frame reaches the agent until after the agent
// exited, and the agent still ends with bye deadline. The test checks the
// flood did reach the agent: its frames are in the stream and in the
// kernel's counters.
func TestDeadlineUnderFlood(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const deadline = 3 * time.Second
	p := start(t, false, nodeAgent(node(t, l), "--deadline", deadline.String())...)
	p.waitHello()
	const port = 9
	isFlood := func(e *wire.Envelope) bool {
		return e.Kind == wire.KindPacket && e.Packet.L4 != nil && e.Packet.L4.Proto == "udp" && e.Packet.L4.DstPort == port
	}
	stop := make(chan struct{})
	sent := make(chan uint64, 1)
	var sending atomic.Uint64
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		n, err := flood(a.NetNS, net.JoinHostPort(b.IP, strconv.Itoa(port)), stop, &sending)
		if err != nil {
			t.Errorf("flood: %v", err)
		}
		sent <- n
	}()
	// The flood is on the agent's ring before the deadline could pass
	// (unless the machine is so loaded that the agent is gone already:
	// then the stream below says whether any flooded frame made it).
	func() {
		for end := time.Now().Add(hang); p.count(isFlood) == 0 && time.Now().Before(end); {
			select {
			case <-p.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	atFirst := sending.Load()
	code, took := p.wait()
	afterExit := sending.Load()
	close(stop)
	total := <-sent
	t.Logf("exited %d after %v; flood sent %d datagrams (%d when the first reached the stream, %d when the agent had exited)",
		code, took.Round(time.Millisecond), total, atFirst, afterExit)
	if code != 0 {
		t.Fatalf("exit code %d\nstderr: %s", code, p.stderr.String())
	}
	if took < deadline {
		t.Errorf("agent exited after %v, before its deadline of %v", took, deadline)
	}
	lines := p.stream()
	st := checkLifecycle(t, lines, "deadline")
	flooded := 0
	for _, e := range lines {
		if isFlood(e) {
			flooded++
		}
	}
	t.Logf("stats %+v; flooded datagrams in the stream: %d", *st, flooded)
	if flooded == 0 {
		t.Fatalf("no flooded datagram (udp to port %d) in the stream: the flood never reached the agent", port)
	}
	if st.Packets+st.Drops < uint64(flooded) {
		t.Errorf("the kernel counted %d packets and %d drops, fewer than the %d flooded datagrams in the stream", st.Packets, st.Drops, flooded)
	}
	if afterExit <= atFirst {
		t.Errorf("the flood sent nothing between its first frame in the stream and the agent's exit (%d, %d): the agent did not run under flood", atFirst, afterExit)
	}
}

// flood sends 64-byte datagrams from inside the namespace to dst until
// stop is closed, counting them in sent as it goes. The caller's goroutine
// must have locked its OS thread and never unlock it.
func flood(nsName, dst string, stop <-chan struct{}, sent *atomic.Uint64) (uint64, error) {
	h, err := netns.GetFromName(nsName)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return 0, err
	}
	to, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		return 0, err
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 64)
	var n uint64
	for {
		select {
		case <-stop:
			return n, nil
		default:
		}
		for range 256 {
			if _, err := c.WriteToUDP(buf, to); err == nil {
				n++
				sent.Store(n)
			}
		}
	}
}

func TestSignals(t *testing.T) {
	l := newLab(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, false, nodeAgent(node(t, l), "--deadline", "60s")...)
			p.waitHello()
			sent := time.Now()
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code, _ := p.wait()
			t.Logf("exited %d %v after %s", code, p.exited.Sub(sent).Round(time.Millisecond), sig)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstderr: %s", code, p.stderr.String())
			}
			checkLifecycle(t, p.stream(), "signal")
		})
	}
}

func TestControlStdin(t *testing.T) {
	l := newLab(t)
	for _, tc := range []struct {
		name string
		stop func(w io.WriteCloser) error
	}{
		{"eof", func(w io.WriteCloser) error { return w.Close() }},
		{"stop line", func(w io.WriteCloser) error {
			_, err := io.WriteString(w, "stop\n") // stdin stays open
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, true, nodeAgent(node(t, l), "--deadline", "60s", "--control", "stdin")...)
			defer p.stdin.Close()
			p.waitHello()
			sent := time.Now()
			if err := tc.stop(p.stdin); err != nil {
				t.Fatal(err)
			}
			code, _ := p.wait()
			t.Logf("exited %d %v after %s", code, p.exited.Sub(sent).Round(time.Millisecond), tc.name)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstderr: %s", code, p.stderr.String())
			}
			checkLifecycle(t, p.stream(), "stopped")
		})
	}
}

// TestPingFramesStreamedOrCountedAsDropped captures a few hundred echoes
// between two pods at the node and checks that every echo frame crossing
// the node is either in the stream or counted as dropped (by the kernel or
// by the agent's own budget), and that the stats say how many packet lines
// were written. Whether a loaded machine drops any is a figure, not a
// property: make measure reports drops under load.
func TestPingFramesStreamedOrCountedAsDropped(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	// No budget: every frame of 300 echoes is to be streamed.
	p := start(t, true, nodeAgent(node(t, l), "--deadline", "60s", "--control", "stdin", "--budget", "0")...)
	p.waitHello()
	const echoes = 300
	t0 := time.Now()
	for i := range echoes {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		_, err := nettest.Ping(ctx, a.NetNS, b.IP)
		cancel()
		if err != nil {
			t.Fatalf("echo %d: %v", i+1, err)
		}
	}
	t.Logf("%d echoes %s -> %s in %v", echoes, a.Name, b.Name, time.Since(t0).Round(time.Millisecond))
	_ = p.stdin.Close()
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit code %d\nstderr: %s", code, p.stderr.String())
	}
	lines := p.stream()
	st := checkLifecycle(t, lines, "stopped")
	var packets, echo uint64
	for _, e := range lines {
		if e.Kind == wire.KindPacket {
			packets++
			if e.Packet.L4 != nil && e.Packet.L4.Proto == "icmp" {
				echo++
			}
		}
	}
	t.Logf("stats %+v; packet lines %d, of them ICMP %d", *st, packets, echo)
	if st.Emitted == 0 || st.Emitted != packets {
		t.Errorf("stats say %d packets emitted, stream has %d packet lines", st.Emitted, packets)
	}
	// Each echo and reply crosses pod-a's host veth, the bridge and
	// pod-b's host veth: at least 2 x 2 x echoes ICMP frames at the node,
	// each one streamed or counted as dropped.
	if echo+st.Drops+st.Filtered < 4*echoes {
		t.Errorf("%d ICMP frames streamed, %d drops counted by the kernel, %d by the agent: want at least %d frames accounted for",
			echo, st.Drops, st.Filtered, 4*echoes)
	}
}

var promiscRE = regexp.MustCompile(`promiscuity (\d+)`)

func promiscuity(t *testing.T, ns, link string) int {
	t.Helper()
	m := promiscRE.FindStringSubmatch(nettest.Run(t, "ip", "-n", ns, "-d", "link", "show", link))
	if m == nil {
		t.Fatalf("no promiscuity in `ip -d link show %s`", link)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestLeavesPromiscuity checks that the bridge's promiscuity counter is
// raised while the agent runs and back where it was once it is gone, both
// after a clean exit and after SIGKILL.
func TestLeavesPromiscuity(t *testing.T) {
	l := newLab(t)
	n := node(t, l)
	for _, tc := range []struct {
		name string
		kill bool
	}{{"stopped", false}, {"SIGKILL", true}} {
		t.Run(tc.name, func(t *testing.T) {
			before := promiscuity(t, n.NetNS, n.Bridge)
			p := start(t, true, nodeAgent(n, "--deadline", "60s", "--control", "stdin")...)
			p.waitHello()
			during := promiscuity(t, n.NetNS, n.Bridge)
			if during != before+1 {
				t.Errorf("promiscuity of %s while capturing: %d, want %d", n.Bridge, during, before+1)
			}
			if tc.kill {
				_ = p.cmd.Process.Kill()
			} else {
				_ = p.stdin.Close()
			}
			code, _ := p.wait()
			after := promiscuity(t, n.NetNS, n.Bridge)
			t.Logf("%s promiscuity before %d, during %d, after %d (exit %d)", n.Bridge, before, during, after, code)
			if after != before {
				t.Errorf("promiscuity of %s after the agent: %d, want %d", n.Bridge, after, before)
			}
		})
	}
}

// TestBadInput checks that wrong flags and runtime failures end the agent
// with exit 1 and one line on stderr, and a fatal error and bye in the
// stream when it got as far as writing one.
func TestBadInput(t *testing.T) {
	l := newLab(t)
	n := node(t, l)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string // substring of the one stderr line
		stream bool   // fatal error + bye expected on stdout
	}{
		{"role", []string{"--netns", n.NetNS, "--role", "bogus"}, `--role "bogus"`, false},
		{"filter", []string{"--netns", n.NetNS, "--role", "node", "--hosts", "10.244.0.2,10.244.0.3", "--filter", "tcp port"}, "tcp port", true},
		{"node without hosts", []string{"--netns", n.NetNS, "--role", "node", "--filter", "udp"}, "needs --hosts", true},
		{"netns", []string{"--netns", "does-not-exist"}, "does-not-exist", false},
		{"probe port", []string{"--netns", n.NetNS, "--probe", "tcp", "--dst", "10.244.0.3"}, "--probe tcp needs --port", false},
		{"probe dst", []string{"--netns", n.NetNS, "--probe", "tcp"}, "--probe needs --dst", false},
		{"hosts", []string{"--netns", n.NetNS, "--hosts", "10.244.0.2,nope"}, `"nope" is not an IP address`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, false, append(tc.args, "--deadline", "10s")...)
			code, _ := p.wait()
			stderr := strings.TrimSpace(p.stderr.String())
			t.Logf("exit %d, stderr: %s", code, stderr)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if strings.Count(stderr, "\n") != 0 || !strings.HasPrefix(stderr, "podtrace-agent: ") || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q: want one line \"podtrace-agent: ...\" containing %q", stderr, tc.stderr)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Errorf("stderr looks like a panic: %s", stderr)
			}
			lines := p.stream()
			if !tc.stream {
				if len(lines) != 0 {
					t.Errorf("stream has %d lines, want none (first: %s)", len(lines), lines[0].Kind)
				}
				return
			}
			if len(lines) < 2 {
				t.Fatalf("stream has %d lines, want a fatal error and bye", len(lines))
			}
			e, bye := lines[len(lines)-2], lines[len(lines)-1]
			if e.Kind != wire.KindError || !e.Error.Fatal || !strings.Contains(e.Error.Msg, tc.stderr) {
				t.Errorf("second last line %s %+v, want a fatal error about %q", e.Kind, e.Error, tc.stderr)
			}
			if bye.Kind != wire.KindBye || bye.Bye.Reason != "error" {
				t.Errorf("last line %s %+v, want bye error", bye.Kind, bye.Bye)
			}
			for _, x := range lines {
				if x.Kind == wire.KindHello {
					t.Errorf("hello at seq %d although capture was never armed", x.Seq)
				}
			}
		})
	}
}

// sendUDP sends n datagrams of size bytes from inside the namespace to
// dst. The socket is opened on a thread that joined the namespace and is
// never returned to the scheduler (its goroutine exits locked).
func sendUDP(t *testing.T, nsName, dst string, n, size int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		errc <- func() error {
			h, err := netns.GetFromName(nsName)
			if err != nil {
				return err
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				return err
			}
			to, err := net.ResolveUDPAddr("udp4", dst)
			if err != nil {
				return err
			}
			// Unconnected: the port unreachable errors that come back
			// (nobody listens) are not reported on later writes.
			c, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return err
			}
			defer c.Close()
			buf := bytes.Repeat([]byte{0xa5}, size)
			for range n {
				if _, err := c.WriteToUDP(buf, to); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("send UDP from %s to %s: %v", nsName, dst, err)
	}
}

// TestSnaplen checks that frames are cut to headers by default and kept
// whole with --payload.
func TestSnaplen(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const size, port = 1000, 40123
	for _, tc := range []struct {
		name    string
		payload bool
	}{{"headers", false}, {"payload", true}} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--netns", b.NetNS, "--role", "pod", "--id", "pod-b",
				"--hosts", a.IP + "," + b.IP, "--deadline", "30s", "--control", "stdin"}
			if tc.payload {
				args = append(args, "--payload")
			}
			p := start(t, true, args...)
			p.waitHello()
			sendUDP(t, a.NetNS, net.JoinHostPort(b.IP, strconv.Itoa(port)), 3, size)
			p.waitLines("UDP datagrams to the port", 3, func(e *wire.Envelope) bool {
				return e.Kind == wire.KindPacket && e.Packet.L4 != nil && e.Packet.L4.Proto == "udp" && e.Packet.L4.DstPort == port
			})
			_ = p.stdin.Close()
			if code, _ := p.wait(); code != 0 {
				t.Fatalf("exit code %d\nstderr: %s", code, p.stderr.String())
			}
			lines := p.stream()
			checkLifecycle(t, lines, "stopped")
			seen := 0
			for _, e := range lines {
				pk := e.Packet
				if e.Kind != wire.KindPacket || pk.L4 == nil || pk.L4.Proto != "udp" || pk.L4.DstPort != port {
					continue
				}
				seen++
				t.Logf("%s %s len %d caplen %d frame %d bytes: %s", pk.Iface, pk.Dir, pk.Len, pk.CapLen, len(pk.Frame), pk.Summary)
				if pk.Len < size {
					t.Errorf("len %d, want >= %d", pk.Len, size)
				}
				if tc.payload && pk.CapLen != pk.Len {
					t.Errorf("caplen %d with --payload, want len %d", pk.CapLen, pk.Len)
				}
				if !tc.payload && (pk.CapLen != 14+20+8 || len(pk.Frame) != pk.CapLen) {
					t.Errorf("caplen %d, frame of %d bytes by default; want the headers only: Ethernet, IPv4, UDP (42)", pk.CapLen, len(pk.Frame))
				}
			}
			if seen == 0 {
				t.Fatalf("no UDP datagram to port %d in the stream", port)
			}
		})
	}
}

// TestNodeFilterStaysWithinTheTracedHosts: a node agent sees every pod of
// its node, so a user's --filter must not widen what it captures beyond the
// traced endpoints. With --hosts pod-a,pod-b and --filter udp, UDP between
// pod-c and the bridge's address (10.244.0.1, the pods' gateway) never
// reaches the stream, while UDP from pod-a to pod-b, sent after it through
// the same bridge, does.
func TestNodeFilterStaysWithinTheTracedHosts(t *testing.T) {
	l := newLab(t)
	n := node(t, l)
	a, b, c := pod(t, l, "pod-a"), pod(t, l, "pod-b"), pod(t, l, "pod-c")
	const otherPort, tracedPort = 40201, 40202
	p := start(t, true, "--netns", n.NetNS, "--role", "node", "--id", "node1", "--hosts", a.IP+","+b.IP,
		"--filter", "udp", "--deadline", "60s", "--control", "stdin")
	p.waitHello()
	sendUDP(t, c.NetNS, net.JoinHostPort("10.244.0.1", strconv.Itoa(otherPort)), 5, 100)
	sendUDP(t, a.NetNS, net.JoinHostPort(b.IP, strconv.Itoa(tracedPort)), 3, 100)
	p.waitLines("UDP from pod-a to pod-b", 3, func(e *wire.Envelope) bool {
		return e.Kind == wire.KindPacket && e.Packet.L4 != nil && e.Packet.L4.Proto == "udp" && e.Packet.L4.DstPort == tracedPort
	})
	_ = p.stdin.Close()
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit code %d\nstderr: %s", code, p.stderr.String())
	}
	lines := p.stream()
	checkLifecycle(t, lines, "stopped")
	if h := lines[0].Hello; !strings.Contains(h.Filter, "(udp) and (") || !strings.Contains(h.Filter, a.IP) {
		t.Errorf("hello filter %q: want udp ANDed with the traced hosts", h.Filter)
	}
	var other, traced int
	for _, e := range lines {
		if e.Kind != wire.KindPacket || e.Packet.IP == nil {
			continue
		}
		switch {
		case e.Packet.IP.Src == c.IP || e.Packet.IP.Dst == c.IP:
			other++
			t.Errorf("pod-c's traffic in a trace of pod-a and pod-b: %s on %s", e.Packet.Summary, e.Packet.Iface)
		case e.Packet.L4 != nil && e.Packet.L4.DstPort == tracedPort:
			traced++
		}
	}
	t.Logf("filter %q: %d frames of pod-a → pod-b, %d of pod-c → 10.244.0.1", lines[0].Hello.Filter, traced, other)

	// Without --hosts a node agent does not start, with or without a filter.
	for _, args := range [][]string{{"--filter", "udp"}, nil} {
		q := start(t, false, append([]string{"--netns", n.NetNS, "--role", "node", "--deadline", "10s"}, args...)...)
		code, _ := q.wait()
		if stderr := q.stderr.String(); code != 1 || !strings.Contains(stderr, "needs --hosts") {
			t.Errorf("node agent %v without --hosts: exit %d, stderr %q; want 1 and \"needs --hosts\"", args, code, stderr)
		}
	}
}
