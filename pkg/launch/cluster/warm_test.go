package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podtrace/kubectl-podtrace/pkg/kube"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// warmPlan is a plan's agents as the plugin builds them: a prober in
// pod-a, a tracer on node-1, both lingering with their keys.
func warmPlan(version, filter string, id int) []launch.Spec {
	probe := &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.0.3", Count: 1, Interval: time.Second, Timeout: time.Second, ID: id}
	specs := []launch.Spec{
		{ID: "pod-a", Role: wire.RolePod, Name: "pod-a", Node: "node-1", Target: "default/pod-a", Hosts: []string{"10.244.0.2", "10.244.0.3"}, Probe: probe, Match: probe},
		{ID: "node-1", Role: wire.RoleNode, Name: "node-1", Node: "node-1", Target: "node-1", Hosts: []string{"10.244.0.2", "10.244.0.3"}, Match: probe, NFTrace: true},
	}
	for i := range specs {
		s := &specs[i]
		s.Filter, s.Deadline, s.Linger, s.Lifetime = filter, 75*time.Second, 2*time.Minute, 20*time.Minute
		s.WarmKey = s.Key(version, "image=agent:1")
	}
	return specs
}

// started is what a cold trace of the plan left: the pod with its agent
// container running, the node pod running, both built by the real
// builders from the plan's arguments.
func started(specs []launch.Spec, session string, phase corev1.PodPhase) (*corev1.Pod, *corev1.Pod) {
	p := kube.AgentParams{Session: session, Image: "agent:1", Namespace: "podtrace-system", Deadline: 75 * time.Second}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: "default"}}
	ec := kube.EphemeralContainer(p, specs[0].Args())
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
	pod.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: ec.Name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	np := kube.NodePod(p, "node-1", specs[1].Args())
	np.Status.Phase = phase
	np.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent"}}
	if phase == corev1.PodRunning {
		np.Status.ContainerStatuses[0].State.Running = &corev1.ContainerStateRunning{}
	}
	return pod, np
}

func TestFindWarm(t *testing.T) {
	cold := warmPlan("v1.2.0", "", 40000)
	for _, tc := range []struct {
		name  string
		rerun []launch.Spec
		phase corev1.PodPhase
		found bool
		why   string
	}{
		{"same trace, another probe identity", warmPlan("v1.2.0", "", 41234), corev1.PodRunning, true, ""},
		{"another filter", warmPlan("v1.2.0", "icmp", 41234), corev1.PodRunning, false,
			"the warm agents of pod-a (other pods, nodes, filter or capture options), node-1 (other pods, nodes, filter or capture options) trace something else"},
		{"another agent version", warmPlan("v1.3.0", "", 41234), corev1.PodRunning, false,
			"the warm agents of pod-a (agent version v1_2_0, not v1_3_0), node-1 (agent version v1_2_0, not v1_3_0) trace something else"},
		{"node agent exited", warmPlan("v1.2.0", "", 41234), corev1.PodSucceeded, false, "no warm agent for node-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, np := started(cold, "abc12", tc.phase)
			cs := fake.NewSimpleClientset(pod, np)
			l := &Launcher{Client: cs, Params: kube.AgentParams{Namespace: "podtrace-system"}, Pods: map[string]*corev1.Pod{"default/pod-a": pod}}
			warm, why, err := l.FindWarm(context.Background(), tc.rerun)
			if err != nil {
				t.Fatal(err)
			}
			if got := warm != nil; got != tc.found || why != tc.why {
				t.Fatalf("found %v, why %q; want %v, %q", got, why, tc.found, tc.why)
			}
			if tc.found {
				want := map[string]WarmAgent{
					"pod-a":  {Namespace: "default", Pod: "pod-a", Container: kube.ContainerName("abc12"), Session: "abc12"},
					"node-1": {Namespace: "podtrace-system", Pod: np.Name, Container: "agent", Session: "abc12"},
				}
				for id, w := range want {
					if warm[id] != w {
						t.Errorf("%s: %+v, want %+v", id, warm[id], w)
					}
				}
			}
			l.bg.Wait()
			_, err = cs.CoreV1().Pods("podtrace-system").Get(context.Background(), np.Name, metav1.GetOptions{})
			if deleted := err != nil; deleted != (tc.phase == corev1.PodSucceeded) {
				t.Errorf("node pod in phase %s deleted: %v (%v)", tc.phase, deleted, err)
			}
		})
	}
}

// The pod and node agents of a lingering plan keep stdin across attaches,
// and the node pod is labelled with its key and bounded by its lifetime.
func TestLingeringAgentsObjects(t *testing.T) {
	specs := warmPlan("v1.2.0", "", 40000)
	pod, np := started(specs, "abc12", corev1.PodRunning)
	if ec := pod.Spec.EphemeralContainers[0]; ec.StdinOnce || !ec.Stdin {
		t.Errorf("lingering ephemeral container stdin %v, stdinOnce %v: want stdin kept across attaches", ec.Stdin, ec.StdinOnce)
	}
	c := np.Spec.Containers[0]
	if c.StdinOnce || np.Labels[kube.WarmLabel] != specs[1].WarmKey || *np.Spec.ActiveDeadlineSeconds != 20*60+30 {
		t.Errorf("lingering node pod: stdinOnce %v, label %q, activeDeadlineSeconds %d; want false, %q, %d",
			c.StdinOnce, np.Labels[kube.WarmLabel], *np.Spec.ActiveDeadlineSeconds, specs[1].WarmKey, 20*60+30)
	}
	if len(specs[1].WarmKey) > 63 || !strings.HasPrefix(specs[1].WarmKey, "v1_2_0.") {
		t.Errorf("warm key %q: want the version, a dot and a hash, at most 63 characters (a label value)", specs[1].WarmKey)
	}
	one := specs[0]
	one.Linger, one.Lifetime, one.WarmKey = 0, 0, ""
	if ec := kube.EphemeralContainer(kube.AgentParams{}, one.Args()); !ec.StdinOnce {
		t.Error("an agent that serves one run: stdinOnce false, want true")
	}
}
