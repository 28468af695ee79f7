package cli

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podtrace/kubectl-podtrace/pkg/policy"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// denyWeb admits only TCP 80 to app=web pods of namespace shop.
func denyWeb() *networkingv1.NetworkPolicy {
	p80 := intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "deny-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p80}}}},
		}}
}

func dryRunWithPolicies(t *testing.T, react func(f *k8stesting.Fake), objs ...runtime.Object) string {
	t.Helper()
	a, b := runningPod("e2e", "pod-a", "10.244.0.2", "node-1"), runningPod("shop", "pod-b", "10.244.1.3", "node-2")
	b.Labels = map[string]string{"app": "web"}
	cs, _ := fakeCluster(append([]runtime.Object{a, b}, objs...)...)
	if react != nil {
		react(&cs.Fake)
	}
	return dryRun(t, cs, "tcp", 8080, "e2e/pod-a", "shop/pod-b")
}

func TestDryRunStatesTheNetworkPolicyModel(t *testing.T) {
	out := dryRunWithPolicies(t, nil, denyWeb())
	want := "# note: NetworkPolicy model: denied by NetworkPolicy shop/deny-web (ingress, selects pod-b; no rule admits pod-a tcp/8080)\n"
	if !strings.Contains(out, want) {
		t.Errorf("dry run lacks %q:\n%s", want, out)
	}
	out = dryRunWithPolicies(t, nil)
	want = "# note: NetworkPolicy model: admitted: no policy selects pod-a for egress; no policy selects pod-b for ingress\n"
	if !strings.Contains(out, want) {
		t.Errorf("dry run lacks %q:\n%s", want, out)
	}
}

func TestNetworkPolicyModelWithoutPermissionSaysSoAndTracesAnyway(t *testing.T) {
	forbid := func(f *k8stesting.Fake) {
		f.PrependReactor("list", "networkpolicies", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}, "", errors.New("no"))
		})
	}
	out := dryRunWithPolicies(t, forbid, denyWeb())
	want := `# note: NetworkPolicy model unavailable: list networkpolicies in namespace "e2e": permission denied (deploy/user-rbac.yaml grants it: list networkpolicies (networking.k8s.io) in the ClusterRole podtrace-user)` + "\n"
	if !strings.Contains(out, want) {
		t.Errorf("dry run lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "node agent pod on node node-2") {
		t.Errorf("the plan is not printed:\n%s", out)
	}
}

func TestNamespaceSelectorReadsNamespaceLabels(t *testing.T) {
	pol := denyWeb()
	pol.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e", Labels: map[string]string{"team": "blue"}}}
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	out := dryRunWithPolicies(t, nil, pol, ns, shop)
	want := "# note: NetworkPolicy model: admitted: no policy selects pod-a for egress; tcp/8080 ingress by shop/deny-web ingress rule 1\n"
	if !strings.Contains(out, want) {
		t.Errorf("dry run lacks %q:\n%s", want, out)
	}
}

func TestPolicyEvidenceSaysWhenTheLiveTraceDisagrees(t *testing.T) {
	denied := policy.Statement{Src: "e2e/pod-a", Dst: "shop/pod-b", Flow: policy.Flow{Protocol: "TCP", Port: 8080},
		Egress:  policy.Side{Direction: policy.Egress, Pod: "e2e/pod-a", Admitted: true},
		Ingress: policy.Side{Direction: policy.Ingress, Pod: "shop/pod-b", Selecting: []string{"shop/deny-web"}}}
	admitted := denied
	admitted.Ingress = policy.Side{Direction: policy.Ingress, Pod: "shop/pod-b", Admitted: true}
	delivered := trace.Verdict{Result: "delivered", Sent: 1, Delivered: 1}
	lostAtDst := trace.Verdict{Result: "lost", Sent: 1, LastSeen: "node-2 cni0 (+40 µs)"}
	lostInPod := trace.Verdict{Result: "lost", Sent: 1, LastSeen: "pod-a eth0 (+0 µs)"}
	for _, c := range []struct {
		name     string
		st       policy.Statement
		v        trace.Verdict
		disagree string // substring; "" for none
	}{
		{"delivered but denied", denied, delivered, "delivered (1 of 1) while the model denies it"},
		{"lost at the destination's node and denied", denied, lostAtDst, ""},
		{"delivered and admitted", admitted, delivered, ""},
		{"lost at the destination's node but admitted", admitted, lostAtDst, "lost (last seen node-2 cni0 (+40 µs)) while the model admits it"},
		{"lost before any node, admitted", admitted, lostInPod, ""},
	} {
		e := policyEvidence(c.st, nil, c.v, "node-1", "node-2")
		if e.Admitted != c.st.Admitted() || e.Statement != c.st.String() {
			t.Errorf("%s: evidence %+v does not carry the statement", c.name, e)
		}
		if (c.disagree == "") != (e.Disagreement == "") || !strings.Contains(e.Disagreement, c.disagree) {
			t.Errorf("%s: disagreement %q, want %q", c.name, e.Disagreement, c.disagree)
		}
	}
	e := policyEvidence(policy.Statement{}, errors.New(`list networkpolicies in namespace "e2e": permission denied`), delivered, "node-1", "node-2")
	if !strings.Contains(e.Unavailable, "permission denied") || e.Disagreement != "" {
		t.Errorf("unavailable model: %+v", e)
	}
}
