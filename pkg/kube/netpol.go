package kube

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podtrace/kubectl-podtrace/pkg/policy"
)

// PolicyStatement reads what the NetworkPolicy model needs for a flow from
// src to dst (the NetworkPolicies of both namespaces and, when one of them
// has a namespaceSelector, both namespaces' labels) and asks the model. The
// error is one line saying what could not be read and why (for a refused
// permission, which grant of deploy/user-rbac.yaml gives it).
func PolicyStatement(ctx context.Context, cs kubernetes.Interface, src, dst *Target, flow policy.Flow) (policy.Statement, error) {
	lists := map[string][]networkingv1.NetworkPolicy{}
	nsSelectors := false
	for _, ns := range []string{src.Ref.Namespace, dst.Ref.Namespace} {
		if _, done := lists[ns]; done {
			continue
		}
		l, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return policy.Statement{}, policyReadError(err, fmt.Sprintf("list networkpolicies in namespace %q", ns), "list networkpolicies (networking.k8s.io) in the ClusterRole podtrace-user")
		}
		lists[ns] = l.Items
		for i := range l.Items {
			nsSelectors = nsSelectors || hasNamespaceSelector(&l.Items[i])
		}
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range []string{src.Ref.Namespace, dst.Ref.Namespace} {
		// The API server sets kubernetes.io/metadata.name on every
		// namespace: all a policy without a namespaceSelector needs.
		nsLabels[ns] = map[string]string{corev1.LabelMetadataName: ns}
		if !nsSelectors {
			continue
		}
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return policy.Statement{}, policyReadError(err, fmt.Sprintf("get namespace %q (a NetworkPolicy selects namespaces by label)", ns), "get namespaces in the ClusterRole podtrace-nodes")
		}
		nsLabels[ns] = n.Labels
	}
	in := policy.Input{
		Src: policyPod(src, nsLabels[src.Ref.Namespace]), Dst: policyPod(dst, nsLabels[dst.Ref.Namespace]),
		Flow: flow, SrcPolicies: lists[src.Ref.Namespace], DstPolicies: lists[dst.Ref.Namespace],
	}
	return policy.Evaluate(in)
}

func hasNamespaceSelector(np *networkingv1.NetworkPolicy) bool {
	for _, r := range np.Spec.Ingress {
		for _, p := range r.From {
			if p.NamespaceSelector != nil {
				return true
			}
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			if p.NamespaceSelector != nil {
				return true
			}
		}
	}
	return false
}

func policyPod(t *Target, nsLabels map[string]string) policy.Pod {
	p := policy.Pod{Namespace: t.Ref.Namespace, Name: t.Ref.Name, NamespaceLabels: nsLabels}
	if ip, err := netip.ParseAddr(t.IP); err == nil {
		p.IP = ip
	}
	if t.Pod != nil {
		p.Labels = t.Pod.Labels
		for _, c := range t.Pod.Spec.InitContainers {
			// sidecars (restartable init containers) run beside the
			// containers and serve their ports too
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				p.Ports = append(p.Ports, c.Ports...)
			}
		}
		for _, c := range t.Pod.Spec.Containers {
			p.Ports = append(p.Ports, c.Ports...)
		}
	}
	return p
}

func policyReadError(err error, what, grant string) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s: permission denied (deploy/user-rbac.yaml grants it: %s)", what, grant)
	}
	return Explain(err, what)
}
