package cluster

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// WarmAgent is a lingering agent's container: a node pod's "agent", or an
// ephemeral container of a traced pod.
type WarmAgent struct {
	Namespace, Pod, Container string
	Session                   string // the session that started it
}

// Keep leaves the node pods of lingering agents after the run: Cleanup
// then deletes nothing. Called after a run whose agents linger succeeded.
func (l *Launcher) Keep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept = true
}

// FindWarm looks for a running lingering agent for every spec: a node pod
// on the spec's node labelled with the spec's warm key (kube.WarmLabel),
// or an ephemeral container of the spec's pod started with that key
// (--warm-key). It returns them by spec ID when every spec has one, else
// nil and why not, for one line on stderr. It reads one list of node pods
// and the traced pods as resolved (l.Pods); node pods whose lingering agent
// already exited are deleted in the background (Cleanup waits for that).
func (l *Launcher) FindWarm(ctx context.Context, specs []launch.Spec) (map[string]WarmAgent, string, error) {
	var nodePods []corev1.Pod
	for _, s := range specs {
		if s.Role == wire.RoleNode {
			list, err := l.Client.CoreV1().Pods(l.Params.Namespace).List(ctx, metav1.ListOptions{
				LabelSelector: kube.ManagedByLabel + "=" + kube.ManagedBy + "," + kube.WarmLabel})
			if err != nil {
				return nil, "", kube.Explain(err, fmt.Sprintf("list node agent pods in namespace %q", l.Params.Namespace))
			}
			nodePods = list.Items
			break
		}
	}
	for i := range nodePods {
		if p := &nodePods[i]; p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			l.bg.Add(1)
			go func() {
				defer l.bg.Done()
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = l.Client.CoreV1().Pods(p.Namespace).Delete(dctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			}()
		}
	}
	found := map[string]WarmAgent{}
	var missing, other []string
	for _, s := range specs {
		var w WarmAgent
		var ok bool
		var keys []string
		switch s.Role {
		case wire.RoleNode:
			w, ok, keys = warmNodePod(nodePods, s)
		case wire.RolePod:
			w, ok, keys = warmContainer(l.Pods[s.Target], s)
		}
		switch {
		case ok:
			found[s.ID] = w
		case len(keys) > 0:
			other = append(other, fmt.Sprintf("%s (%s)", s.ID, otherWhy(s.WarmKey, keys)))
		default:
			missing = append(missing, s.ID)
		}
	}
	if len(missing) == 0 && len(other) == 0 {
		return found, "", nil
	}
	var why []string
	if len(other) > 0 {
		why = append(why, "the warm agents of "+strings.Join(other, ", ")+" trace something else")
	}
	if len(missing) > 0 {
		why = append(why, "no warm agent for "+strings.Join(missing, ", "))
	}
	return nil, strings.Join(why, "; "), nil
}

// otherWhy says how running agents' keys differ from the one wanted: by
// agent version, or by what they watch.
func otherWhy(want string, keys []string) string {
	sort.Strings(keys)
	v := launch.KeyVersion(keys[0])
	if v != launch.KeyVersion(want) {
		return "agent version " + v + ", not " + launch.KeyVersion(want)
	}
	return "other pods, nodes, filter or capture options"
}

func warmNodePod(pods []corev1.Pod, s launch.Spec) (WarmAgent, bool, []string) {
	var keys []string
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName != s.Target || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !running(p.Status.ContainerStatuses, "agent") {
			continue
		}
		k := p.Labels[kube.WarmLabel]
		if k == s.WarmKey {
			return WarmAgent{Namespace: p.Namespace, Pod: p.Name, Container: "agent", Session: p.Labels[kube.SessionLabel]}, true, nil
		}
		keys = append(keys, k)
	}
	return WarmAgent{}, false, keys
}

func warmContainer(pod *corev1.Pod, s launch.Spec) (WarmAgent, bool, []string) {
	if pod == nil {
		return WarmAgent{}, false, nil
	}
	var keys []string
	// The newest first: a pod keeps every agent container it ever had.
	ecs := pod.Spec.EphemeralContainers
	for i := len(ecs) - 1; i >= 0; i-- {
		ec := ecs[i]
		k := kube.ArgValue(ec.Args, "--warm-key")
		if k == "" || !strings.HasPrefix(ec.Name, kube.ContainerPrefix) || !running(pod.Status.EphemeralContainerStatuses, ec.Name) {
			continue
		}
		if k == s.WarmKey {
			return WarmAgent{Namespace: pod.Namespace, Pod: pod.Name, Container: ec.Name, Session: strings.TrimPrefix(ec.Name, kube.ContainerPrefix)}, true, nil
		}
		keys = append(keys, k)
	}
	return WarmAgent{}, false, keys
}

func running(statuses []corev1.ContainerStatus, name string) bool {
	for _, st := range statuses {
		if st.Name == name {
			return st.State.Running != nil
		}
	}
	return false
}

// EndAgent ends a lingering agent at once: it attaches to the container
// and writes the exit line (an ephemeral container cannot be deleted),
// then waits, within ctx, for the container's output to end.
func (l *Launcher) EndAgent(ctx context.Context, ns, pod, container string) error {
	a, err := l.attach(ctx, ns, pod, container, nil)
	if err != nil {
		return err
	}
	defer a.cancel()
	if err := a.Send(wire.CmdExit); err != nil {
		return fmt.Errorf("tell the agent in %s/%s to exit: %w", ns, pod, err)
	}
	go func() { _, _ = io.Copy(io.Discard, a.stdout) }()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the agent container %s in %s/%s did not end in time: it exits at the end of its linger time", container, ns, pod)
	}
}
