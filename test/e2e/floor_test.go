//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// startFloor is how long the cluster takes to start the containers a
// cold trace starts, with nothing of podtrace in them: one hostNetwork
// pod on each node of the pods and one ephemeral container in each pod
// (pods: pod name in namespace e2e → its node), every container running the agent
// image's `podtrace-agent version`, which prints a line and exits. It is
// measured from the first request (made with client-go as admin, the
// four at once) until the pod statuses say each container started
// (running or exited), and bounds from below the time to the verdict of
// any tool that starts those containers: the plugin's own work (resolve,
// preflight, attach, arm, probe, the agents' ends) comes on top, and so
// does kubectl's start.
func startFloor(t *testing.T, pods map[string]string) time.Duration {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", adminConfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := uniqueName("floor")
	ctr := corev1.Container{Name: "floor", Image: agentImage, ImagePullPolicy: corev1.PullNever, Command: []string{"/podtrace-agent"}, Args: []string{"version"}}
	// The pods as they are now, for the patches: read before the clock.
	current := map[string]*corev1.Pod{}
	for pod := range pods {
		p, err := c.CoreV1().Pods("e2e").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current[pod] = p
	}
	type watched struct{ pod, container string }
	var ws []watched
	var created []string
	nodes := map[string]bool{}
	for pod, node := range pods {
		if !nodes[node] {
			nodes[node] = true
			created = append(created, id+"-"+node)
			ws = append(ws, watched{id + "-" + node, "floor"})
		}
		ws = append(ws, watched{pod, id})
	}
	defer func() {
		for _, name := range created {
			_ = c.CoreV1().Pods("e2e").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}()
	// Watch first (they start from the current resource version), then
	// create and patch.
	started := make(chan error, len(ws))
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var ready sync.WaitGroup
	for _, w := range ws {
		ready.Add(1)
		go func() {
			started <- waitStarted(wctx, c, w.pod, w.container, &ready)
		}()
	}
	ready.Wait()
	begin := time.Now()
	errs := make(chan error, len(ws))
	for node := range nodes {
		go func() {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: id + "-" + node, Namespace: "e2e"},
				Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false), EnableServiceLinks: ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{ctr}}}
			_, err := c.CoreV1().Pods("e2e").Create(ctx, p, metav1.CreateOptions{})
			errs <- err
		}()
	}
	for pod := range pods {
		go func() {
			old := current[pod]
			np := old.DeepCopy()
			np.Spec.EphemeralContainers = append(np.Spec.EphemeralContainers,
				corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(ctr)})
			np.Spec.EphemeralContainers[len(np.Spec.EphemeralContainers)-1].Name = id
			a, _ := json.Marshal(old)
			b, _ := json.Marshal(np)
			patch, err := strategicpatch.CreateTwoWayMergePatch(a, b, old)
			if err == nil {
				_, err = c.CoreV1().Pods("e2e").Patch(ctx, pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "ephemeralcontainers")
			}
			errs <- err
		}()
	}
	for range len(ws) {
		if err := <-errs; err != nil {
			t.Fatalf("start floor: %v", err)
		}
	}
	for range ws {
		if err := <-started; err != nil {
			t.Fatalf("start floor: %v", err)
		}
	}
	return time.Since(begin)
}

// waitStarted watches pod e2e/name until its container (or ephemeral
// container) has started: running, or exited after it ran. The watch
// starts from a list's resource version (as an informer's): one without
// may be refused while the API server's cache catches up ("Too large
// resource version").
func waitStarted(ctx context.Context, c *kubernetes.Clientset, name, container string, ready *sync.WaitGroup) error {
	sel := metav1.ListOptions{FieldSelector: "metadata.name=" + name}
	list, err := c.CoreV1().Pods("e2e").List(ctx, sel)
	if err != nil {
		ready.Done()
		return err
	}
	sel.ResourceVersion = list.ResourceVersion
	w, err := c.CoreV1().Pods("e2e").Watch(ctx, sel)
	ready.Done()
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if st, ok := ev.Object.(*metav1.Status); ok {
			return fmt.Errorf("%s/%s: watch: %s", name, container, st.Message)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		for _, st := range append(p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses...) {
			if st.Name != container {
				continue
			}
			switch {
			case st.State.Running != nil:
				return nil
			case st.State.Terminated != nil && st.State.Terminated.ExitCode == 0:
				return nil
			case st.State.Terminated != nil:
				return fmt.Errorf("%s/%s exited %d: %s", name, container, st.State.Terminated.ExitCode, st.State.Terminated.Message)
			}
		}
	}
	return fmt.Errorf("%s/%s: the watch ended before the container started (%v)", name, container, ctx.Err())
}
