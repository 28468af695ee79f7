package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// The mode a trace takes, by the namespaces' pod-security.kubernetes.io/enforce
// labels and the flags. Expected values from the Pod Security Standards
// (kubernetes.io/docs/concepts/security/pod-security-standards): privileged
// admits anything; baseline forbids adding a capability outside its default
// list (AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD,
// NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT), so the
// capture agent's NET_RAW and NET_ADMIN; restricted also requires
// runAsNonRoot, capabilities drop ALL (add at most NET_BIND_SERVICE),
// allowPrivilegeEscalation false and a RuntimeDefault or Localhost seccomp
// profile, which the unprivileged agent sets. An enforce label whose value
// is not a level is evaluated as restricted (PodSecurity admission's
// ParseLevel); a namespace without the label gets the cluster default,
// privileged unless configured otherwise.
func TestChooseModeByPodSecurityLabels(t *testing.T) {
	none := map[string]string{}
	label := func(v string) map[string]string { return map[string]string{EnforceLabel: v} }
	for _, tc := range []struct {
		name       string
		src, dst   map[string]string // nil: the namespace could not be read
		requested  string
		passive    bool
		want       string
		whyMention []string
	}{
		{"no label, active", none, none, "auto", false, "ephemeral", []string{"admits the capture agent", "no pod-security.kubernetes.io/enforce label"}},
		{"no label, passive", none, none, "auto", true, "ephemeral", nil},
		{"privileged, active", label("privileged"), label("privileged"), "auto", false, "ephemeral", nil},
		{"baseline, active", label("baseline"), label("baseline"), "auto", false, "unprivileged", []string{`namespace "src-ns" enforces PodSecurity "baseline"`, "NET_RAW and NET_ADMIN", "unprivileged agent", "not captured"}},
		{"baseline, passive", label("baseline"), label("baseline"), "auto", true, "node", []string{`PodSecurity "baseline"`, "observing from the nodes only"}},
		{"restricted, active", label("restricted"), label("restricted"), "auto", false, "unprivileged", []string{`PodSecurity "restricted"`}},
		{"restricted, passive", label("restricted"), label("restricted"), "auto", true, "node", nil},
		{"invalid level is restricted", label("strict"), label("strict"), "auto", false, "unprivileged", []string{`PodSecurity "restricted"`}},
		{"privileged source, baseline destination", label("privileged"), label("baseline"), "auto", false, "unprivileged", []string{`namespace "dst-ns" enforces PodSecurity "baseline"`}},
		{"baseline source, privileged destination", label("baseline"), none, "auto", false, "unprivileged", []string{`namespace "src-ns" enforces PodSecurity "baseline"`}},
		{"labels unreadable: the dry run judges", nil, nil, "auto", false, "ephemeral", nil},
		{"explicit ephemeral under baseline (the dry run refuses it)", label("baseline"), label("baseline"), "ephemeral", false, "ephemeral", []string{"--mode ephemeral"}},
		{"explicit unprivileged under privileged", none, none, "unprivileged", false, "unprivileged", []string{"--mode unprivileged"}},
		{"explicit node", label("restricted"), label("restricted"), "node", true, "node", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lv := func(ns string, labels map[string]string) nsLevel {
				if labels == nil {
					return nsLevel{Namespace: ns}
				}
				return enforceLevel(ns, labels)
			}
			src := lv("src-ns", tc.src)
			got, why := chooseMode(tc.requested, tc.passive, src, []nsLevel{src, lv("dst-ns", tc.dst)})
			if got != tc.want {
				t.Errorf("mode %q (%s); want %q", got, why, tc.want)
			}
			for _, w := range tc.whyMention {
				if !strings.Contains(why, w) {
					t.Errorf("why %q does not mention %q", why, w)
				}
			}
		})
	}
}

// A PodSecurity refusal of the dry run steps auto down: the capture agents
// to the unprivileged prober when active, to the node agents when passive;
// nothing below those.
func TestStepDownAfterARefusal(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		passive bool
		want    string
	}{
		{"ephemeral", false, "unprivileged"},
		{"ephemeral", true, "node"},
		{"unprivileged", false, ""},
		{"node", true, ""},
	} {
		if got := stepDown(tc.mode, tc.passive); got != tc.want {
			t.Errorf("stepDown(%q, passive %v) = %q; want %q", tc.mode, tc.passive, got, tc.want)
		}
	}
}

// podSecurityRefusal makes cs refuse, as the PodSecurity admission
// controller does, an ephemeral container that adds capabilities in a
// namespace enforcing level (its message, as a v1.37 API server words it).
func podSecurityRefusal(cs *fake.Clientset, ns, level string) {
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if a.GetNamespace() != ns || a.GetSubresource() != "ephemeralcontainers" || !strings.Contains(string(p.GetPatch()), "NET_RAW") {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), p.GetName(),
			fmt.Errorf(`ephemeral containers are forbidden: violates PodSecurity "%s:latest": non-default capabilities (container "podtrace-x" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`, level))
	})
}

// dryRunMode runs `kubectl podtrace e2e-b/pod-a e2e-b/pod-b --dry-run` with
// --mode auto against cs and returns stdout and stderr.
func dryRunMode(t *testing.T, cs kubernetes.Interface, passive bool) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	o := clusterOptions(cs, "tcp", &out, &errOut)
	o.DryRun, o.Port, o.Passive = dryRunServer, 8080, passive
	if passive {
		o.Proto, o.Port, o.Duration = "icmp", 0, 2e9
	}
	ctx := context.Background()
	if err := o.Complete(ctx, []string{"e2e-b/pod-a", "e2e-b/pod-b"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	return out.String(), errOut.String()
}

// Under baseline, auto probes from an unprivileged agent in the source pod
// only: the dry run patches one pod, with a container PodSecurity
// restricted admits, and says which mode and why, whether the namespace's
// label told it (the user may read namespaces) or the server's refusal did
// (a cluster default level, or a namespace the user may not read).
func TestAutoUnderBaselinePlansTheUnprivilegedProber(t *testing.T) {
	for _, labelled := range []bool{true, false} {
		t.Run(fmt.Sprintf("label readable %v", labelled), func(t *testing.T) {
			objs := []runtime.Object{runningPod("e2e-b", "pod-a", "10.244.0.2", "node-1"), runningPod("e2e-b", "pod-b", "10.244.0.3", "node-1")}
			if labelled {
				objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-b", Labels: map[string]string{EnforceLabel: "baseline"}}})
			}
			cs, writes := fakeCluster(objs...)
			podSecurityRefusal(cs, "e2e-b", "baseline")
			out, errOut := dryRunMode(t, cs, false)
			if !strings.Contains(errOut, "podtrace: mode unprivileged: ") || !strings.Contains(errOut, `PodSecurity "baseline"`) {
				t.Errorf("stderr does not name the mode and why:\n%s", errOut)
			}
			var patches []string
			for _, w := range *writes {
				if w.GetVerb() == "patch" {
					patches = append(patches, w.(k8stesting.PatchAction).GetName())
				}
			}
			// (The refused dry run of the capture agent, when the label
			// did not tell, is answered by the refusal's reactor and not
			// recorded; stderr says the refusal decided.)
			if strings.Join(patches, ",") != "pod-a" {
				t.Errorf("dry-run patches of %v; want pod-a", patches)
			}
			if refused := strings.Contains(errOut, "refused the capture agent in the pod (server-side dry run)"); refused == labelled {
				t.Errorf("label readable %v, but stderr says the refusal decided %v:\n%s", labelled, refused, errOut)
			}
			docs := strings.Split(out, "\n---\n")
			var pod []string
			for _, d := range docs[1:] {
				if strings.Contains(d, "ephemeralContainers") {
					pod = append(pod, d)
				}
			}
			if len(pod) != 1 || !strings.Contains(pod[0], "on pod e2e-b/pod-a") {
				t.Fatalf("want one agent, in the source pod:\n%s", out)
			}
			var patch struct {
				Spec struct {
					EphemeralContainers []corev1.EphemeralContainer `json:"ephemeralContainers"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(pod[0][strings.Index(pod[0], "\n")+1:]), &patch); err != nil {
				t.Fatal(err)
			}
			ec := patch.Spec.EphemeralContainers[0]
			sc := ec.SecurityContext
			// PodSecurity restricted, field by field.
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
				len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
				(sc.Privileged != nil && *sc.Privileged) {
				t.Errorf("the prober's securityContext does not meet PodSecurity restricted: %+v", sc)
			}
			args := strings.Join(ec.Args, " ")
			if !strings.Contains(args, "--unprivileged") || !strings.Contains(args, "--probe tcp") || strings.Contains(args, "--filter") {
				t.Errorf("prober args %q", args)
			}
			if !strings.Contains(out, "\n# mode unprivileged: ") {
				t.Errorf("the dry run does not name the mode:\n%s", out)
			}
		})
	}
}

// Passive under baseline: node agents only, no patch at all.
func TestAutoPassiveUnderBaselineObservesFromTheNodes(t *testing.T) {
	cs, writes := fakeCluster(runningPod("e2e-b", "pod-a", "10.244.0.2", "node-1"), runningPod("e2e-b", "pod-b", "10.244.0.3", "node-1"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-b", Labels: map[string]string{EnforceLabel: "restricted"}}})
	_, errOut := dryRunMode(t, cs, true)
	if !strings.Contains(errOut, "podtrace: mode node: ") || !strings.Contains(errOut, "observing from the nodes only") {
		t.Errorf("stderr:\n%s", errOut)
	}
	for _, w := range *writes {
		if w.GetVerb() == "patch" {
			t.Errorf("passive under restricted patched pod %s", w.(k8stesting.PatchAction).GetName())
		}
	}
}

// Where even the unprivileged agent is refused (PodSecurity judges the
// whole pod: its own containers break the level, labelled after they ran),
// the error says so and points to the node side; nothing is created.
func TestUnprivilegedRefusedSaysThePodBreaksTheLevel(t *testing.T) {
	cs, writes := fakeCluster(runningPod("e2e-b", "pod-a", "10.244.0.2", "node-1"), runningPod("e2e-b", "pod-b", "10.244.0.3", "node-1"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-b", Labels: map[string]string{EnforceLabel: "restricted"}}})
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), a.(k8stesting.PatchAction).GetName(),
			errors.New(`ephemeral containers are forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)`))
	})
	var out, errOut bytes.Buffer
	o := clusterOptions(cs, "tcp", &out, &errOut)
	o.Port = 8080
	ctx := context.Background()
	if err := o.Complete(ctx, []string{"e2e-b/pod-a", "e2e-b/pod-b"}); err != nil {
		t.Fatal(err)
	}
	err := o.Run(ctx)
	if err == nil {
		t.Fatal("a refused trace succeeded")
	}
	for _, want := range []string{`PodSecurity "restricted"`, "unprivileged agent", "pod's own containers", "--mode node --passive", "nothing was created"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// (The preflight dry-runs every object at once: a dry-run create of
	// the node pod may be sent beside the refused patch; it stores nothing.)
	for _, w := range *writes {
		if c, ok := w.(k8stesting.CreateActionImpl); ok && len(c.CreateOptions.DryRun) == 0 {
			t.Errorf("a create after a refusal: %v", w)
		}
	}
}
