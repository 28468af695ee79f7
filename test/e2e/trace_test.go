//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Kubernetes launcher, end to end: real kubectl finds the plugin on
// PATH, the limited user (deploy/user-rbac.yaml only) runs it, the agents
// run in the real pods and on the real node.

// podtraceArgs is a trace's command line. Its agents end with the trace
// (--linger 0, first: a --linger among args wins), so that every test can
// check that nothing is left; the warm agent tests (warm_test.go) linger on
// purpose.
func podtraceArgs(args ...string) []string {
	return append([]string{"podtrace", "--linger", "0"}, append(args, "--image", agentImage, "--image-pull-policy", "Never")...)
}

// nodePods lists the node agent pods (admin view).
func nodePods(t *testing.T) []string {
	t.Helper()
	r := kubectl(t, adminConfig, "get", "pods", "-n", "podtrace-system", "-l", "app.kubernetes.io/managed-by=kubectl-podtrace", "-o", "name")
	if r.err != nil {
		t.Fatalf("list node pods: %s", r)
	}
	return strings.Fields(r.stdout)
}

func noNodePodsEventually(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "no node agent pod left", func() (bool, string) {
		p := nodePods(t)
		return len(p) == 0, strings.Join(p, " ")
	})
}

func ephemeralCount(t *testing.T, ns, name string) int {
	var p pod
	getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
	return len(p.Spec.EphemeralContainers)
}

// freshPod starts a workload pod that nothing has talked to yet, so that
// ARP caches and the bridge's FDB are cold for it; it is deleted at the end.
func freshPod(t *testing.T, ns string) string {
	t.Helper()
	name := uniqueName("fresh")
	spec := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + ns + `"},
"spec":{"nodeName":"` + nodeName + `","automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"workload","image":"` + env("WORKLOAD_IMAGE", "podtrace.local/workload:e2e") + `","imagePullPolicy":"Never"}]}}`
	cmd := exec.Command("kubectl", "--kubeconfig", adminConfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create %s: %v\n%s", name, err, out)
	}
	deleteAtCleanup(t, ns, name)
	eventually(t, 60*time.Second, name+" running", func() (bool, string) {
		var p pod
		getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
		return p.Status.Phase == "Running" && p.Status.PodIP != "", p.Status.Phase
	})
	return name
}

func TestClusterTraceDeliveredAsLimitedUser(t *testing.T) {
	dst := freshPod(t, "e2e")
	start := time.Now()
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/"+dst, "--color", "never")...)
	t.Logf("kubectl podtrace e2e/pod-a e2e/pod-b: %v\n%s", time.Since(start).Round(time.Millisecond), r)
	if r.err != nil {
		t.Fatalf("trace failed: %v", r.err)
	}
	for _, want := range []string{"ARP who-has", "is-at", "cni0", "flooded to", "ICMP echo request", "ICMP echo reply", "pod-a", dst, "verdict DELIVERED"} {
		// (No FDB line is required: a new pod's own first frames teach the
		// bridge its MAC before any trace can start.)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	noNodePodsEventually(t)
}

type jsonLine struct {
	Kind    string `json:"kind"`
	Journey int    `json:"journey"`
	ProbeID string `json:"probeId"`
	Reply   bool   `json:"reply"`
	Agent   string `json:"agent"`
	Role    string `json:"role"`
	Result  string `json:"result"`
	Answer  string `json:"answer"`
	Packet  *struct {
		ARP *struct {
			Op string `json:"op"`
		} `json:"arp"`
	} `json:"packet"`
}

func TestClusterTraceJSON(t *testing.T) {
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	var lines []jsonLine
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var j jsonLine
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		lines = append(lines, j)
	}
	last := lines[len(lines)-1]
	if last.Kind != "verdict" || last.Result != "delivered" || last.Answer != "echo-reply" {
		t.Fatalf("verdict %+v", last)
	}
	roles := map[bool][]string{}
	arp := 0
	for _, l := range lines {
		if l.Kind == "hop" && l.ProbeID == "icmp/1" {
			roles[l.Reply] = append(roles[l.Reply], l.Role)
		}
		if l.Kind == "hop" && l.Packet != nil && l.Packet.ARP != nil {
			arp++
		}
	}
	want := "pod eth0,host veth,bridge,host veth,pod eth0"
	for _, reply := range []bool{false, true} {
		if got := strings.Join(roles[reply], ","); got != want {
			t.Errorf("echo (reply %v) hops %s; want %s", reply, got, want)
		}
	}
	if arp == 0 {
		t.Logf("no ARP in this run (caches warm from an earlier trace)")
	}
	noNodePodsEventually(t)
}

func TestDryRunCreatesNothing(t *testing.T) {
	before := ephemeralCount(t, "e2e", "pod-a")
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--dry-run")...)
	if r.err != nil {
		t.Fatalf("dry run failed: %s", r)
	}
	for _, want := range []string{"ephemeralContainers", "hostNetwork: true", "nothing was created", "podtrace-system"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if after := ephemeralCount(t, "e2e", "pod-a"); after != before {
		t.Errorf("dry run added an ephemeral container: %d → %d", before, after)
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("dry run created node pods: %v", p)
	}
}

func TestCaptureAgentsUnderBaselineFailInPreflightAndCreateNothing(t *testing.T) {
	before := ephemeralCount(t, "e2e-baseline", "pod-a")
	r := kubectl(t, userConfig, podtraceArgs("e2e-baseline/pod-a", "e2e-baseline/pod-b", "--mode", "ephemeral")...)
	if r.err == nil {
		t.Fatalf("trace with capture agents in a baseline namespace succeeded:\n%s", r)
	}
	for _, want := range []string{`PodSecurity "baseline"`, `namespace "e2e-baseline"`, "pod-security.kubernetes.io/enforce", "--mode unprivileged", "--mode node --passive", "nothing was created"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := ephemeralCount(t, "e2e-baseline", "pod-a"); after != before {
		t.Errorf("preflight failure added an ephemeral container: %d → %d", before, after)
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("preflight failure created node pods: %v", p)
	}
}

func TestMissingPermissionIsNamed(t *testing.T) {
	// A user bound to the ClusterRole only, without the Role in the agent
	// namespace (impersonated by the admin).
	const user = "podtrace-e2e-half"
	kubectl(t, adminConfig, "delete", "clusterrolebinding", user, "--ignore-not-found")
	mustKubectl(t, adminConfig, "create", "clusterrolebinding", user, "--clusterrole=podtrace-user", "--user="+user)
	t.Cleanup(func() { kubectl(t, adminConfig, "delete", "clusterrolebinding", user) })
	r := kubectl(t, adminConfig, append(podtraceArgs("e2e/pod-a", "e2e/pod-b"), "--as", user)...)
	if r.err == nil {
		t.Fatalf("trace without the agent namespace role succeeded:\n%s", r)
	}
	for _, want := range []string{`create pods in namespace "podtrace-system"`, "deploy/user-rbac.yaml", "nothing was created"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestUnknownPodIsOneLine(t *testing.T) {
	r := kubectl(t, userConfig, podtraceArgs("e2e/no-such-pod", "e2e/pod-b")...)
	if r.err == nil {
		t.Fatal("unknown pod accepted")
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `pod "no-such-pod" not found in namespace "e2e"`) {
		t.Errorf("want one line naming the pod and namespace, got:\n%s", r.stderr)
	}
}

// startKubectl starts kubectl with args as the limited user, its stderr
// collected; the test kills it at its end if it still runs.
func startKubectl(t *testing.T, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+userConfig)
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, stderr
}

// interrupt sends SIGINT to a started kubectl (it execs the plugin: the
// signal reaches kubectl-podtrace itself) and waits for it to exit, failing
// the test after 30 s; it returns how long the exit took.
func interrupt(t *testing.T, cmd *exec.Cmd, stderr *strings.Builder) time.Duration {
	t.Helper()
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the plugin did not exit within 30 s of SIGINT:\n%s", stderr.String())
	}
	return time.Since(sent)
}

func TestInterruptDeletesTheNodePod(t *testing.T) {
	cmd, stderr := startKubectl(t, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--passive", "--duration", "60s")...)
	eventually(t, 60*time.Second, "the node agent pod to exist", func() (bool, string) {
		p := nodePods(t)
		return len(p) > 0 && strings.Contains(stderr.String(), "observing"), stderr.String()
	})
	t.Logf("exited %v after SIGINT", interrupt(t, cmd, stderr).Round(time.Millisecond))
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("node pods left after SIGINT: %v\n%s", p, stderr.String())
	}
}

// An interrupt while the agents start: the agent containers already added
// to the pods start all the same, and one never attached would wait for
// its first line until its deadline (a minute and more). The plugin ends
// them once they run, deletes the node pod, and says it was interrupted;
// both pods' containers of the session have exited within seconds, with
// and without --linger.
func TestInterruptWhileAgentsStartEndsThem(t *testing.T) {
	for _, linger := range []string{"0", "1m"} {
		t.Run("linger "+linger, func(t *testing.T) {
			pair := uniqueName("int")
			src, dst := pair+"-a", pair+"-b"
			workloadPod(t, "e2e", src)
			workloadPod(t, "e2e", dst)
			args := append(podtraceArgs("e2e/"+src, "e2e/"+dst), "--linger", linger) // the last --linger counts
			cmd, stderr := startKubectl(t, args...)
			added := regexp.MustCompile(`added agent container (podtrace-[0-9a-f]+)`)
			for end := time.Now().Add(60 * time.Second); len(added.FindAllStringSubmatch(stderr.String(), -1)) < 2; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("the agent containers were not added within 60 s:\n%s", stderr.String())
				}
			}
			t.Logf("exited %v after SIGINT", interrupt(t, cmd, stderr).Round(time.Millisecond))
			out := stderr.String()
			if strings.Contains(out, "all agents armed") {
				t.Fatalf("the interrupt came after the agents were armed: this test is about agents still starting\n%s", out)
			}
			if !strings.Contains(out, "ending the agent container") {
				t.Errorf("the output does not say it ends the agent containers added before the interrupt:\n%s", out)
			}
			if !strings.Contains(out, "interrupted") {
				t.Errorf("the output does not say the run was interrupted:\n%s", out)
			}
			if strings.Contains(out, "context canceled") {
				t.Errorf("the output says 'context canceled' where it should say interrupted:\n%s", out)
			}
			container := added.FindStringSubmatch(out)[1]
			for _, name := range []string{src, dst} {
				eventually(t, 15*time.Second, "the agent container "+container+" in "+name+" to exit", func() (bool, string) {
					var p pod
					getJSON(t, adminConfig, &p, "get", "pod", "-n", "e2e", name)
					st := p.ephemeralStatus(container)
					if st == nil {
						return false, "no status yet"
					}
					return st.State.Terminated != nil, fmt.Sprintf("%+v", st.State)
				})
			}
			if p := nodePods(t); len(p) != 0 {
				t.Errorf("node pods left after SIGINT: %v\n%s", p, out)
			}
		})
	}
}

// TestTimeToVerdict measures the time to a trace's verdict (the verdict
// line on stdout; and to the plugin's exit) against kubectl debug injecting
// an ephemeral container with the same image, waiting for it to run and
// attaching, and against the cluster's start floor for the containers a
// cold trace starts (startFloor), on the same cluster in the same run,
// alternating: cold traces
// (agents created for each) of a pair of pods started for the test, then
// warm reruns (the lingering agents of a first trace serve them: that
// nothing is created is checked), then cold traces of the suite's
// long-lived pods, which carry the dead agent containers of every earlier
// test (ephemeral containers stay in a pod for good, and the kubelet keeps
// a dead one of each: every sync of the pod reads them all). Figures, not
// assertions (timing_test.go prints where the time goes).
func TestTimeToVerdict(t *testing.T) {
	const runs = 10
	var verdict, exit, debug, floor, warmVerdict, warmExit, reused durations
	var timed, warmTimed []timedRun
	pair := uniqueName("ttv")
	src, dst := pair+"-a", pair+"-b"
	workloadPod(t, "e2e", src)
	workloadPod(t, "e2e", dst)
	for i := 0; i < runs; i++ {
		settle()
		r := timedTrace(t, "e2e/"+src, "e2e/"+dst)
		timed = append(timed, r)
		verdict, exit = append(verdict, r.verdict), append(exit, r.exit)
		settle()
		debug = append(debug, debugTime(t, src))
		settle()
		floor = append(floor, startFloor(t, map[string]string{src: nodeName, dst: nodeName}))
	}
	noNodePodsEventually(t)

	// Warm: a first trace leaves its agents (the pods' and the node's)
	// lingering; every rerun attaches to them.
	cleanupAtEnd(t, "e2e")
	if r := kubectl(t, userConfig, lingering("2m", "e2e/"+src, "e2e/"+dst, "-o", "json")...); r.err != nil {
		t.Fatalf("first trace: %s", r)
	}
	before := countObjects(t, "e2e", src, dst)
	for i := 0; i < runs; i++ {
		r := timedTrace(t, "e2e/"+src, "e2e/"+dst, "--linger", "2m")
		if !r.warm {
			t.Fatalf("rerun %d was not warm", i+1)
		}
		warmTimed = append(warmTimed, r)
		warmVerdict, warmExit = append(warmVerdict, r.verdict), append(warmExit, r.exit)
	}
	if after := countObjects(t, "e2e", src, dst); !before.same(after) {
		t.Errorf("warm reruns created objects: before %+v, after %+v", before, after)
	}
	mustKubectl(t, userConfig, "podtrace", "cleanup", "-n", "e2e")
	noNodePodsEventually(t)

	// Cold again, on pods that many traces used before.
	carried := ephemeralCount(t, "e2e", "pod-a")
	for i := 0; i < runs/2; i++ {
		settle()
		reused = append(reused, timedTrace(t, "e2e/pod-a", "e2e/pod-b").verdict)
	}
	t.Logf("same node, cold, pods started for the test: kubectl podtrace to verdict %v, to exit %v", verdict, exit)
	t.Logf("same node, warm rerun: kubectl podtrace to verdict %v, to exit %v", warmVerdict, warmExit)
	t.Logf("same node, cold, the suite's pod-a (%d dead ephemeral containers at the start) → pod-b: kubectl podtrace to verdict %v", carried, reused)
	t.Logf("same node: kubectl debug -i (inject, run, attach) %v", debug)
	t.Logf("same node: the cluster's start floor (the node pod and the two agent containers, each running only `podtrace-agent version`, from the first request until the pod status says they started) %v", floor)
	logBreakdown(t, "same node, cold", timed)
	logBreakdown(t, "same node, warm", warmTimed)
}

// Where PodSecurity forbids the agent in the pods, a passive trace in the
// default mode falls back to the node agents, says so, and injects nothing.
func TestPassiveFallsBackToNodeAgentsUnderBaseline(t *testing.T) {
	before := ephemeralCount(t, "e2e-baseline", "pod-a")
	r := kubectl(t, userConfig, podtraceArgs("e2e-baseline/pod-a", "e2e-baseline/pod-b", "--passive", "--duration", "2s", "--color", "never")...)
	if r.err != nil {
		t.Fatalf("passive trace under baseline failed:\n%s", r)
	}
	for _, want := range []string{`PodSecurity "baseline"`, "observing from the nodes only", "verdict OBSERVED"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
	if after := ephemeralCount(t, "e2e-baseline", "pod-a"); after != before {
		t.Errorf("an agent container was added under baseline: %d → %d", before, after)
	}
	noNodePodsEventually(t)
}

// An agent image the node cannot get is a clear error naming the image and
// what to do, shown as soon as the kubelet reports it, and nothing is left.
// (A tag of the repository the admission policy admits: the policy refuses
// any other repository before the kubelet sees it, TestPolicyForeignImage.)
func TestMissingAgentImageIsAClearError(t *testing.T) {
	image := agentImage[:strings.LastIndex(agentImage, ":")] + ":no-such-tag"
	start := time.Now()
	r := kubectl(t, userConfig, "podtrace", "e2e/pod-a", "e2e/pod-b", "--image", image, "--image-pull-policy", "Never", "--ready-timeout", "60s")
	if r.err == nil {
		t.Fatalf("a trace with a missing image succeeded:\n%s", r)
	}
	t.Logf("failed after %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{image, "cannot be pulled", "--image"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	noNodePodsEventually(t)
}
