// Package kube is what the plugin knows of Kubernetes: resolving the pods
// to trace, the pure builders of the agent's ephemeral container and node
// pod, preflight checks (access reviews and server-side dry runs) and the
// mapping of API errors to messages that say what to do.
package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/podtrace/kubectl-podtrace/pkg/kube/ref"
)

// Ref names a pod as the user wrote it.
type Ref = ref.Ref

// ParseRef accepts "pod", "ns/pod", "pod/NAME" and "ns/pod/NAME" (see
// ref.Parse).
func ParseRef(arg, defaultNamespace string) (Ref, error) { return ref.Parse(arg, defaultNamespace) }

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
	// KubeletVersion is the node's kubelet version as it reports it
	// (status.nodeInfo.kubeletVersion), empty when not Readable.
	KubeletVersion string
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
	return Node{Name: node, Readable: true, Taints: n.Spec.Taints, KubeletVersion: n.Status.NodeInfo.KubeletVersion}, nil
}

// ReportsStartAtOnce tells whether a kubelet of this version reports a
// container it started in the pod's status at once: from Kubernetes 1.36
// the kubelet relists a pod's containers right after each sync that
// changed something (feature PLEGOnDemandRelist, on by default in 1.36,
// always on from 1.37), where older ones wait for their next periodic
// relist, up to a second later. A version that does not parse is old.
func ReportsStartAtOnce(kubeletVersion string) bool {
	v, err := version.ParseGeneric(kubeletVersion)
	return err == nil && v.AtLeast(version.MajorMinor(1, 36))
}
