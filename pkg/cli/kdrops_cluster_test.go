package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
)

// --kernel-drops in a cluster: the dry run shows the node agent pods with
// BPF and PERFMON added and the agent told to load the program; the pods'
// ephemeral agents get neither.
func TestDryRunWithKernelDropsShowsTheNodeAgentsCapabilities(t *testing.T) {
	cs, _ := fakeCluster(runningPod("e2e", "pod-a", "10.244.0.2", "node-1"), runningPod("shop", "pod-b", "10.244.1.3", "node-2"))
	var out, errOut bytes.Buffer
	o := clusterOptions(cs, "udp", &out, &errOut)
	o.DryRun, o.Port, o.KernelDrops = dryRunServer, 9000, true
	ctx := context.Background()
	if err := o.Complete(ctx, []string{"e2e/pod-a", "shop/pod-b"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for _, d := range strings.Split(out.String(), "\n---\n")[1:] {
		node := strings.Contains(d, "node agent pod")
		if node {
			nodes++
		}
		hasCaps := strings.Contains(d, "- BPF\n") && strings.Contains(d, "- PERFMON\n")
		hasFlag := strings.Contains(d, "- --kernel-drops\n")
		if hasCaps != node || hasFlag != node {
			t.Errorf("document (node agent: %v) has BPF and PERFMON: %v, --kernel-drops: %v\n%s", node, hasCaps, hasFlag, d)
		}
	}
	if nodes != 2 {
		t.Errorf("%d node agent pods; want 2", nodes)
	}
}

// Where the agent namespace's admission policy does not allow kernel
// drops, the server-side dry run of the node agent pod is refused with
// the policy's own message (read from deploy/admission-policy.yaml): the
// trace stops in one line that says what to do, and creates nothing.
func TestKernelDropsRefusedByTheAdmissionPolicyIsOneActionableLine(t *testing.T) {
	b, err := os.ReadFile("../../deploy/admission-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var msg string
	for line := range strings.SplitSeq(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "message: "); ok && strings.Contains(m, "PERFMON") {
			msg = strings.ReplaceAll(strings.Trim(m, `"`), `\"`, `"`)
		}
	}
	if msg == "" {
		t.Fatal("deploy/admission-policy.yaml has no message about PERFMON")
	}
	cs, writes := fakeCluster(runningPod("e2e", "pod-a", "10.244.0.2", "node-1"), runningPod("e2e", "pod-b", "10.244.0.3", "node-1"))
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// As the API server refuses it: ValidatingAdmissionPolicy
		// podtrace-agent-namespace, reason Forbidden.
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "podtrace-x",
			&policyDenial{"ValidatingAdmissionPolicy 'podtrace-agent-namespace' with binding 'podtrace-agent-namespace' denied request: " + msg})
	})
	var out, errOut bytes.Buffer
	o := clusterOptions(cs, "icmp", &out, &errOut)
	o.KernelDrops = true
	ctx := context.Background()
	if err := o.Complete(ctx, []string{"e2e/pod-a", "e2e/pod-b"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	err = o.Run(ctx)
	if err == nil {
		t.Fatal("the trace ran; want the preflight to stop it")
	}
	e := err.Error()
	t.Log(e)
	if strings.Contains(e, "\n") || !strings.Contains(e, "--kernel-drops needs capabilities BPF and PERFMON") ||
		!strings.Contains(e, `patch configmap podtrace-agent-policy`) || !strings.Contains(e, "nothing was created") {
		t.Errorf("error %q; want one line naming the capabilities, the ConfigMap to patch, and that nothing was created", e)
	}
	for _, w := range notDryRuns(*writes) {
		t.Errorf("%s was not a dry run", w)
	}
}

type policyDenial struct{ msg string }

func (p *policyDenial) Error() string { return p.msg }
