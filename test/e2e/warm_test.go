//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// Warm agents: a trace's agents linger after it (--linger), a rerun between
// the same pods with the same options reuses them and creates nothing, they
// end on their own at the end of their linger time, and cleanup ends them
// at once.

// lingering is a trace's arguments with its agents lingering (the suite's
// common arguments pass --linger 0: the last one given wins).
func lingering(linger string, args ...string) []string {
	return append(podtraceArgs(args...), "--linger", linger)
}

// objects is what a trace could create: the pods' ephemeral containers and
// the node agent pods.
type objects struct {
	ephemeral map[string]int
	nodePods  string
}

func countObjects(t *testing.T, ns string, pods ...string) objects {
	t.Helper()
	o := objects{ephemeral: map[string]int{}, nodePods: strings.Join(nodePods(t), " ")}
	for _, p := range pods {
		o.ephemeral[p] = ephemeralCount(t, ns, p)
	}
	return o
}

func (o objects) same(p objects) bool {
	if o.nodePods != p.nodePods || len(o.ephemeral) != len(p.ephemeral) {
		return false
	}
	for k, v := range o.ephemeral {
		if p.ephemeral[k] != v {
			return false
		}
	}
	return true
}

// cleanupAtEnd ends the warm agents in the namespace when the test ends, as
// the limited user, and checks that no node agent pod is left.
func cleanupAtEnd(t *testing.T, ns string) {
	t.Cleanup(func() {
		if r := kubectl(t, userConfig, "podtrace", "cleanup", "-n", ns); r.err != nil {
			t.Errorf("cleanup: %s", r)
		}
		noNodePodsEventually(t)
	})
}

// runningAgents lists the pod's agent containers still running.
func runningAgents(t *testing.T, ns, name string) []string {
	t.Helper()
	var p pod
	getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
	var out []string
	for _, ec := range p.Spec.EphemeralContainers {
		if st := p.ephemeralStatus(ec.Name); st != nil && st.State.Running != nil {
			out = append(out, ec.Name)
		}
	}
	return out
}

func TestWarmRerunCreatesNothing(t *testing.T) {
	src, dst := freshPod(t, "e2e"), freshPod(t, "e2e")
	cleanupAtEnd(t, "e2e")
	cold := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst, "--color", "never")...)
	if cold.err != nil {
		t.Fatalf("cold trace: %s", cold)
	}
	for _, want := range []string{"cold trace: no warm agent for", "stay warm until", "kubectl podtrace cleanup"} {
		if !strings.Contains(cold.stderr, want) {
			t.Errorf("cold trace's stderr lacks %q:\n%s", want, cold.stderr)
		}
	}
	if !strings.Contains(cold.stdout, "verdict DELIVERED") {
		t.Fatalf("cold trace not delivered:\n%s", cold)
	}
	if len(nodePods(t)) == 0 {
		t.Fatal("no node agent pod lingers after the cold trace")
	}

	for i := 0; i < 3; i++ {
		before := countObjects(t, "e2e", src, dst)
		warm := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst, "--color", "never")...)
		after := countObjects(t, "e2e", src, dst)
		t.Logf("rerun %d:\n%s", i+1, warm)
		if warm.err != nil {
			t.Fatalf("warm rerun: %s", warm)
		}
		if !strings.Contains(warm.stderr, "warm rerun on the agents of session") || strings.Contains(warm.stderr, "cold trace") {
			t.Errorf("rerun %d was not warm:\n%s", i+1, warm.stderr)
		}
		if !strings.Contains(warm.stdout, "verdict DELIVERED") || !strings.Contains(warm.stdout, "ICMP echo reply") {
			t.Errorf("warm rerun %d not delivered:\n%s", i+1, warm.stdout)
		}
		if !before.same(after) {
			t.Errorf("warm rerun %d created objects: before %+v, after %+v", i+1, before, after)
		}
	}

	// Another capture option is another trace: cold, and it says why.
	before := countObjects(t, "e2e", src, dst)
	other := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst, "--color", "never", "--snaplen", "256")...)
	if other.err != nil {
		t.Fatalf("trace with another snaplen: %s", other)
	}
	if !strings.Contains(other.stderr, "cold trace: the warm agents of") || !strings.Contains(other.stderr, "trace something else") {
		t.Errorf("a trace with another snaplen does not say why it is cold:\n%s", other.stderr)
	}
	if after := countObjects(t, "e2e", src, dst); after.ephemeral[src] != before.ephemeral[src]+1 {
		t.Errorf("the cold trace added %d agent containers to %s, want 1", after.ephemeral[src]-before.ephemeral[src], src)
	}
}

func TestWarmAgentsEndOnTheirOwn(t *testing.T) {
	src, dst := freshPod(t, "e2e"), freshPod(t, "e2e")
	cleanupAtEnd(t, "e2e")
	const linger = 5 * time.Second
	r := kubectl(t, userConfig, lingering(linger.String(), "e2e/"+src, "e2e/"+dst, "--color", "never")...)
	if r.err != nil {
		t.Fatalf("trace: %s", r)
	}
	ended := time.Now()
	if len(runningAgents(t, "e2e", src)) != 1 {
		t.Fatalf("the source pod's agent does not linger after the trace: %v", runningAgents(t, "e2e", src))
	}
	// Each agent exits by itself: the containers terminate, the node pods
	// succeed (their agent exited 0).
	eventually(t, 2*time.Minute, "every lingering agent exited", func() (bool, string) {
		a, b := runningAgents(t, "e2e", src), runningAgents(t, "e2e", dst)
		phases := mustKubectl(t, adminConfig, "get", "pods", "-n", "podtrace-system", "-l", "podtrace.dev/warm", "-o", "jsonpath={.items[*].status.phase}")
		return len(a) == 0 && len(b) == 0 && strings.Trim(strings.ReplaceAll(phases, "Succeeded", ""), " ") == "",
			"running: " + strings.Join(append(a, b...), ",") + "; node pods: " + phases
	})
	t.Logf("all agents exited within %v of the trace's end (linger %s)", time.Since(ended).Round(100*time.Millisecond), linger)
	var p pod
	getJSON(t, adminConfig, &p, "get", "pod", "-n", "e2e", src)
	for _, ec := range p.Spec.EphemeralContainers {
		if st := p.ephemeralStatus(ec.Name); st != nil && st.State.Terminated != nil && st.State.Terminated.ExitCode != 0 {
			t.Errorf("agent container %s exited with code %d", ec.Name, st.State.Terminated.ExitCode)
		}
	}

	// The next trace finds no warm agent, says so, and removes the node
	// pods whose agent exited.
	exited := nodePods(t)
	again := kubectl(t, userConfig, lingering(linger.String(), "e2e/"+src, "e2e/"+dst, "--color", "never")...)
	if again.err != nil {
		t.Fatalf("trace after the agents ended: %s", again)
	}
	if !strings.Contains(again.stderr, "cold trace: no warm agent for") {
		t.Errorf("the trace after the agents ended does not say why it is cold:\n%s", again.stderr)
	}
	eventually(t, 30*time.Second, "the exited node pods deleted", func() (bool, string) {
		left := nodePods(t)
		for _, e := range exited {
			for _, l := range left {
				if e == l {
					return false, strings.Join(left, " ")
				}
			}
		}
		return true, ""
	})
}

func TestCleanupEndsWarmAgents(t *testing.T) {
	src, dst := freshPod(t, "e2e"), freshPod(t, "e2e")
	r := kubectl(t, userConfig, lingering("10m", "e2e/"+src, "e2e/"+dst, "--color", "never")...)
	if r.err != nil {
		t.Fatalf("trace: %s", r)
	}
	if len(nodePods(t)) == 0 || len(runningAgents(t, "e2e", src)) != 1 || len(runningAgents(t, "e2e", dst)) != 1 {
		t.Fatalf("the agents do not linger: node pods %v, containers %v %v", nodePods(t), runningAgents(t, "e2e", src), runningAgents(t, "e2e", dst))
	}
	s := time.Now()
	c := kubectl(t, userConfig, "podtrace", "cleanup", "-n", "e2e")
	t.Logf("cleanup (%v):\n%s", time.Since(s).Round(time.Millisecond), c)
	if c.err != nil {
		t.Fatalf("cleanup: %s", c)
	}
	for _, want := range []string{"deleted pod podtrace-system/", "ended   warm agent container", "2 warm agent container(s) ended"} {
		if !strings.Contains(c.stdout, want) {
			t.Errorf("cleanup output lacks %q", want)
		}
	}
	noNodePodsEventually(t)
	eventually(t, 30*time.Second, "the agent containers ended", func() (bool, string) {
		a, b := runningAgents(t, "e2e", src), runningAgents(t, "e2e", dst)
		return len(a)+len(b) == 0, strings.Join(append(a, b...), ",")
	})
}

// A warm rerun interrupted during its probes (Ctrl-C) stops its run: the
// agents go back to waiting, and the next rerun is warm again. Its error
// says it was interrupted, then until when the agents stay warm, and
// nothing says so before.
func TestInterruptedWarmRerunLeavesTheAgentsIdle(t *testing.T) {
	src, dst := freshPod(t, "e2e"), freshPod(t, "e2e")
	cleanupAtEnd(t, "e2e")
	if r := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst)...); r.err != nil {
		t.Fatalf("first trace: %s", r)
	}
	cmd, stderr := startKubectl(t, lingering("2m", "e2e/"+src, "e2e/"+dst, "--count", "50", "--interval", "500ms")...)
	eventually(t, 60*time.Second, "the warm rerun probing", func() (bool, string) {
		s := stderr.String()
		return strings.Contains(s, "warm rerun") && strings.Contains(s, "probing"), s
	})
	interrupt(t, cmd, stderr)
	said := stderr.String()
	t.Logf("interrupted:\n%s", said)
	lines := strings.Split(strings.TrimSpace(said), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "error: interrupted") || !strings.Contains(last, "; the agents stay warm until ") ||
		!strings.Contains(last, "kubectl podtrace cleanup") || strings.Count(said, "stay warm") != 1 {
		t.Errorf("last line %q; want the error saying interrupted, then until when the agents stay warm, said once", last)
	}
	before := countObjects(t, "e2e", src, dst)
	r := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst, "--color", "never")...)
	if r.err != nil {
		t.Fatalf("rerun after the interrupted one: %s", r)
	}
	if !strings.Contains(r.stderr, "warm rerun on the agents of session") || !strings.Contains(r.stdout, "verdict DELIVERED") {
		t.Errorf("the rerun after an interrupted one is not a delivered warm rerun:\n%s", r)
	}
	if after := countObjects(t, "e2e", src, dst); !before.same(after) {
		t.Errorf("the rerun created objects: before %+v, after %+v", before, after)
	}
}
