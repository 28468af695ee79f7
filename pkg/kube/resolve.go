// Package kube is what the plugin knows of Kubernetes: resolving the pods
// to trace, the pure builders of the agent's ephemeral container and node
// pod, preflight checks (access reviews and server-side dry runs) and the
// mapping of API errors to messages that say what to do.
package kube

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Ref names a pod as the user wrote it.
type Ref struct {
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ParseRef accepts "pod", "ns/pod", "pod/NAME" and "ns/pod/NAME"; the
// namespace must be a DNS label and the name a DNS subdomain, as the API
// server requires of them.
func ParseRef(arg, defaultNamespace string) (Ref, error) {
	r, err := splitRef(arg, defaultNamespace)
	if err != nil {
		return Ref{}, err
	}
	if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
		return Ref{}, fmt.Errorf("%q: namespace %q is not valid: %s", arg, r.Namespace, msgs[0])
	}
	if msgs := validation.IsDNS1123Subdomain(r.Name); len(msgs) > 0 {
		return Ref{}, fmt.Errorf("%q: pod name %q is not valid: %s", arg, r.Name, msgs[0])
	}
	return r, nil
}

func splitRef(arg, defaultNamespace string) (Ref, error) {
	parts := strings.Split(arg, "/")
	bad := fmt.Errorf("%q is not a pod: use NAME, NAMESPACE/NAME or pod/NAME", arg)
	for _, p := range parts {
		if p == "" {
			return Ref{}, bad
		}
	}
	switch len(parts) {
	case 1:
		return Ref{defaultNamespace, parts[0]}, nil
	case 2:
		if parts[0] == "pod" || parts[0] == "pods" || parts[0] == "po" {
			return Ref{defaultNamespace, parts[1]}, nil
		}
		return Ref{parts[0], parts[1]}, nil
	case 3:
		if parts[1] == "pod" || parts[1] == "pods" || parts[1] == "po" {
			return Ref{parts[0], parts[2]}, nil
		}
	}
	return Ref{}, bad
}

// Target is a resolved pod.
type Target struct {
	Ref  Ref
	Pod  *corev1.Pod
	IP   string
	Node string
}

// Resolve reads the pod and checks that it can be traced.
func Resolve(ctx context.Context, cs kubernetes.Interface, r Ref) (*Target, error) {
	p, err := cs.CoreV1().Pods(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("pod %q not found in namespace %q (kubectl get pods -n %s)", r.Name, r.Namespace, r.Namespace)
		}
		return nil, Explain(err, fmt.Sprintf("read pod %s", r))
	}
	t := &Target{Ref: r, Pod: p, IP: p.Status.PodIP, Node: p.Spec.NodeName}
	switch {
	case p.DeletionTimestamp != nil:
		return nil, fmt.Errorf("pod %s is being deleted", r)
	case p.Status.Phase != corev1.PodRunning:
		return nil, fmt.Errorf("pod %s is %s, not Running: only running pods can be traced", r, phase(p))
	case p.Spec.HostNetwork:
		return nil, fmt.Errorf("pod %s uses the node's network (hostNetwork): it has no eth0/veth of its own; trace from a pod that talks to it, or observe its node with --mode node --passive", r)
	case t.IP == "":
		return nil, fmt.Errorf("pod %s has no IP address yet", r)
	case t.Node == "":
		return nil, fmt.Errorf("pod %s is not scheduled to a node", r)
	case p.Spec.OS != nil && p.Spec.OS.Name == corev1.Windows:
		return nil, fmt.Errorf("pod %s runs on Windows: the capture agent is Linux-only", r)
	}
	return t, nil
}

func phase(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return string(p.Status.Phase) + " (" + w.Reason + ")"
		}
	}
	return string(p.Status.Phase)
}

// Node is what the plugin reads of a traced pod's node.
type Node struct {
	Name string
	// Readable is false when the user may not get the node (the
	// ClusterRole podtrace-nodes is not bound): Taints are then unknown.
	Readable bool
	// Why the node is not readable, for a note.
	Why    string
	Taints []corev1.Taint
}

// CheckNode reads the node: it refuses Windows nodes and returns the
// taints, which the node agent tolerates. Without permission to read nodes
// it returns a Node that is not Readable, and no error (the pod's own OS
// field was checked already).
func CheckNode(ctx context.Context, cs kubernetes.Interface, node string) (Node, error) {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		why := apiMessage(err)
		if apierrors.IsForbidden(err) {
			why = "no permission to get nodes: bind the ClusterRole podtrace-nodes of deploy/user-rbac.yaml"
		}
		return Node{Name: node, Why: why}, nil
	}
	if osName := n.Labels["kubernetes.io/os"]; osName != "" && osName != "linux" {
		return Node{}, fmt.Errorf("node %s runs %s: the capture agent is Linux-only", node, osName)
	}
	return Node{Name: node, Readable: true, Taints: n.Spec.Taints}, nil
}
