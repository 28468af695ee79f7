package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/lab"
)

// A watch's JSON lines, as a consumer reads them (docs/trace-json.md).
type watchLine struct {
	Kind     string `json:"kind"`
	Round    int    `json:"round"`
	Result   string `json:"result"`
	NotSeen  string `json:"notSeen"`
	LastSeen string `json:"lastSeen"`
	Sent     int    `json:"sent"`
	Deliv    int    `json:"delivered"`
	Hops     []struct {
		Agent   string `json:"agent"`
		Iface   string `json:"iface"`
		Toward  bool   `json:"toward"`
		Seen    bool   `json:"seen"`
		DeltaNs int64  `json:"deltaNs"`
	} `json:"hops"`
	Change *struct {
		Round       int      `json:"round"`
		Disappeared []string `json:"disappeared"`
		Appeared    []string `json:"appeared"`
	} `json:"change"`
	Watch *struct {
		Rounds      int  `json:"rounds"`
		Interrupted bool `json:"interrupted"`
		Hops        []struct {
			Agent  string  `json:"agent"`
			Iface  string  `json:"iface"`
			Toward bool    `json:"toward"`
			Sent   int     `json:"sent"`
			Seen   int     `json:"seen"`
			Loss   float64 `json:"lossPct"`
			Last   string  `json:"last"`
		} `json:"hops"`
		Changes []struct {
			Round       int      `json:"round"`
			Disappeared []string `json:"disappeared"`
		} `json:"changes"`
	} `json:"watch"`
}

// watchProcess runs the built plugin with args and hands each stdout
// line to each as it comes; it returns the lines, stderr and the exit
// code.
func watchProcess(t *testing.T, each func(watchLine), args ...string) (lines []watchLine, stderr string, code int) {
	t.Helper()
	return watchProcessCmd(t, nil, each, args...)
}

// watchProcessCmd is watchProcess that hands the started command to
// started first.
func watchProcessCmd(t *testing.T, started func(*exec.Cmd), each func(watchLine), args ...string) (lines []watchLine, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(pluginBinary(t), append(args, "--agent-binary", agentBinary)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if started != nil {
		started(cmd)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	got := make(chan string)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			got <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	var raw []string
	timeout := time.After(3 * time.Minute) // only a hang reaches it
read:
	for {
		select {
		case l, ok := <-got:
			if !ok {
				break read
			}
			raw = append(raw, l)
			var w watchLine
			if err := json.Unmarshal([]byte(l), &w); err != nil {
				t.Fatalf("stdout line %d is not JSON: %v\n%s", len(raw), err, l)
			}
			lines = append(lines, w)
			if each != nil {
				each(w)
			}
		case <-timeout:
			t.Fatalf("the watch did not end within 3 minutes:\n%s\n%s", strings.Join(raw, "\n"), errb.String())
		}
	}
	werr := cmd.Wait()
	close(done)
	if werr != nil {
		ee, ok := werr.(*exec.ExitError)
		if !ok {
			t.Fatal(werr)
		}
		code = ee.ExitCode()
	}
	t.Logf("podtrace %s → exit %d\n%s\n%s", strings.Join(args, " "), code, strings.Join(raw, "\n"), errb.String())
	return lines, errb.String(), code
}

// TestLabWatchCountFiveIsFiveDeliveredRounds runs `kubectl podtrace lab
// --watch --count 5 -o json` through the built binary: the trace line,
// five round lines numbered 1 to 5, each delivered across the lab's five
// hops each way, and a delivered verdict of 5 rounds; the lab is gone
// afterwards.
func TestLabWatchCountFiveIsFiveDeliveredRounds(t *testing.T) {
	lines, stderr, code := watchProcess(t, nil, "lab", "--watch", "--count", "5", "--interval", "200ms", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d; want 0 (delivered)", code)
	}
	if len(lines) != 7 || lines[0].Kind != "trace" || lines[6].Kind != "verdict" {
		t.Fatalf("%d lines; want a trace line, 5 round lines and the verdict", len(lines))
	}
	for i, l := range lines[1:6] {
		if l.Kind != "round" || l.Round != i+1 || l.Result != "delivered" {
			t.Errorf("line %d: kind %q round %d result %q; want round %d delivered", i+2, l.Kind, l.Round, l.Result, i+1)
		}
		// The bridge lab: pod-a eth0, pod-a's veth, cni0, pod-b's veth,
		// pod-b eth0, and the same back.
		seen := 0
		for _, h := range l.Hops {
			if h.Seen {
				seen++
			}
		}
		if seen != 10 {
			t.Errorf("round %d saw %d hops; want 10 (5 each way)", l.Round, seen)
		}
	}
	v := lines[6]
	if v.Result != "delivered" || v.Sent != 5 || v.Deliv != 5 || v.Watch == nil || v.Watch.Rounds != 5 {
		t.Fatalf("verdict %+v; want delivered, 5 of 5 rounds", v)
	}
	for _, h := range v.Watch.Hops {
		if h.Sent != 5 || h.Seen != 5 || h.Loss != 0 {
			t.Errorf("hop %s %s: sent %d seen %d loss %.1f; want 5, 5, 0", h.Agent, h.Iface, h.Sent, h.Seen, h.Loss)
		}
	}
	m := regexp.MustCompile(`building the bridge lab (\S+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr does not name the lab:\n%s", stderr)
	}
	if left, _ := lab.Leftovers(m[1]); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	assertNothingLeft(t, m[1])
}

// TestWatchShowsLossFromTheHopWhereADropRuleWasAdded: a watch across the
// bridge lab; after round 3 the test adds an nftables rule in the node's
// namespace that drops ICMP the bridge forwards to pod-b's veth. From
// then on, rounds are lost: pod-a's eth0 and pod-a's host veth keep
// seeing every probe, pod-b's host veth and eth0 see only the rounds
// before the rule (the topology the test built says which veth is
// whose), the lost rounds name pod-b's veth as not seen, and the path
// change is in the history at the first lost round.
func TestWatchShowsLossFromTheHopWhereADropRuleWasAdded(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	const rounds = 9
	ruleAfter := 0
	lines, _, code := watchProcess(t, func(w watchLine) {
		if w.Kind == "round" && w.Round == 3 {
			nft(t, node, fmt.Sprintf(`table bridge podtrace_watch_test {
  chain drop_to_pod { type filter hook forward priority 0; oifname "%s" ip protocol icmp drop; }
}`, b.HostVeth))
			ruleAfter = 3
		}
	}, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--watch", "--count", fmt.Sprint(rounds),
		"--interval", "300ms", "--wait", "500ms", "-o", "json")
	if ruleAfter == 0 {
		t.Fatal("round 3 never came")
	}
	if code != ExitLost {
		t.Errorf("exit %d; want %d (not every round delivered)", code, ExitLost)
	}
	// Round 4 may have left before the rule was in place; from round 5
	// on every probe meets it.
	var delivered, lost int
	firstLost := 0
	for _, w := range lines {
		if w.Kind != "round" {
			continue
		}
		switch {
		case w.Round <= 3 && w.Result != "delivered":
			t.Errorf("round %d %s before the rule; want delivered", w.Round, w.Result)
		case w.Round >= 5 && w.Result != "lost":
			t.Errorf("round %d %s after the rule; want lost", w.Round, w.Result)
		}
		if w.Result == "delivered" {
			delivered++
			continue
		}
		lost++
		if firstLost == 0 {
			firstLost = w.Round
		}
		if !strings.Contains(w.NotSeen, b.HostVeth) {
			t.Errorf("round %d: not seen %q; want pod-b's veth %s", w.Round, w.NotSeen, b.HostVeth)
		}
	}
	if delivered+lost != rounds || lost < rounds-4 {
		t.Fatalf("%d delivered and %d lost rounds; want %d rounds, at least %d lost", delivered, lost, rounds, rounds-4)
	}
	v := lines[len(lines)-1]
	if v.Kind != "verdict" || v.Result != "partial" || v.Watch == nil {
		t.Fatalf("last line %+v; want the verdict, partial", v)
	}
	// A host veth's row is labelled with its name (and its pod).
	row := func(veth string, toward bool) (sent, seen int) {
		for _, h := range v.Watch.Hops {
			if h.Toward == toward && (h.Iface == veth || strings.HasPrefix(h.Iface, veth+" ")) {
				return h.Sent, h.Seen
			}
		}
		t.Fatalf("no row for %s (toward %v) in %+v", veth, toward, v.Watch.Hops)
		return 0, 0
	}
	podRow := func(agent string, toward bool) (sent, seen int) {
		for _, h := range v.Watch.Hops {
			if h.Agent == agent && h.Iface == "eth0" && h.Toward == toward {
				return h.Sent, h.Seen
			}
		}
		t.Fatalf("no row for %s eth0 (toward %v)", agent, toward)
		return 0, 0
	}
	// Before the drop: every round seen.
	if sent, seen := podRow(a.NetNS, true); sent != rounds || seen != rounds {
		t.Errorf("pod-a eth0: sent %d seen %d; want %d, %d", sent, seen, rounds, rounds)
	}
	if sent, seen := row(a.HostVeth, true); sent != rounds || seen != rounds {
		t.Errorf("pod-a's veth %s: sent %d seen %d; want %d, %d", a.HostVeth, sent, seen, rounds, rounds)
	}
	// After it: only the delivered rounds.
	if sent, seen := row(b.HostVeth, true); sent != rounds || seen != delivered {
		t.Errorf("pod-b's veth %s: sent %d seen %d; want %d, %d (the delivered rounds)", b.HostVeth, sent, seen, rounds, delivered)
	}
	if sent, seen := podRow(b.NetNS, true); sent != rounds || seen != delivered {
		t.Errorf("pod-b eth0: sent %d seen %d; want %d, %d", sent, seen, rounds, delivered)
	}
	// The path change: at the first lost round, pod-b's veth and eth0
	// disappeared.
	found := false
	for _, c := range v.Watch.Changes {
		if c.Round == firstLost {
			found = true
			d := strings.Join(c.Disappeared, ", ")
			if !strings.Contains(d, b.HostVeth) || !strings.Contains(d, b.NetNS+" eth0") {
				t.Errorf("change at round %d: disappeared %q; want pod-b's veth %s and pod-b eth0", c.Round, d, b.HostVeth)
			}
		}
	}
	if !found {
		t.Errorf("no path change at round %d, the first lost one: %+v", firstLost, v.Watch.Changes)
	}
}

// TestWatchInterruptPrintsTheSummaryAndCleansUp: a watch without --count
// runs until interrupted; SIGINT after its second round ends it with the
// watch's verdict over the rounds shown (marked interrupted, exit 0: every
// round was delivered), and the lab it built is gone.
func TestWatchInterruptPrintsTheSummaryAndCleansUp(t *testing.T) {
	var cmd *exec.Cmd
	lines, stderr, code := watchProcessCmd(t, func(c *exec.Cmd) { cmd = c }, func(w watchLine) {
		if w.Kind == "round" && w.Round == 2 {
			_ = cmd.Process.Signal(os.Interrupt)
		}
	}, "lab", "--watch", "--interval", "200ms", "-o", "json")
	if code != 0 {
		t.Errorf("exit %d; want 0 (the rounds shown were delivered)", code)
	}
	v := lines[len(lines)-1]
	rounds := 0
	for _, l := range lines {
		if l.Kind == "round" {
			rounds++
		}
	}
	if v.Kind != "verdict" || v.Watch == nil || !v.Watch.Interrupted || v.Watch.Rounds != rounds || rounds < 2 || v.Sent != rounds || v.Result != "delivered" {
		t.Fatalf("last line %+v after %d rounds; want the verdict of the rounds shown, interrupted", v, rounds)
	}
	if !strings.Contains(stderr, "podtrace: interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr)
	}
	m := regexp.MustCompile(`building the bridge lab (\S+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr does not name the lab:\n%s", stderr)
	}
	assertNothingLeft(t, m[1])
}
