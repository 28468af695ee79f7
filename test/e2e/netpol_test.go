//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// The NetworkPolicy model on the real API server, read by the limited user
// (deploy/user-rbac.yaml: list networkpolicies). The cluster runs no policy
// engine, so a policy that denies the probe does not stop it: the trace is
// delivered, and it must say that the model denies it and that they disagree.

// denyPolicy admits only pod-b's named port udp-echo (UDP 8081, in the pod's
// spec): a probe to TCP 8080 is denied by the API's rules (ingress isolation
// by podSelector, no rule whose ports match), one to UDP 8081 is admitted.
// It is deleted at the end of the test.
func denyPolicy(t *testing.T) string {
	t.Helper()
	return applyPolicy(t, "deny-web", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: UDP, port: udp-echo}]
`)
}

// applyPolicy creates a NetworkPolicy in namespace e2e with this spec (YAML,
// indented two spaces), deleted at the end of the test.
func applyPolicy(t *testing.T, prefix, specYAML string) string {
	t.Helper()
	name := uniqueName(prefix)
	spec := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ` + name + `, namespace: e2e}
spec:` + specYAML
	if r := kubectlIn(t, adminConfig, []byte(spec), "apply", "-f", "-"); r.err != nil {
		t.Fatalf("create NetworkPolicy %s: %s", name, r)
	}
	t.Cleanup(func() {
		if r := kubectl(t, adminConfig, "delete", "networkpolicy", "-n", "e2e", name, "--wait=false"); r.err != nil {
			t.Errorf("delete NetworkPolicy %s: %s", name, r)
		}
	})
	return name
}

func TestNetworkPolicyModelDisagreesWithADeliveredTrace(t *testing.T) {
	name := denyPolicy(t)
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "tcp", "--port", "8080", "--color", "never")...)
	t.Logf("%s", r)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	for _, want := range []string{
		"policy  denied by NetworkPolicy e2e/" + name + " (ingress, selects pod-b; no rule admits pod-a tcp/8080)",
		"disagree: the probe was delivered (1 of 1) while the model denies it",
		"verdict DELIVERED",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("trace lacks %q", want)
		}
	}

	r = kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "tcp", "--port", "8080", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var v struct {
		Kind   string `json:"kind"`
		Result string `json:"result"`
		Policy *struct {
			Admitted     bool   `json:"admitted"`
			Statement    string `json:"statement"`
			Disagreement string `json:"disagreement"`
		} `json:"policy"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("last line not JSON: %v", err)
	}
	if v.Kind != "verdict" || v.Result != "delivered" || v.Policy == nil || v.Policy.Admitted ||
		!strings.Contains(v.Policy.Statement, "e2e/"+name) || v.Policy.Disagreement == "" {
		t.Errorf("verdict line: %s", lines[len(lines)-1])
	}

	// The probe the policy admits by its named port is delivered too: they
	// agree.
	r = kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "udp", "--port", "8081", "--color", "never")...)
	t.Logf("%s", r)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	want := "policy  admitted: no policy selects pod-a for egress; udp/8081 ingress by e2e/" + name + " ingress rule 1"
	if !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "disagree") {
		t.Errorf("trace of udp/8081 lacks %q or says they disagree", want)
	}
	noNodePodsEventually(t)
}

// An egress policy on the source side is named as such; a namespaceSelector
// is matched on the namespace's labels, which the limited user reads
// (deploy/user-rbac.yaml: get namespaces).
func TestNetworkPolicyModelEgressAndNamespaceLabels(t *testing.T) {
	egress := applyPolicy(t, "deny-egress", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}
  policyTypes: [Egress]
`)
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "tcp", "--port", "8080", "--color", "never")...)
	t.Logf("%s", r)
	want := "policy  denied by NetworkPolicy e2e/" + egress + " (egress, selects pod-a; no rule admits tcp/8080 to pod-b)"
	if r.err != nil || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "disagree: ") {
		t.Errorf("trace lacks %q and a disagreement", want)
	}

	const label = "podtrace.io/e2e-team"
	mustKubectl(t, adminConfig, "label", "namespace", "e2e", label+"=blue")
	t.Cleanup(func() {
		if r := kubectl(t, adminConfig, "label", "namespace", "e2e", label+"-"); r.err != nil {
			t.Errorf("remove the label: %s", r)
		}
	})
	allow := applyPolicy(t, "allow-blue", `
  podSelector: {matchLabels: {podtrace.io/e2e: pod-a}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {`+label+`: blue}}, podSelector: {matchLabels: {podtrace.io/e2e: pod-b}}}]
    ports: [{port: tcp-echo}]
`)
	r = kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "tcp", "--port", "8080", "--color", "never")...)
	t.Logf("%s", r)
	want = "policy  admitted: tcp/8080 egress by e2e/" + allow + " egress rule 1; no policy selects pod-b for ingress"
	if r.err != nil || !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "disagree") {
		t.Errorf("trace lacks %q or says they disagree", want)
	}
	noNodePodsEventually(t)
}
