//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The limited user is bound only to the roles in deploy/user-rbac.yaml, namespace by
// namespace as deploy/README.md documents. These tests prove that this is enough to
// inject the agent into a pod and read its output, with the admission policies of
// deploy/admission-policy.yaml installed, and that PodSecurity still refuses a privileged
// agent where baseline is enforced.

func TestLimitedUserIsLimited(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods", "-n", "e2e"}, "yes"},
		{[]string{"patch", "pods", "--subresource=ephemeralcontainers", "-n", "e2e"}, "yes"},
		{[]string{"get", "pods", "--subresource=log", "-n", "e2e"}, "yes"},
		{[]string{"create", "pods", "-n", "podtrace-system"}, "yes"},
		{[]string{"get", "nodes"}, "yes"},
		// the NetworkPolicy model: the policies of the traced pods' namespaces, and
		// namespaces' labels for namespaceSelectors
		{[]string{"list", "networkpolicies.networking.k8s.io", "-n", "e2e"}, "yes"},
		{[]string{"get", "namespaces/e2e"}, "yes"},
		// nothing beyond what the plugin needs, and only where it is bound
		{[]string{"get", "pods", "-n", "default"}, "no"},
		{[]string{"patch", "pods", "--subresource=ephemeralcontainers", "-n", "default"}, "no"},
		{[]string{"create", "pods", "-n", "default"}, "no"},
		{[]string{"create", "pods", "-n", "e2e"}, "no"},
		{[]string{"delete", "pods", "-n", "e2e"}, "no"},
		{[]string{"create", "pods", "--subresource=exec", "-n", "e2e"}, "no"},
		{[]string{"get", "secrets", "-n", "podtrace-system"}, "no"},
		{[]string{"patch", "nodes"}, "no"},
		{[]string{"list", "networkpolicies.networking.k8s.io", "-n", "default"}, "no"},
		{[]string{"create", "networkpolicies.networking.k8s.io", "-n", "e2e"}, "no"},
		{[]string{"delete", "networkpolicies.networking.k8s.io", "-n", "e2e"}, "no"},
	} {
		r := kubectl(t, userConfig, append([]string{"auth", "can-i"}, c.args...)...)
		if got := strings.TrimSpace(r.stdout); got != c.want {
			t.Errorf("can-i %s: %q, want %q (%v %s)", strings.Join(c.args, " "), got, c.want, r.err, r.stderr)
		}
	}
}

// debugArgs injects the agent into pod-a as a privileged ephemeral container with
// kubectl debug (which the admission policy refuses to podtrace users).
func debugArgs(ns, name string) []string {
	return []string{"debug", "pod-a", "-n", ns, "--container=" + name, "--image=" + agentImage,
		"--image-pull-policy=Never", "--profile=sysadmin", "--",
		"/podtrace-agent", "--role", "pod", "--deadline", "3s"}
}

// The agent container exactly as the plugin builds it (its --dry-run patch), run for 3 s
// on its own: admitted for the limited user, it runs with a read-only root filesystem
// and the runtime's default seccomp profile, and its stream is readable.
func TestSmokeAgentAsLimitedUser(t *testing.T) {
	const ns = "e2e"
	name := uniqueName("podtrace-smoke")
	_, patch := planned(t)
	ec := renameAgent(t, patch, name)
	ec["args"], ec["stdin"], ec["stdinOnce"] = []any{"--role", "pod", "--deadline", "3s"}, false, false
	body, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustKubectl(t, userConfig, "patch", "pod", "pod-a", "-n", ns, "--subresource=ephemeralcontainers", "--type=strategic", "-p", string(body))

	// the container is in the spec, hardened, with our image, never pulled
	var p pod
	getJSON(t, userConfig, &p, "get", "pod", "-n", ns, "pod-a")
	found := false
	for _, ec := range p.Spec.EphemeralContainers {
		if ec.Name != name {
			continue
		}
		found = true
		if ec.Image != agentImage || ec.ImagePullPolicy != "Never" {
			t.Errorf("ephemeral container %s: image %q pull %q, want %q Never", name, ec.Image, ec.ImagePullPolicy, agentImage)
		}
		if sc := ec.SecurityContext; sc == nil || sc.Privileged != nil && *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("ephemeral container %s: security context %+v; want not privileged, read-only root, seccomp RuntimeDefault", name, sc)
		}
	}
	if !found {
		t.Fatalf("ephemeral container %s not in pod-a's spec", name)
	}

	// the agent runs to its deadline and exits 0
	eventually(t, 60*time.Second, "the agent container to terminate", func() (bool, string) {
		var p pod
		getJSON(t, userConfig, &p, "get", "pod", "-n", ns, "pod-a")
		s := p.ephemeralStatus(name)
		if s == nil {
			return false, "no status yet"
		}
		if w := s.State.Waiting; w != nil && (w.Reason == "ErrImageNeverPull" || strings.Contains(w.Reason, "Err")) {
			t.Fatalf("agent container waiting: %s: %s", w.Reason, w.Message)
		}
		if s.State.Terminated == nil {
			return false, fmt.Sprintf("%+v", s.State)
		}
		if s.State.Terminated.ExitCode != 0 {
			t.Fatalf("agent exited %d (%s)", s.State.Terminated.ExitCode, s.State.Terminated.Reason)
		}
		return true, ""
	})
	t.Logf("agent injected, ran and exited in %v", time.Since(start).Round(time.Millisecond))

	// its observation stream is readable by the limited user: versioned JSON lines with
	// consecutive sequence numbers, a hello once armed and a bye at the end
	logs := mustKubectl(t, userConfig, "logs", "pod-a", "-n", ns, "-c", name)
	hello, bye := -1, -1
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	for i, line := range lines {
		var obs struct {
			V    int    `json:"v"`
			Seq  int    `json:"seq"`
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal([]byte(line), &obs); err != nil {
			t.Fatalf("agent output line %d is not JSON: %q: %v", i+1, line, err)
		}
		if obs.V != 1 || obs.Seq != i+1 {
			t.Errorf("line %d: v=%d seq=%d, want v=1 seq=%d", i+1, obs.V, obs.Seq, i+1)
		}
		switch obs.Kind {
		case "hello":
			if hello < 0 {
				hello = i
			}
		case "bye":
			bye = i
		}
	}
	if hello < 0 || bye != len(lines)-1 || hello > bye {
		t.Fatalf("want a hello line and a bye line last; output:\n%s", logs)
	}
}

func TestSmokeBaselineRefusesPrivilegedAgent(t *testing.T) {
	const ns = "e2e-baseline"
	var before pod
	getJSON(t, userConfig, &before, "get", "pod", "-n", ns, "pod-a")

	r := kubectl(t, userConfig, debugArgs(ns, uniqueName("smoke"))...)
	if r.err == nil {
		t.Fatalf("privileged ephemeral container accepted in %s:\n%s", ns, r)
	}
	msg := r.stdout + r.stderr
	for _, want := range []string{`violates PodSecurity "baseline:latest"`, "privileged"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not mention %q:\n%s", want, r)
		}
	}
	if strings.Contains(msg, "forbidden: User") {
		t.Errorf("refused by RBAC, not by PodSecurity:\n%s", r)
	}

	var after pod
	getJSON(t, userConfig, &after, "get", "pod", "-n", ns, "pod-a")
	if len(after.Spec.EphemeralContainers) != len(before.Spec.EphemeralContainers) {
		t.Errorf("ephemeral containers of %s/pod-a: %d before, %d after a refused injection",
			ns, len(before.Spec.EphemeralContainers), len(after.Spec.EphemeralContainers))
	}
}
