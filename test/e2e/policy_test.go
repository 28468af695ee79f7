//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The admission policies of deploy/admission-policy.yaml, installed by the harness as an
// admin installs them, on the real API server. Each refusal case starts from the exact
// objects the plugin would create (its --dry-run output) and changes one thing; the
// unchanged object is admitted, so a refusal is the change's doing.

const (
	namespacePolicy = "podtrace-agent-namespace"
	ephemeralPolicy = "podtrace-agent-ephemeral"
)

// planned returns what the plugin would create for a trace of e2e/pod-a → e2e/pod-b, as
// the limited user: the node agent pod, and the strategic merge patch that adds the agent
// to pod-a.
func planned(t *testing.T) (nodePod, patch map[string]any) {
	t.Helper()
	out := mustKubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--dry-run")...)
	for _, doc := range strings.Split(out, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("dry run document is not YAML: %v\n%s", err, doc)
		}
		switch {
		case strings.Contains(doc, "# agent ") && strings.Contains(doc, "node agent pod on node"):
			if nodePod == nil {
				nodePod = m
			}
		case strings.Contains(doc, "pods/ephemeralcontainers on pod e2e/pod-a"):
			patch = m
		}
	}
	if nodePod == nil || patch == nil {
		t.Fatalf("the dry run lacks a node pod or the patch of pod-a:\n%s", out)
	}
	return nodePod, patch
}

// renameAgent gives the agent container of the plugin's patch another name and returns
// it. The patch lists the pod's containers in order ($setElementOrder) when it has some
// already; without that list, the renamed agent is simply added.
func renameAgent(t *testing.T, patch map[string]any, name string) map[string]any {
	t.Helper()
	spec := at(t, patch, "spec")
	for k := range spec {
		if strings.HasPrefix(k, "$setElementOrder") {
			delete(spec, k)
		}
	}
	ec := at(t, patch, "spec", "ephemeralContainers", 0)
	ec["name"] = name
	return ec
}

// clone deep-copies a JSON-shaped value.
func clone(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// at walks maps and lists (a string key or an int index per step).
func at(t *testing.T, v any, path ...any) map[string]any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map at %q", path, k)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", path, k)
			}
			v = l[k]
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v: not a map", path)
	}
	return m
}

// refusedBy asserts that the API server refused a request and named the policy.
func refusedBy(t *testing.T, r result, policy string) {
	t.Helper()
	if r.err == nil {
		t.Errorf("admitted; want a refusal by %s:\n%s", policy, r)
		return
	}
	want := fmt.Sprintf("ValidatingAdmissionPolicy '%s' with binding '%s' denied request", policy, policy)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("refused, but not by the policy (want %q):\n%s", want, r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
}

// In the agent namespace the limited user may create the plugin's node agent pod and
// nothing else: a privileged pod, a hostPath pod, a pod of another image, a pod sharing the
// node's PID namespace are refused by the API server, naming the policy.
func TestPolicyAgentNamespaceAdmitsOnlyTheNodeAgent(t *testing.T) {
	base, _ := planned(t)
	if ns := at(t, base, "metadata")["namespace"]; ns != "podtrace-system" {
		t.Fatalf("the plugin's node pod is in namespace %v, want podtrace-system", ns)
	}
	workload := env("WORKLOAD_IMAGE", "podtrace.local/workload:e2e")
	for _, c := range []struct {
		name   string
		change func(pod map[string]any)
		admit  bool
	}{
		{"the plugin's node agent", func(map[string]any) {}, true},
		{"privileged", func(p map[string]any) {
			at(t, p, "spec", "containers", 0)["securityContext"] = map[string]any{"privileged": true}
		}, false},
		{"hostPath of /", func(p map[string]any) {
			at(t, p, "spec")["volumes"] = []any{map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}}}
			at(t, p, "spec", "containers", 0)["volumeMounts"] = []any{map[string]any{"name": "root", "mountPath": "/host"}}
		}, false},
		{"another image", func(p map[string]any) {
			c := at(t, p, "spec", "containers", 0)
			c["image"], c["command"] = workload, []any{"/workload"}
		}, false},
		{"the agent image with another command", func(p map[string]any) {
			at(t, p, "spec", "containers", 0)["command"] = []any{"/bin/sh"}
		}, false},
		{"hostPID", func(p map[string]any) { at(t, p, "spec")["hostPID"] = true }, false},
		{"a service account token", func(p map[string]any) { at(t, p, "spec")["automountServiceAccountToken"] = true }, false},
		{"SYS_ADMIN", func(p map[string]any) {
			at(t, p, "spec", "containers", 0, "securityContext", "capabilities")["add"] = []any{"NET_RAW", "NET_ADMIN", "SYS_ADMIN"}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := clone(t, base)
			name := uniqueName("podtrace-policy")
			at(t, p, "metadata")["name"] = name
			c.change(p)
			body, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if c.admit {
				// a server-side dry run goes through admission and creates nothing
				r := kubectlIn(t, userConfig, body, "create", "--dry-run=server", "-f", "-")
				if r.err != nil {
					t.Fatalf("the plugin's own node pod is refused:\n%s", r)
				}
				return
			}
			r := kubectlIn(t, userConfig, body, "create", "-f", "-")
			if r.err == nil {
				kubectl(t, adminConfig, "delete", "pod", "-n", "podtrace-system", name, "--wait=false")
			}
			refusedBy(t, r, namespacePolicy)
			if g := kubectl(t, adminConfig, "get", "pod", "-n", "podtrace-system", name); g.err == nil {
				t.Errorf("pod %s exists after the refusal", name)
			}
		})
	}
}

// The limited user may add the plugin's agent container to a pod it traces and no other
// ephemeral container: another image, a privileged agent, an agent that joins another
// container's processes are refused, naming the policy, and the pod is unchanged.
func TestPolicyEphemeralAdmitsOnlyTheAgent(t *testing.T) {
	_, base := planned(t)
	workload := env("WORKLOAD_IMAGE", "podtrace.local/workload:e2e")
	for _, c := range []struct {
		name   string
		change func(ec map[string]any)
		admit  bool
	}{
		{"the plugin's agent", func(map[string]any) {}, true},
		{"another image", func(ec map[string]any) { ec["image"], ec["command"] = workload, []any{"/workload"} }, false},
		{"privileged", func(ec map[string]any) { ec["securityContext"] = map[string]any{"privileged": true} }, false},
		{"joins the app's processes", func(ec map[string]any) { ec["targetContainerName"] = "workload" }, false},
		{"writable root filesystem", func(ec map[string]any) {
			at(t, ec, "securityContext")["readOnlyRootFilesystem"] = false
		}, false},
		{"a name that is not the agent's", func(ec map[string]any) { ec["name"] = uniqueName("debug") }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := ephemeralCount(t, "e2e", "pod-a")
			p := clone(t, base)
			ec := renameAgent(t, p, uniqueName("podtrace-policy"))
			c.change(ec)
			body, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"patch", "pod", "pod-a", "-n", "e2e", "--subresource=ephemeralcontainers", "--type=strategic", "-p", string(body)}
			if c.admit {
				if r := kubectl(t, userConfig, append(args, "--dry-run=server")...); r.err != nil {
					t.Fatalf("the plugin's own agent container is refused:\n%s", r)
				}
				return
			}
			refusedBy(t, kubectl(t, userConfig, args...), ephemeralPolicy)
			if after := ephemeralCount(t, "e2e", "pod-a"); after != before {
				t.Errorf("ephemeral containers of e2e/pod-a: %d before, %d after a refused patch", before, after)
			}
		})
	}
	// kubectl debug, the tool a user would reach for: a privileged container of the
	// agent's own image is refused too.
	before := ephemeralCount(t, "e2e", "pod-a")
	refusedBy(t, kubectl(t, userConfig, debugArgs("e2e", uniqueName("podtrace-debug"))...), ephemeralPolicy)
	if after := ephemeralCount(t, "e2e", "pod-a"); after != before {
		t.Errorf("ephemeral containers of e2e/pod-a: %d before, %d after a refused kubectl debug", before, after)
	}
}

// The policies constrain podtrace users only: a user who may add ephemeral containers
// through a role of their own (not podtrace-user), and an admin, keep `kubectl debug`
// with any container, here a privileged one.
func TestPolicyLeavesOtherUsersAlone(t *testing.T) {
	const user, ns = "podtrace-e2e-debugger", "e2e"
	kubectl(t, adminConfig, "delete", "role,rolebinding", user, user+"-debug", "-n", ns, "--ignore-not-found")
	mustKubectl(t, adminConfig, "create", "role", user, "-n", ns, "--verb=get,list,watch", "--resource=pods")
	mustKubectl(t, adminConfig, "create", "role", user+"-debug", "-n", ns, "--verb=get,patch", "--resource=pods/ephemeralcontainers")
	mustKubectl(t, adminConfig, "create", "rolebinding", user, "-n", ns, "--role="+user, "--user="+user)
	mustKubectl(t, adminConfig, "create", "rolebinding", user+"-debug", "-n", ns, "--role="+user+"-debug", "--user="+user)
	t.Cleanup(func() {
		if r := kubectl(t, adminConfig, "delete", "role,rolebinding", user, user+"-debug", "-n", ns); r.err != nil {
			t.Errorf("delete the debugger's roles: %s", r)
		}
	})
	for _, who := range []struct {
		name string
		args []string
	}{
		{"a user with a debug role of their own", []string{"--as", user}},
		{"the admin", nil},
	} {
		name := uniqueName("debug")
		r := kubectl(t, adminConfig, append(debugArgs(ns, name), who.args...)...)
		if r.err != nil {
			t.Errorf("%s: kubectl debug --profile=sysadmin refused:\n%s", who.name, r)
			continue
		}
		var p pod
		getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, "pod-a")
		found := false
		for _, ec := range p.Spec.EphemeralContainers {
			if ec.Name == name {
				found = ec.SecurityContext != nil && ec.SecurityContext.Privileged != nil && *ec.SecurityContext.Privileged
			}
		}
		if !found {
			t.Errorf("%s: no privileged ephemeral container %s in pod-a", who.name, name)
		}
	}
}

// The limited user may attach to agent containers only (which every trace does): an
// attach to the application's container of a pod it traces is refused, naming the policy.
func TestPolicyAttachOnlyToAgents(t *testing.T) {
	r := kubectl(t, userConfig, "attach", "pod-a", "-n", "e2e", "-c", "workload")
	refusedBy(t, r, "podtrace-agent-attach")
}

// An agent image the admin did not allow is refused in the plugin's preflight: one error
// naming the policy, and nothing is created.
func TestPolicyForeignImage(t *testing.T) {
	before := ephemeralCount(t, "e2e", "pod-a")
	r := kubectl(t, userConfig, "podtrace", "e2e/pod-a", "e2e/pod-b", "--image", "podtrace.local/no-such-agent:e2e", "--image-pull-policy", "Never")
	if r.err == nil {
		t.Fatalf("a trace with an image the policy does not admit succeeded:\n%s", r)
	}
	var errs []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "error:") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Fatalf("want one error line, got %d:\n%s", len(errs), r.stderr)
	}
	for _, want := range []string{`the admission policy "podtrace-agent-ephemeral" refuses it`, "podtrace.local/no-such-agent:e2e", "nothing was created"} {
		if !strings.Contains(errs[0], want) {
			t.Errorf("error lacks %q: %s", want, errs[0])
		}
	}
	if after := ephemeralCount(t, "e2e", "pod-a"); after != before {
		t.Errorf("ephemeral containers of e2e/pod-a: %d before, %d after", before, after)
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("node pods left: %v", p)
	}
}
