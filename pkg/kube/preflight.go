package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
)

// Access is one permission a run needs, and why.
type Access struct {
	Verb        string
	Resource    string
	Subresource string
	Namespace   string
	Why         string
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Namespace == "" {
		return fmt.Sprintf("%s %s", a.Verb, r)
	}
	return fmt.Sprintf("%s %s in namespace %q", a.Verb, r, a.Namespace)
}

// Needs lists the permissions of a run: pod agents in the pods'
// namespaces (when injecting), node agents in the agent namespace.
func Needs(podNamespaces []string, inject bool, agentNS string) []Access {
	var out []Access
	seen := map[string]bool{}
	for _, ns := range podNamespaces {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		out = append(out, Access{"get", "pods", "", ns, "to read the traced pods"})
		if inject {
			out = append(out,
				Access{"patch", "pods", "ephemeralcontainers", ns, "to add the capture agent to the pods as an ephemeral container"},
				Access{"watch", "pods", "", ns, "to wait until the agent container runs"},
				Access{"create", "pods", "attach", ns, "to read the agent's observations and tell it when to probe (SPDY)"},
				Access{"get", "pods", "attach", ns, "to read the agent's observations and tell it when to probe (WebSocket)"})
		}
	}
	out = append(out,
		Access{"create", "pods", "", agentNS, "to start a node agent (a short-lived hostNetwork pod) on each node involved"},
		Access{"watch", "pods", "", agentNS, "to wait until the node agents run"},
		Access{"create", "pods", "attach", agentNS, "to read the node agents' observations (SPDY)"},
		Access{"get", "pods", "attach", agentNS, "to read the node agents' observations (WebSocket)"},
		Access{"delete", "pods", "", agentNS, "to remove the node agents when the trace ends"})
	return out
}

// CheckAccess asks the API server (SelfSubjectAccessReview) for every
// permission and reports all missing ones in one error.
func CheckAccess(ctx context.Context, cs kubernetes.Interface, needs []Access) error {
	var mu sync.Mutex
	var missing []string
	var errs []error
	var wg sync.WaitGroup
	for _, a := range needs {
		wg.Add(1)
		go func(a Access) {
			defer wg.Done()
			r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
				Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
					Namespace: a.Namespace, Verb: a.Verb, Resource: a.Resource, Subresource: a.Subresource}},
			}, metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, Explain(err, "check permissions (SelfSubjectAccessReview)"))
			case !r.Status.Allowed:
				missing = append(missing, fmt.Sprintf("%s (%s)", a, a.Why))
			}
		}(a)
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("preflight: you are missing %d permission(s):\n  - %s\nask your cluster admin to bind you the roles of deploy/user-rbac.yaml: ClusterRole podtrace-user in each namespace you trace, Role podtrace-user in the agent namespace (deploy/README.md)", len(missing), strings.Join(missing, "\n  - "))
	}
	return nil
}

// EphemeralPatch is the strategic merge patch that adds ec to pod.
func EphemeralPatch(pod *corev1.Pod, ec corev1.EphemeralContainer) ([]byte, error) {
	oldJSON, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(WithEphemeralContainer(pod, ec))
	if err != nil {
		return nil, err
	}
	return strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, pod)
}

// PatchEphemeral adds ec to the pod through the ephemeralcontainers
// subresource; dryRun asks the server to check it (admission included)
// without persisting anything.
func PatchEphemeral(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, ec corev1.EphemeralContainer, dryRun bool) error {
	patch, err := EphemeralPatch(pod, ec)
	if err != nil {
		return fmt.Errorf("build the patch for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	opts := metav1.PatchOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, opts, "ephemeralcontainers")
	if err != nil {
		if IsEphemeralDisabled(err) {
			return ErrEphemeralDisabled
		}
		return ExplainNS(err, fmt.Sprintf("add the capture agent to pod %s/%s", pod.Namespace, pod.Name), pod.Namespace)
	}
	return nil
}

// CreateNodePod creates (or with dryRun, checks) a node agent pod.
func CreateNodePod(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, dryRun bool) (*corev1.Pod, error) {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, opts)
	if err != nil {
		what := fmt.Sprintf("start the node agent on node %s in namespace %q", p.Spec.NodeName, p.Namespace)
		if strings.Contains(err.Error(), "not found") && strings.Contains(err.Error(), "namespaces") {
			return nil, fmt.Errorf("%s: the namespace does not exist: kubectl apply -f deploy/agent-namespace.yaml (or pass --agent-namespace)", what)
		}
		return nil, ExplainNS(err, what, p.Namespace)
	}
	return out, nil
}

// PodSecurityHint says what to do about a PodSecurity refusal.
func PodSecurityHint(err error) string {
	var pe *PodSecurityError
	if !errors.As(err, &pe) {
		return ""
	}
	return fmt.Sprintf("probe from an unprivileged agent instead (--mode unprivileged, which --mode auto picks: the pods' own eth0 is then not captured), observe from the node side (--mode node --passive), or trace pods in a namespace whose pod-security.kubernetes.io/enforce label allows NET_RAW and NET_ADMIN (privileged); %q enforces %q", pe.Namespace, pe.Level)
}
