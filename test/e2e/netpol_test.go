//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NetworkPolicies on a cluster that enforces them: kube-network-policies runs
// on every node (netpol.sh). The plugin's model (read by the limited user,
// deploy/user-rbac.yaml: list networkpolicies, get namespaces) names the
// policy that denies the probe; the live trace says where the probe died.
// Each test starts with no policy enforced on any node and ends the same way:
// it deletes its policies and waits until every node's engine selects no pod.

// The engine's nftables set of the local pods that policies select: it sends
// their new connections to userspace, where the policies are evaluated.
const (
	engineTable = "kube-network-policies"
	engineSet   = "podips-v4"
	engineQueue = "100" // netpol.sh's KNP_QUEUE
)

// onNode runs a command in node n's network namespace (1: the host's).
func onNode(n int, name string, args ...string) *exec.Cmd {
	if n == 1 {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + filepath.Join(stateDir, "netns", "node2"), "--", name}, args...)...)
}

// clusterNodes: the node numbers of the running cluster.
func clusterNodes() []int {
	if env("E2E_NODES", "2") == "2" {
		return []int{1, 2}
	}
	return []int{1}
}

// engineSelects lists the pod IPs node n's engine queues for evaluation.
func engineSelects(t *testing.T, n int) ([]string, error) {
	t.Helper()
	out, err := onNode(n, "nft", "-j", "list", "set", "inet", engineTable, engineSet).Output()
	if err != nil {
		return nil, fmt.Errorf("node %d: nft list set inet %s %s: %v (is the engine running?)", n, engineTable, engineSet, err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []any `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("node %d: nft -j: %v", n, err)
	}
	var ips []string
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			if s, ok := e.(string); ok {
				ips = append(ips, s)
			} else {
				return nil, fmt.Errorf("node %d: unexpected set element %v", n, e)
			}
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// waitEngineSelects waits until node n's engine queues the connections of
// exactly these pod IPs (none: no policy enforced there).
func waitEngineSelects(t *testing.T, n int, ips ...string) {
	t.Helper()
	want := append([]string(nil), ips...)
	sort.Strings(want)
	eventually(t, 60*time.Second, fmt.Sprintf("node %d's engine to select %v", n, want), func() (bool, string) {
		got, err := engineSelects(t, n)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%v", got)
	})
}

// engineQueueRule is the handle of node n's engine rule that queues the
// IPv4 packets whose field (saddr: from a selected pod, daddr: to one) is in
// its set, as nft lists it there.
func engineQueueRule(t *testing.T, n int, field string) uint64 {
	t.Helper()
	out, err := onNode(n, "nft", "-j", "-a", "list", "chain", "inet", engineTable, "postrouting").Output()
	if err != nil {
		t.Fatalf("node %d: nft list chain inet %s postrouting: %v", n, engineTable, err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Handle uint64           `json:"handle"`
				Expr   []map[string]any `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("node %d: nft -j: %v", n, err)
	}
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		var matches, queues bool
		for _, e := range o.Rule.Expr {
			if m, ok := e["match"].(map[string]any); ok {
				l, _ := m["left"].(map[string]any)
				p, _ := l["payload"].(map[string]any)
				if p["protocol"] == "ip" && p["field"] == field && m["right"] == "@"+engineSet {
					matches = true
				}
			}
			// nft -j writes the queue statement, or the xtables NFQUEUE
			// target the engine's rules are written as on this kernel
			// (config/knp-nft-queue.patch)
			if _, ok := e["queue"]; ok {
				queues = true
			}
			if x, ok := e["xt"].(map[string]any); ok && x["type"] == "target" && x["name"] == "NFQUEUE" {
				queues = true
			}
		}
		if matches && queues {
			return o.Rule.Handle
		}
	}
	t.Fatalf("node %d: no rule queues ip %s @%s:\n%s", n, field, engineSet, out)
	return 0
}

// queuedBy checks the live evidence of a probe the engine dropped: node's
// agent traced it to the engine's rule that queued it to userspace
// (handle, from nft on that node), and nothing more of it.
func queuedBy(t *testing.T, v verdictLine, what, node string, handle uint64) {
	t.Helper()
	d := v.Drop
	if d == nil {
		t.Errorf("%s: no netfilter evidence; want the engine's queue rule (handle %d) on %s", what, handle, node)
		return
	}
	t.Logf("%s: %s", what, d.Text)
	if d.Agent != node || d.Family != "inet" || d.Table != engineTable || d.Chain != "postrouting" || d.Handle != handle ||
		d.Verdict != "queue" || strconv.Itoa(d.Queue) != engineQueue ||
		!strings.Contains(d.Text, "queued to userspace NFQUEUE "+engineQueue+" by nftables inet "+engineTable+" postrouting rule") {
		t.Errorf("%s: drop %+v; want queued to NFQUEUE %s by %s's inet %s postrouting rule handle %d", what, *d, engineQueue, node, engineTable, handle)
	}
}

// engineHarness runs netpol.sh (stop, kill or up an engine).
func engineHarness(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("./netpol.sh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netpol.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("netpol.sh %s:\n%s", strings.Join(args, " "), out)
}

// policyTest starts a test that applies NetworkPolicies: none may be
// enforced before it (another test's would leak into it), and at its end,
// once its policies are deleted, the test waits until no node's engine
// selects any pod.
func policyTest(t *testing.T) {
	t.Helper()
	for _, n := range clusterNodes() {
		if ips, err := engineSelects(t, n); err != nil || len(ips) != 0 {
			t.Fatalf("before the test, node %d's engine selects %v (%v): a policy is left or the engine is not running", n, ips, err)
		}
	}
	t.Cleanup(func() {
		for _, n := range clusterNodes() {
			waitEngineSelects(t, n)
		}
	})
}

// applyPolicy creates a NetworkPolicy in namespace e2e with this spec (YAML,
// indented two spaces), deleted at the end of the test.
func applyPolicy(t *testing.T, prefix, specYAML string) string {
	t.Helper()
	name := uniqueName(prefix)
	spec := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ` + name + `, namespace: e2e}
spec:` + specYAML
	if r := kubectlIn(t, adminConfig, []byte(spec), "apply", "-f", "-"); r.err != nil {
		t.Fatalf("create NetworkPolicy %s: %s", name, r)
	}
	t.Cleanup(func() { deletePolicy(t, name) })
	return name
}

func deletePolicy(t *testing.T, name string) {
	t.Helper()
	if r := kubectl(t, adminConfig, "delete", "networkpolicy", "-n", "e2e", name, "--ignore-not-found"); r.err != nil {
		t.Errorf("delete NetworkPolicy %s: %s", name, r)
	}
}

// podIP reads a fixture pod's IP from the API.
func podIP(t *testing.T, name string) string {
	t.Helper()
	var p pod
	getJSON(t, adminConfig, &p, "get", "pod", "-n", "e2e", name)
	if p.Status.PodIP == "" {
		t.Fatalf("e2e/%s has no IP", name)
	}
	return p.Status.PodIP
}

// verdictLine is the part of the JSON verdict line these tests read.
type verdictLine struct {
	Kind     string `json:"kind"`
	Result   string `json:"result"`
	LastSeen string `json:"lastSeen"`
	NotSeen  string `json:"notSeen"`
	Reason   string `json:"reason"`
	Drop     *struct {
		Agent, Family, Table, Chain, Rule, Verdict, Text string
		Handle                                           uint64
		Queue                                            int
		Unavailable                                      bool
	} `json:"drop"`
	Policy *struct {
		Admitted     bool   `json:"admitted"`
		Statement    string `json:"statement"`
		Disagreement string `json:"disagreement"`
		Unavailable  string `json:"unavailable"`
	} `json:"policy"`
}

// traceJSON traces src → dst with a probe of proto/port as the limited user
// and returns the verdict line (exit status 0 delivered, 3 not delivered).
func traceJSON(t *testing.T, src, dst, proto, port string, extra ...string) verdictLine {
	t.Helper()
	r := kubectl(t, userConfig, podtraceArgs(append([]string{src, dst, "--proto", proto, "--port", port, "-o", "json"}, extra...)...)...)
	if ee, ok := r.err.(*exec.ExitError); r.err != nil && (!ok || ee.ExitCode() != 3) {
		t.Fatalf("trace %s → %s %s/%s failed: %s", src, dst, proto, port, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var v verdictLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil || v.Kind != "verdict" {
		t.Fatalf("last line is no verdict (%v): %s", err, lines[len(lines)-1])
	}
	if v.Policy == nil || v.Policy.Unavailable != "" {
		t.Fatalf("the limited user's trace has no policy model: %+v", v.Policy)
	}
	t.Logf("%s → %s %s/%s: %s (last seen %q, not seen %q; %s) · policy: %s · disagree: %q",
		src, dst, proto, port, v.Result, v.LastSeen, v.NotSeen, v.Reason, v.Policy.Statement, v.Policy.Disagreement)
	return v
}

// traceText is the same trace in the text output.
func traceText(t *testing.T, src, dst, proto, port string) string {
	t.Helper()
	r := kubectl(t, userConfig, podtraceArgs(src, dst, "--proto", proto, "--port", port, "--color", "never")...)
	if ee, ok := r.err.(*exec.ExitError); r.err != nil && (!ok || ee.ExitCode() != 3) {
		t.Fatalf("trace %s → %s %s/%s failed: %s", src, dst, proto, port, r)
	}
	t.Logf("%s", r.stdout)
	return r.stdout
}

// onNodeOf: a verdict place ("podtrace-e2e-node2 cni0 …") is on this node.
func onNodeOf(place, node string) bool { return strings.HasPrefix(place, node+" ") }

// An ingress policy on the destination (pod-b on node 1, pod-x on node 2)
// that admits only the named port udp-echo (UDP 8081 in the pods' spec): a
// TCP probe to 8080 is lost on the destination's node, and the trace names
// the policy; a UDP probe to 8081 is delivered and admitted by that rule.
func TestNetworkPolicyIngressDenyIsLostAndNamed(t *testing.T) {
	policyTest(t)
	name := applyPolicy(t, "deny-web", `
  podSelector: {matchExpressions: [{key: podtrace.io/e2e, operator: In, values: [pod-b, pod-x]}]}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: UDP, port: udp-echo}]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	type dst struct {
		pod, node string
		n         int
	}
	dsts := []dst{{"pod-b", nodeName, 1}}
	if len(clusterNodes()) == 2 {
		waitEngineSelects(t, 2, podIP(t, "pod-x"))
		dsts = append(dsts, dst{"pod-x", node2Name, 2})
	}
	for _, d := range dsts {
		v := traceJSON(t, "e2e/pod-a", "e2e/"+d.pod, "tcp", "8080")
		want := "denied by NetworkPolicy e2e/" + name + " (ingress, selects " + d.pod + "; no rule admits pod-a tcp/8080)"
		if v.Result != "lost" || v.Policy.Admitted || v.Policy.Statement != want || v.Policy.Disagreement != "" {
			t.Errorf("pod-a → %s tcp/8080: %s, policy %+v; want lost, %q and no disagreement", d.pod, v.Result, *v.Policy, want)
		}
		if !onNodeOf(v.LastSeen, d.node) {
			t.Errorf("pod-a → %s tcp/8080: last seen %q; want on the destination's node %s", d.pod, v.LastSeen, d.node)
		}
		// the live evidence: the destination node's engine rule for
		// packets to its selected pods queued it, and it never came back
		queuedBy(t, v, "pod-a → "+d.pod+" tcp/8080", d.node, engineQueueRule(t, d.n, "daddr"))
	}
	out := traceText(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	for _, want := range []string{
		"policy  denied by NetworkPolicy e2e/" + name + " (ingress, selects pod-b; no rule admits pod-a tcp/8080)",
		"queued to userspace NFQUEUE " + engineQueue + " by nftables inet " + engineTable + " postrouting rule",
		"verdict LOST",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text trace lacks %q", want)
		}
	}
	if strings.Contains(out, "disagree") {
		t.Errorf("text trace says the model and the live trace disagree")
	}

	// the named port admits the UDP probe
	v := traceJSON(t, "e2e/pod-a", "e2e/pod-b", "udp", "8081")
	want := "admitted: no policy selects pod-a for egress; udp/8081 ingress by e2e/" + name + " ingress rule 1"
	if v.Result != "delivered" || !v.Policy.Admitted || v.Policy.Statement != want || v.Policy.Disagreement != "" {
		t.Errorf("pod-a → pod-b udp/8081: %s, policy %+v; want delivered, %q", v.Result, *v.Policy, want)
	}
	noNodePodsEventually(t)
}

// A rule that admits the probe's port from the source: the probe is
// delivered and the model agrees; a probe to another port of the same pod is
// lost, denied by the same policy.
func TestNetworkPolicyAllowRuleDelivers(t *testing.T) {
	policyTest(t)
	name := applyPolicy(t, "allow-web", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}}]
    ports: [{protocol: TCP, port: 8080}]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	v := traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	want := "admitted: no policy selects pod-a for egress; tcp/8080 ingress by e2e/" + name + " ingress rule 1"
	if v.Result != "delivered" || !v.Policy.Admitted || v.Policy.Statement != want || v.Policy.Disagreement != "" {
		t.Errorf("pod-a → pod-b tcp/8080: %s, policy %+v; want delivered, %q", v.Result, *v.Policy, want)
	}
	v = traceJSON(t, "e2e/pod-a", "e2e/pod-b", "udp", "8081")
	want = "denied by NetworkPolicy e2e/" + name + " (ingress, selects pod-b; no rule admits pod-a udp/8081)"
	if v.Result != "lost" || v.Policy.Admitted || v.Policy.Statement != want || !onNodeOf(v.LastSeen, nodeName) {
		t.Errorf("pod-a → pod-b udp/8081: %s (last seen %q), policy %+v; want lost on %s, %q", v.Result, v.LastSeen, *v.Policy, nodeName, want)
	}
	noNodePodsEventually(t)
}

// An egress policy on the source side denies the probe on the source's node
// and is named as such; an egress rule whose namespaceSelector matches the
// namespace's labels (read by the limited user: get namespaces) and whose
// named port is the probe's admits it.
func TestNetworkPolicyEgressDenyAndNamespaceLabels(t *testing.T) {
	policyTest(t)
	dst := "pod-b"
	if len(clusterNodes()) == 2 {
		dst = "pod-x" // on the other node: the loss is the source node's
	}
	egress := applyPolicy(t, "deny-egress", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}
  policyTypes: [Egress]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-a"))
	v := traceJSON(t, "e2e/pod-a", "e2e/"+dst, "tcp", "8080")
	want := "denied by NetworkPolicy e2e/" + egress + " (egress, selects pod-a; no rule admits tcp/8080 to " + dst + ")"
	if v.Result != "lost" || v.Policy.Admitted || v.Policy.Statement != want || v.Policy.Disagreement != "" {
		t.Errorf("pod-a → %s tcp/8080: %s, policy %+v; want lost, %q and no disagreement", dst, v.Result, *v.Policy, want)
	}
	if !onNodeOf(v.LastSeen, nodeName) {
		t.Errorf("pod-a → %s tcp/8080: last seen %q; want on the source's node %s", dst, v.LastSeen, nodeName)
	}
	// queued by the source node's engine rule for packets from its selected pods
	queuedBy(t, v, "pod-a → "+dst+" tcp/8080", nodeName, engineQueueRule(t, 1, "saddr"))
	deletePolicy(t, egress)
	waitEngineSelects(t, 1)

	const label = "podtrace.io/e2e-team"
	mustKubectl(t, adminConfig, "label", "namespace", "e2e", label+"=blue")
	t.Cleanup(func() {
		if r := kubectl(t, adminConfig, "label", "namespace", "e2e", label+"-"); r.err != nil {
			t.Errorf("remove the label: %s", r)
		}
	})
	allow := applyPolicy(t, "allow-blue", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {`+label+`: blue}}, podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}}]
    ports: [{port: tcp-echo}]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-a"))
	v = traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	want = "admitted: tcp/8080 egress by e2e/" + allow + " egress rule 1; no policy selects pod-b for ingress"
	if v.Result != "delivered" || !v.Policy.Admitted || v.Policy.Statement != want || v.Policy.Disagreement != "" {
		t.Errorf("pod-a → pod-b tcp/8080: %s, policy %+v; want delivered, %q", v.Result, *v.Policy, want)
	}
	noNodePodsEventually(t)
}

// The policy admits the probe, but node 1's engine has crashed (SIGKILL):
// its nftables table stays and queues the new connections of the pods it
// selected to a queue no one reads, and the kernel drops them (the engine
// fails closed, its default). The live trace is lost on node 1 while the
// model admits the flow: the trace says they disagree. Restarted, the engine
// admits the same probe again and they agree.
func TestNetworkPolicyEngineDownDisagrees(t *testing.T) {
	policyTest(t)
	name := applyPolicy(t, "allow-web", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}}]
    ports: [{protocol: TCP, port: 8080}]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	engineHarness(t, "kill", "1")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			engineHarness(t, "up")
		}
	})
	// the world, not the plugin: the table is still there, its queue has no reader
	if _, err := engineSelects(t, 1); err != nil {
		t.Fatalf("the killed engine's table is gone: %v", err)
	}
	q, err := onNode(1, "cat", "/proc/net/netfilter/nfnetlink_queue").Output()
	if err != nil {
		t.Fatalf("read node 1's NFQUEUE bindings: %v", err)
	}
	for _, l := range strings.Split(string(q), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == engineQueue {
			t.Fatalf("queue %s is still bound after the kill: %s", engineQueue, l)
		}
	}

	admitted := "admitted: no policy selects pod-a for egress; tcp/8080 ingress by e2e/" + name + " ingress rule 1"
	v := traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	if v.Result != "lost" || !v.Policy.Admitted || v.Policy.Statement != admitted || !onNodeOf(v.LastSeen, nodeName) ||
		!strings.HasPrefix(v.Policy.Disagreement, "the probe was lost (last seen "+nodeName+" ") {
		t.Errorf("with the engine down: %s (last seen %q), policy %+v; want lost on %s, admitted, and a disagreement", v.Result, v.LastSeen, *v.Policy, nodeName)
	}
	out := traceText(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	if !strings.Contains(out, "policy  "+admitted) || !strings.Contains(out, "disagree: the probe was lost") {
		t.Errorf("text trace lacks the statement and the disagreement")
	}

	engineHarness(t, "up")
	restarted = true
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	v = traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	if v.Result != "delivered" || v.Policy.Disagreement != "" {
		t.Errorf("with the engine back: %s, disagreement %q; want delivered and none", v.Result, v.Policy.Disagreement)
	}
	noNodePodsEventually(t)
}

// The policy denies the probe, but node 1's engine has been stopped
// (SIGINT: it removes its nftables table, as when it is undeployed): the
// policy is not enforced there, the probe is delivered, and the trace says
// the model and the live result disagree. This is the disagreement a
// cluster without a working engine shows (a CNI that does not enforce
// NetworkPolicies). Restarted, the engine enforces it again and they agree.
func TestNetworkPolicyEngineStoppedDisagrees(t *testing.T) {
	policyTest(t)
	name := applyPolicy(t, "deny-all", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}
  policyTypes: [Ingress]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	engineHarness(t, "stop", "1")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			engineHarness(t, "up")
		}
	})
	// the world, not the plugin: node 1 has no engine table, nothing reads its queue
	if out, err := onNode(1, "nft", "list", "table", "inet", engineTable).CombinedOutput(); err == nil {
		t.Fatalf("the stopped engine's table is still there:\n%s", out)
	}
	denied := "denied by NetworkPolicy e2e/" + name + " (ingress, selects pod-b; no rule admits pod-a tcp/8080)"
	v := traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	if v.Result != "delivered" || v.Policy.Admitted || v.Policy.Statement != denied ||
		!strings.HasPrefix(v.Policy.Disagreement, "the probe was delivered (1 of 1) while the model denies it") {
		t.Errorf("with the engine stopped: %s, policy %+v; want delivered, %q and a disagreement", v.Result, *v.Policy, denied)
	}
	out := traceText(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	for _, want := range []string{"policy  " + denied, "disagree: the probe was delivered (1 of 1) while the model denies it", "verdict DELIVERED"} {
		if !strings.Contains(out, want) {
			t.Errorf("text trace lacks %q", want)
		}
	}

	engineHarness(t, "up")
	restarted = true
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	v = traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080")
	if v.Result != "lost" || v.Policy.Statement != denied || v.Policy.Disagreement != "" {
		t.Errorf("with the engine back: %s, policy %+v; want lost, %q and no disagreement", v.Result, *v.Policy, denied)
	}
	noNodePodsEventually(t)
}

// TestNetworkPolicyDenyTimeToVerdict: how long an ingress-denied trace takes
// to its verdict, as the limited user runs it, with the nodes tracing the
// probe through netfilter (--nftrace, the default: the verdict names the
// engine's rule) and without (figures, not assertions). The two series
// alternate, so that the cluster's load weighs on both alike.
func TestNetworkPolicyDenyTimeToVerdict(t *testing.T) {
	policyTest(t)
	applyPolicy(t, "deny-all", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}
  policyTypes: [Ingress]
`)
	waitEngineSelects(t, 1, podIP(t, "pod-b"))
	const runs = 5
	var with, without []time.Duration
	for i := 0; i < runs; i++ {
		for _, nft := range []bool{true, false} {
			s := time.Now()
			v := traceJSON(t, "e2e/pod-a", "e2e/pod-b", "tcp", "8080", "--nftrace="+strconv.FormatBool(nft))
			d := time.Since(s)
			if v.Result != "lost" {
				t.Fatalf("run %d (--nftrace=%v): %s; want lost", i, nft, v.Result)
			}
			if nft {
				with = append(with, d)
				if v.Drop == nil || v.Drop.Unavailable || v.Drop.Verdict != "queue" {
					t.Errorf("run %d: --nftrace did not name the engine's queue rule: %+v", i, v.Drop)
				}
			} else {
				without = append(without, d)
				if v.Drop == nil || !v.Drop.Unavailable {
					t.Errorf("run %d: --nftrace=false named a rule, or did not say why none: %+v", i, v.Drop)
				}
			}
		}
	}
	median := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2].Round(time.Millisecond)
	}
	t.Logf("ingress-denied tcp/8080 pod-a → pod-b to verdict (kubectl podtrace -o json, limited user, %d runs each, alternating): "+
		"median %v with --nftrace (the engine's rule named), %v with --nftrace=false; with %v, without %v",
		runs, median(with), median(without), with, without)
	noNodePodsEventually(t)
}
