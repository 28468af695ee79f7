package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/launch/local"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Mode unprivileged, the whole pipeline on this kernel: the plan `kubectl
// podtrace pod-a pod-b` builds against an API server (a fake one holding
// the lab's pods in a namespace labelled PodSecurity baseline) runs its
// prober in the lab's pod-a as uid 65534 without capabilities, and its node
// agent in the lab's node namespace. The probe is delivered; the node
// agent saw it at both host veths and the bridge; the pods' own eth0 is on
// the path as not observable, not captured, and nowhere a hop.
func TestUnprivilegedModeTracesFromTheNodeSide(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	// What containerd's enable_unprivileged_icmp sets in every pod.
	nettest.In(t, a.NetNS, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
	const nodeName = "node1"
	cs, writes := fakeCluster(runningPod("shop", "pod-a", a.IP, nodeName), runningPod("shop", "pod-b", b.IP, nodeName),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{EnforceLabel: "baseline"}}})
	var out, errOut bytes.Buffer
	o := NewClusterOptions(TraceOptions{IOStreams: genericiooptions.IOStreams{Out: &out, ErrOut: &errOut}})
	o.client = cs
	completeAsTyped(t, o, []string{"shop/pod-a", "shop/pod-b"}, "-o", "json", "--image", "registry.example.com/podtrace-agent:v1")
	ctx := context.Background()
	if err := o.preflight(ctx); err != nil {
		t.Fatal(err)
	}
	if o.mode != modeUnprivileged || !strings.Contains(errOut.String(), `podtrace: mode unprivileged: namespace "shop" enforces PodSecurity "baseline"`) {
		t.Fatalf("mode %q; stderr:\n%s", o.mode, errOut.String())
	}
	patched := 0
	for _, w := range *writes {
		if w.GetVerb() == "patch" {
			patched++
		}
	}
	if patched != 1 {
		t.Errorf("preflight dry-ran %d patches; want 1 (the source pod's prober)", patched)
	}
	plan := o.Plan(o.mode)
	if len(plan.Agents) != 2 || !plan.Agents[0].Unprivileged || plan.Agents[0].Role != wire.RolePod || plan.Agents[1].Role != wire.RoleNode {
		t.Fatalf("plan %+v; want the unprivileged prober and one node agent", plan.Agents)
	}
	plan.Agents[0].Target = a.Path
	plan.Agents[1].Target = l.Nodes[0].NetNS

	// uid 65534 must be able to run the agent binary.
	dir, err := os.MkdirTemp("", "podtrace-unpriv") // (t.TempDir's parent is 0700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(agentBinary)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "podtrace-agent")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if err := o.RunPlan(ctx, &local.Launcher{Binary: exe}, plan, nil); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	v := parseJSON(t, out.String())
	last := v[len(v)-1]
	if last.Result != "delivered" || last.Answer != "echo-reply" {
		t.Fatalf("verdict %+v\n%s", last, errOut.String())
	}
	var req []string
	for _, h := range journeyHops(v, func(h hopLine) bool { return h.Probe == "icmp/1" && !h.Reply }) {
		req = append(req, h.Role)
	}
	if strings.Join(req, ",") != "host veth,bridge,host veth" {
		t.Errorf("echo request hops %v; want pod-a's host veth, the bridge, pod-b's host veth", req)
	}
	var trace struct {
		Mode struct{ Name, Why string } `json:"mode"`
	}
	var path struct {
		Hops []struct{ Place, Label, Role, Status, Detail string } `json:"hops"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		switch {
		case strings.HasPrefix(line, `{"kind":"trace"`):
			mustUnmarshal(t, line, &trace)
		case strings.HasPrefix(line, `{"kind":"path"`):
			mustUnmarshal(t, line, &path)
		}
	}
	if trace.Mode.Name != "unprivileged" || !strings.Contains(trace.Mode.Why, `PodSecurity "baseline"`) {
		t.Errorf("trace mode %+v", trace.Mode)
	}
	var got []string
	for _, h := range path.Hops {
		got = append(got, h.Place+" "+h.Label+" "+h.Status)
	}
	want := []string{"pod-a eth0 not observable", "node1 " + a.HostVeth + " (pod-a) seen", "node1 cni0 seen", "node1 " + b.HostVeth + " (pod-b) seen", "pod-b eth0 not observable"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("path %q; want %q", got, want)
	}
	if len(path.Hops) > 0 && !strings.Contains(path.Hops[0].Detail, "not captured: the agent in pod-a runs unprivileged") {
		t.Errorf("pod-a's own hop: %+v", path.Hops[0])
	}
}

func mustUnmarshal(t *testing.T, line string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
}
