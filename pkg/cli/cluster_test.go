package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

func runningPod(ns, name, ip, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
}

// fakeCluster allows every access review and records every write.
func fakeCluster(objs ...runtime.Object) (*fake.Clientset, *[]k8stesting.Action) {
	cs := fake.NewClientset(objs...)
	var writes []k8stesting.Action
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		r.Status.Allowed = true
		return true, r, nil
	})
	cs.PrependReactor("*", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() == "create" || a.GetVerb() == "patch" || a.GetVerb() == "delete" {
			writes = append(writes, a)
		}
		// A dry-run create is checked and answered, never stored (as the
		// API server does; the fake's tracker would keep it).
		if c, ok := a.(k8stesting.CreateActionImpl); ok && len(c.CreateOptions.DryRun) > 0 {
			return true, c.GetObject(), nil
		}
		return false, nil, nil
	})
	return cs, &writes
}

// clusterOptions are a trace's options against cs, as the flags would set
// them for one probe of proto from a given agent image, printed as text.
func clusterOptions(cs kubernetes.Interface, proto string, out, errOut io.Writer) *ClusterOptions {
	o := NewClusterOptions(TraceOptions{IOStreams: genericiooptions.IOStreams{Out: out, ErrOut: errOut}})
	o.client = cs
	o.Image, o.PullPolicy, o.AgentNamespace, o.Mode, o.DryRun = "registry.example.com/podtrace-agent:v1", "IfNotPresent", "podtrace-system", "auto", "none"
	o.Proto, o.Count, o.Output, o.Color, o.Timeout = proto, 1, "text", "never", 60e9
	return o
}

// dryRun runs `kubectl podtrace SRC DST --dry-run` against cs with one
// probe of proto (to port when it is not 0) and returns what it printed.
func dryRun(t *testing.T, cs kubernetes.Interface, proto string, port int, src, dst string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	o := clusterOptions(cs, proto, &out, &errOut)
	o.DryRun = "server"
	if port != 0 {
		o.Port = port
	}
	ctx := context.Background()
	if err := o.ValidateArgs([]string{src, dst}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(ctx, []string{src, dst}); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// notDryRuns names the writes that were not server-side dry runs.
func notDryRuns(writes []k8stesting.Action) []string {
	var out []string
	for _, a := range writes {
		var dry []string
		switch w := a.(type) {
		case k8stesting.PatchActionImpl:
			dry = w.PatchOptions.DryRun
		case k8stesting.CreateActionImpl:
			dry = w.CreateOptions.DryRun
		}
		if len(dry) != 1 || dry[0] != "All" {
			out = append(out, fmt.Sprintf("a %s of %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource()))
		}
	}
	return out
}

func TestDryRunPrintsThePlanAsYAMLAndCreatesNothing(t *testing.T) {
	cs, writes := fakeCluster(runningPod("e2e", "pod-a", "10.244.0.2", "node-1"), runningPod("shop", "pod-b", "10.244.1.3", "node-2"))
	out := dryRun(t, cs, "tcp", 8080, "e2e/pod-a", "shop/pod-b")
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 5 { // header, 2 patches, 2 node pods
		t.Fatalf("want a header, two patches and two node pods, got %d documents:\n%s", len(docs), out)
	}
	var nodes []string
	for _, d := range docs[1:] {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, d)
		}
		if strings.Contains(d, "node agent pod") {
			spec := obj["spec"].(map[string]any)
			nodes = append(nodes, spec["nodeName"].(string))
			if spec["hostNetwork"] != true {
				t.Errorf("node pod not on the host network:\n%s", d)
			}
			if !strings.Contains(d, "- --trace-probe\n") || strings.Contains(d, "- --probe\n") {
				t.Errorf("node agent should trace the probe, not send it:\n%s", d)
			}
		} else {
			src := strings.Contains(d, "on pod e2e/pod-a")
			// Only the source pod's agent sends the probe; the other
			// agents' capture is scoped to it.
			sends, scoped := strings.Contains(d, "- --probe\n"), strings.Contains(d, "- --trace-probe\n")
			if !strings.Contains(d, "ephemeralContainers") || sends != src || scoped == src {
				t.Errorf("patch document (source pod: %v):\n%s", src, d)
			}
		}
	}
	if strings.Join(nodes, ",") != "node-1,node-2" {
		t.Errorf("node agents on %v; want node-1 and node-2", nodes)
	}
	for _, w := range notDryRuns(*writes) {
		t.Errorf("%s was not a dry run", w)
	}
	if len(*writes) != 4 {
		t.Errorf("want 4 server-side dry runs (2 patches, 2 creates), got %d", len(*writes))
	}
}

func TestSamePodAndModeErrorsAreClear(t *testing.T) {
	cs, _ := fakeCluster(runningPod("e2e", "pod-a", "10.244.0.2", "node-1"))
	o := NewClusterOptions(TraceOptions{})
	o.client = cs
	if err := o.Complete(context.Background(), []string{"e2e/pod-a", "pod/pod-a", "-n"}); err == nil || !strings.Contains(err.Error(), "want a source and a destination") {
		t.Errorf("three args: %v", err)
	}
	ns := "e2e"
	o.ConfigFlags.Namespace = &ns
	if err := o.Complete(context.Background(), []string{"e2e/pod-a", "pod/pod-a"}); err == nil || !strings.Contains(err.Error(), "same pod") {
		t.Errorf("same pod: %v", err)
	}
}

// A Service destination: the probe goes to the ClusterIP and port with the
// port's protocol (not the default ICMP, which a virtual IP does not
// answer), may be translated (--nat), the one ready endpoint pod gets an
// agent, and the endpoint's node a node agent.
func TestDryRunToAServicePlacesAgentsOnTheEndpoint(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.3.4", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	port, ready := int32(8080), true
	name, node := "http", "node-2"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName: &node, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "pod-b"}}},
	}
	cs, _ := fakeCluster(runningPod("e2e", "pod-a", "10.244.0.2", "node-1"), runningPod("shop", "pod-b", "10.244.1.3", "node-2"), svc, slice)
	s := dryRun(t, cs, "icmp", 0, "e2e/pod-a", "shop/svc/web")
	for _, want := range []string{"# trace e2e/pod-a (10.244.0.2) → Service shop/web 10.96.3.4:80 (1 ready endpoint(s) on node-2), probe tcp ×1 to port 80",
		"on pod e2e/pod-a", "on pod shop/pod-b", "node agent pod on node node-1", "node agent pod on node node-2",
		"- --dst\n    - 10.96.3.4\n", "- --nat\n", "- 10.244.0.2,10.96.3.4,10.244.1.3\n",
		// the model judges pods and their ports, not a virtual IP and port
		"# note: NetworkPolicy model unavailable: not evaluated for a Service destination"} {
		if !strings.Contains(s, want) {
			t.Errorf("dry run lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "- --nat\n") != 4 {
		t.Errorf("every agent's probe spec says it may be translated: %d of 4\n%s", strings.Count(s, "- --nat\n"), s)
	}
}
