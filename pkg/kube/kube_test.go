package kube

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"
)

func params() AgentParams {
	return AgentParams{Session: "ab12c", Image: "registry.example.com/podtrace-agent:v1", PullPolicy: corev1.PullIfNotPresent,
		PullSecrets: []string{"mirror"}, Capabilities: "capture", Deadline: 75 * time.Second, Namespace: "podtrace-system"}
}

func TestEphemeralContainerHasCaptureCapabilitiesOnly(t *testing.T) {
	ec := EphemeralContainer(params(), []string{"--role", "pod"})
	sc := ec.SecurityContext
	if ec.Name != "podtrace-ab12c" || ec.Command[0] != "/podtrace-agent" || !ec.Stdin || !ec.StdinOnce || ec.TTY {
		t.Errorf("container %+v", ec.EphemeralContainerCommon)
	}
	if sc.Privileged != nil || *sc.RunAsUser != 0 || *sc.RunAsNonRoot {
		t.Errorf("security context %+v: want root, not privileged", sc)
	}
	if diff := cmp.Diff(&corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW", "NET_ADMIN"}}, sc.Capabilities); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation %v; want false", sc.AllowPrivilegeEscalation)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem %v; want true (the agent writes nothing to disk)", sc.ReadOnlyRootFilesystem)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v; want RuntimeDefault", sc.SeccompProfile)
	}
	if ec.Resources.Limits != nil || ec.Resources.Requests != nil {
		t.Errorf("resources %+v: the API server refuses resources on ephemeral containers", ec.Resources)
	}
	p := params()
	p.Capabilities = "default"
	if sc := EphemeralContainer(p, nil).SecurityContext; sc.Capabilities != nil {
		t.Errorf("default capabilities must add none: %+v", sc.Capabilities)
	}
}

func TestNodePodIsPinnedBoundedAndLabelled(t *testing.T) {
	p := NodePod(params(), "node-1.example.com", []string{"--role", "node"})
	s := p.Spec
	switch {
	case s.NodeName != "node-1.example.com", !s.HostNetwork, s.RestartPolicy != corev1.RestartPolicyNever:
		t.Errorf("placement: %+v", s)
	case s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds != 105:
		t.Errorf("activeDeadlineSeconds %v; want the agent deadline + 30", s.ActiveDeadlineSeconds)
	case len(s.Tolerations) != 0:
		t.Errorf("tolerations %+v; the node has no taints, so want none", s.Tolerations)
	case p.Labels[ManagedByLabel] != "kubectl-podtrace" || p.Labels[SessionLabel] != "ab12c":
		t.Errorf("labels %v", p.Labels)
	case p.Namespace != "podtrace-system" || len(s.ImagePullSecrets) != 1 || s.ImagePullSecrets[0].Name != "mirror":
		t.Errorf("namespace %q pull secrets %v", p.Namespace, s.ImagePullSecrets)
	case *s.AutomountServiceAccountToken:
		t.Errorf("the agent needs no service account token")
	}
	c := s.Containers[0]
	if diff := cmp.Diff(EphemeralContainer(params(), nil).SecurityContext, c.SecurityContext); diff != "" {
		t.Errorf("node agent security context differs from the pod agent's (-pod +node):\n%s", diff)
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resources %+v; want requests and limits", c.Resources)
	}
	if len(s.Volumes) != 0 || len(c.VolumeMounts) != 0 || s.HostPID || s.HostIPC {
		t.Errorf("volumes %v mounts %v hostPID %v hostIPC %v; want none", s.Volumes, c.VolumeMounts, s.HostPID, s.HostIPC)
	}
	if len(p.Name) > 63 || !strings.HasPrefix(p.Name, "podtrace-ab12c-node-1") {
		t.Errorf("name %q", p.Name)
	}
	if NodePodName("s", "a-very-long-node-name-that-goes-on-and-on-and-on.example.com") == NodePodName("s", "a-very-long-node-name-that-goes-on-and-on-and-on.example.org") {
		t.Errorf("long node names that differ late must give different pod names")
	}
}

// A node agent tolerates the taints of its node, each as the node has it, and
// no others: not those of another node, not every taint.
func TestNodePodToleratesItsNodesTaintsOnly(t *testing.T) {
	p := params()
	p.NodeTaints = map[string][]corev1.Taint{
		"cp-1": {
			{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
			{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoExecute},
		},
		"gpu-1": {{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}},
	}
	want := []corev1.Toleration{
		{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoExecute},
	}
	got := NodePod(p, "cp-1", nil).Spec.Tolerations
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tolerations on cp-1 (-want +got):\n%s", diff)
	}
	// The scheduler's rule (a toleration matches a taint of the same key and
	// effect, with Exists or an equal value) agrees: each taint of cp-1 is
	// tolerated, the other node's is not.
	for _, taint := range p.NodeTaints["cp-1"] {
		if !tolerated(got, taint) {
			t.Errorf("taint %v of cp-1 is not tolerated by %+v", taint, got)
		}
	}
	if tolerated(got, p.NodeTaints["gpu-1"][0]) {
		t.Errorf("taint %v of another node is tolerated by %+v", p.NodeTaints["gpu-1"][0], got)
	}
	if got := NodePod(p, "plain-1", nil).Spec.Tolerations; len(got) != 0 {
		t.Errorf("a node without taints: tolerations %+v", got)
	}
}

func tolerated(tols []corev1.Toleration, taint corev1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(klog.Background(), &taint, false) {
			return true
		}
	}
	return false
}

func TestEphemeralPatchAddsOnlyTheContainer(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: "e2e"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	patch, err := EphemeralPatch(pod, EphemeralContainer(params(), []string{"--x"}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string][]map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		t.Fatalf("%v: %s", err, patch)
	}
	ecs := m["spec"]["ephemeralContainers"]
	if len(m) != 1 || len(m["spec"]) != 1 || len(ecs) != 1 || ecs[0]["name"] != "podtrace-ab12c" {
		t.Errorf("patch %s; want only spec.ephemeralContainers with the agent", patch)
	}
}

func TestPatchEphemeralUsesTheSubresourceAndDryRun(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: "e2e"}}
	cs := fake.NewClientset(pod)
	var got k8stesting.PatchActionImpl
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		got = a.(k8stesting.PatchActionImpl)
		return true, pod, nil
	})
	if err := PatchEphemeral(context.Background(), cs, pod, EphemeralContainer(params(), nil), true); err != nil {
		t.Fatal(err)
	}
	if got.GetSubresource() != "ephemeralcontainers" || got.GetPatchType() != "application/strategic-merge-patch+json" {
		t.Errorf("patched subresource %q type %q", got.GetSubresource(), got.GetPatchType())
	}
	if !cmp.Equal(got.PatchOptions.DryRun, []string{"All"}) {
		t.Errorf("dry run options %v", got.PatchOptions.DryRun)
	}
}

func TestErrorsSayWhatToDo(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	psa := apierrors.NewForbidden(gr, "pod-a", errors.New(`violates PodSecurity "baseline:latest": non-default capabilities (container "podtrace-ab12c" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`))
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{
		{"podsecurity", ExplainNS(psa, "add the capture agent to pod e2e-baseline/pod-a", "e2e-baseline"),
			[]string{`PodSecurity "baseline"`, `namespace "e2e-baseline"`, "pod-security.kubernetes.io/enforce=baseline", "NET_RAW"}},
		{"forbidden", Explain(apierrors.NewForbidden(gr, "pod-a", errors.New("no")), "read pod e2e/pod-a"),
			[]string{"permission denied", "deploy/user-rbac.yaml"}},
		{"unauthorized", Explain(apierrors.NewUnauthorized("token expired"), "read pod e2e/pod-a"), []string{"not logged in"}},
		{"unreachable", Explain(errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), "read pod e2e/pod-a"), []string{"unreachable", "--kubeconfig"}},
	} {
		msg := c.err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", c.name, msg, w)
			}
		}
	}
	if h := PodSecurityHint(ExplainNS(psa, "x", "e2e-baseline")); !strings.Contains(h, "--mode node --passive") {
		t.Errorf("hint %q", h)
	}
}

func TestEphemeralContainersDisabledIsRecognised(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: "e2e"}}
	cs := fake.NewClientset(pod)
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 404, Reason: metav1.StatusReasonNotFound, Message: "the server could not find the requested resource"}}
	})
	err := PatchEphemeral(context.Background(), cs, pod, EphemeralContainer(params(), nil), false)
	if !errors.Is(err, ErrEphemeralDisabled) {
		t.Fatalf("got %v; want ErrEphemeralDisabled", err)
	}
}

func TestResolveRefusesWhatCannotBeTraced(t *testing.T) {
	mk := func(name string, f func(p *corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e"},
			Spec:   corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.9"}}
		f(p)
		return p
	}
	cs := fake.NewClientset(
		mk("ok", func(*corev1.Pod) {}),
		mk("pending", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
		mk("hostnet", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		mk("noip", func(p *corev1.Pod) { p.Status.PodIP = "" }),
		mk("windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }),
	)
	for name, want := range map[string]string{
		"missing": `pod "missing" not found in namespace "e2e"`,
		"pending": "is Pending, not Running",
		"hostnet": "hostNetwork",
		"noip":    "no IP address yet",
		"windows": "Linux-only",
	} {
		_, err := Resolve(context.Background(), cs, Ref{Namespace: "e2e", Name: name})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", name, err, want)
		}
	}
	if tg, err := Resolve(context.Background(), cs, Ref{Namespace: "e2e", Name: "ok"}); err != nil || tg.IP != "10.244.0.9" || tg.Node != "n1" {
		t.Errorf("ok: %+v %v", tg, err)
	}
}

func TestCheckAccessNamesEveryMissingPermission(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = !(ra.Subresource == "ephemeralcontainers" || ra.Verb == "delete")
		return true, r, nil
	})
	err := CheckAccess(context.Background(), cs, Needs([]string{"e2e"}, true, "podtrace-system"))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range []string{`patch pods/ephemeralcontainers in namespace "e2e"`, `delete pods in namespace "podtrace-system"`, "missing 2 permission(s)", "deploy/user-rbac.yaml"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q lacks %q", err, w)
		}
	}
}

// A refusal by an admission policy names the policy and its message, as the
// API server sent them (the text is a real kube-apiserver v1.37 answer).
func TestExplainNamesTheAdmissionPolicy(t *testing.T) {
	const msg = `pods "pod-a" is forbidden: ValidatingAdmissionPolicy 'podtrace-agent-ephemeral' with binding 'podtrace-agent-ephemeral' denied request: the agent container is not privileged: privileged is forbidden`
	err := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: msg}}
	got := ExplainNS(err, "add the capture agent to pod e2e/pod-a", "e2e").Error()
	for _, want := range []string{`add the capture agent to pod e2e/pod-a: the admission policy "podtrace-agent-ephemeral" refuses it: the agent container is not privileged`, "deploy/README.md"} {
		if !strings.Contains(got, want) {
			t.Errorf("explained as %q; want %q in it", got, want)
		}
	}
	if strings.Contains(got, "permission denied") || strings.Contains(got, "bind the ClusterRole") {
		t.Errorf("explained as an RBAC refusal: %q", got)
	}
}

// A node the user may not read is no error: its taints are unknown, and
// the reason says which ClusterRole to bind.
func TestCheckNodeWithoutPermission(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"}}})
	n, err := CheckNode(context.Background(), cs, "n1")
	if err != nil || !n.Readable || len(n.Taints) != 1 || n.KubeletVersion != "v1.36.3" {
		t.Errorf("readable node: %+v, %v", n, err)
	}
	cs.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("RBAC: nope"))
	})
	n, err = CheckNode(context.Background(), cs, "n1")
	if err != nil || n.Readable || len(n.Taints) != 0 || n.KubeletVersion != "" || !strings.Contains(n.Why, "podtrace-nodes") {
		t.Errorf("forbidden node: %+v, %v", n, err)
	}
}

// The kubelets that report a started container in the pod status at once
// are those with the feature PLEGOnDemandRelist on by default: 1.36
// (beta) and later (GA in 1.37), as the Kubernetes feature gate table
// says; versions as nodes report them (status.nodeInfo.kubeletVersion),
// providers' suffixes included.
func TestReportsStartAtOnceFromKubelet136(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.37.2": true, "v1.36.0": true, "v1.36.5-eks-1a2b3c": true, "v1.36.2+k3s1": true, "v1.40.0": true, "v2.0.0": true,
		"v1.35.9": false, "v1.35.0-gke.100": false, "v1.9.11": false, "v1.3": false, "1.36.1": true,
		"": false, "v1": false, "vx.y": false, "v1.x": false,
	} {
		if got := ReportsStartAtOnce(v); got != want {
			t.Errorf("ReportsStartAtOnce(%q) = %v, want %v", v, got, want)
		}
	}
}

// --kernel-drops: the node agent adds BPF and PERFMON (an eBPF tracing
// program on Linux 5.8+) to the capture capabilities, and nothing else;
// without it, and in pods' ephemeral containers always, they are absent.
func TestKernelDropsAddBPFAndPerfmonToNodeAgentsOnly(t *testing.T) {
	p := params()
	if diff := cmp.Diff([]corev1.Capability{"NET_RAW", "NET_ADMIN"}, NodePod(p, "node-1", nil).Spec.Containers[0].SecurityContext.Capabilities.Add); diff != "" {
		t.Errorf("node agent without --kernel-drops (-want +got):\n%s", diff)
	}
	p.KernelDrops = true
	sc := NodePod(p, "node-1", nil).Spec.Containers[0].SecurityContext
	want := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW", "NET_ADMIN", "BPF", "PERFMON"}}
	if diff := cmp.Diff(want, sc.Capabilities); diff != "" {
		t.Errorf("node agent with --kernel-drops (-want +got):\n%s", diff)
	}
	if *sc.AllowPrivilegeEscalation || sc.Privileged != nil {
		t.Errorf("node agent with --kernel-drops escalates: %+v", sc)
	}
	if diff := cmp.Diff([]corev1.Capability{"NET_RAW", "NET_ADMIN"}, EphemeralContainer(p, nil).SecurityContext.Capabilities.Add); diff != "" {
		t.Errorf("ephemeral agent with --kernel-drops (-want +got):\n%s", diff)
	}
}

// The unprivileged pod agent meets each control of the Pod Security
// Standards' restricted profile (kubernetes.io/docs/concepts/security/
// pod-security-standards), listed here by hand: not privileged, no added
// capability outside NET_BIND_SERVICE and drop ALL, allowPrivilegeEscalation
// false, runAsNonRoot true and runAsUser not 0, seccomp RuntimeDefault or
// Localhost, no unmasked procMount, no SELinux type, no host ports. The node
// agent of the same run keeps its capture capabilities.
func TestUnprivilegedEphemeralContainerMeetsRestricted(t *testing.T) {
	p := params()
	p.Unprivileged = true
	ec := EphemeralContainer(p, []string{"--role", "pod", "--unprivileged"})
	sc := ec.SecurityContext
	if sc == nil {
		t.Fatal("no security context")
	}
	checks := []struct {
		control string
		ok      bool
	}{
		{"privileged", sc.Privileged == nil || !*sc.Privileged},
		{"capabilities", sc.Capabilities != nil && len(sc.Capabilities.Add) == 0 && cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})},
		{"allowPrivilegeEscalation", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
		{"runAsUser", sc.RunAsUser != nil && *sc.RunAsUser != 0},
		{"seccompProfile", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"procMount", sc.ProcMount == nil || *sc.ProcMount == corev1.DefaultProcMount},
		{"seLinuxOptions", sc.SELinuxOptions == nil},
		{"ports", len(ec.Ports) == 0},
		{"readOnlyRootFilesystem (the admission policy's)", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("restricted control %s not met: %+v", c.control, sc)
		}
	}
	if *sc.RunAsUser != 65534 || sc.RunAsGroup == nil || *sc.RunAsGroup != 65534 {
		t.Errorf("runs as %v:%v; want 65534:65534 (nobody)", sc.RunAsUser, sc.RunAsGroup)
	}
	node := NodePod(p, "node-1", nil).Spec.Containers[0].SecurityContext
	if node.Capabilities == nil || len(node.Capabilities.Add) != 2 || *node.RunAsUser != 0 {
		t.Errorf("node agent of an unprivileged run: %+v; want the capture agent's context", node)
	}
}
