package render

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
)

// The NetworkPolicy model's statement is printed just above the verdict (the
// verdict stays the last line), with the disagreement under it; the JSON
// verdict line carries it as "policy".
func TestPolicyEvidenceIsPrintedBesideTheVerdict(t *testing.T) {
	dirs, err := filepath.Glob("testdata/recordings/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	s, streams, armed, notes, err := session.Load(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	tr := merge.Merge(s, streams)
	tr.Policy = &trace.PolicyEvidence{Statement: "denied by NetworkPolicy e2e/deny-web (ingress, selects pod-b; no rule admits pod-a tcp/8080)",
		Disagreement: "the probe was delivered (1 of 1) while the model denies it\x1b[31m"}
	h := Header{Armed: armed, Notes: notes}
	var plain, colored, js bytes.Buffer
	if err := Text(&plain, tr, h, false); err != nil {
		t.Fatal(err)
	}
	if err := Text(&colored, tr, h, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(plain.String(), "\n"), "\n")
	n := len(lines)
	if n < 3 || !strings.HasPrefix(lines[n-1], "verdict ") ||
		lines[n-3] != "policy  denied by NetworkPolicy e2e/deny-web (ingress, selects pod-b; no rule admits pod-a tcp/8080)" ||
		lines[n-2] != `        disagree: the probe was delivered (1 of 1) while the model denies it\x1b[31m` {
		t.Errorf("last three lines:\n%s", strings.Join(lines[max(0, n-3):], "\n"))
	}
	if !bytes.Equal(stripANSI(colored.Bytes()), plain.Bytes()) {
		t.Errorf("without its colors, the colored trace must read exactly like the plain one")
	}
	if err := JSON(&js, tr, h); err != nil {
		t.Fatal(err)
	}
	jl := strings.Split(strings.TrimSpace(js.String()), "\n")
	var v struct {
		Kind   string                `json:"kind"`
		Policy *trace.PolicyEvidence `json:"policy"`
	}
	if err := json.Unmarshal([]byte(jl[len(jl)-1]), &v); err != nil {
		t.Fatal(err)
	}
	if v.Kind != "verdict" || v.Policy == nil || *v.Policy != *tr.Policy {
		t.Errorf("verdict line %s", jl[len(jl)-1])
	}

	tr.Policy = &trace.PolicyEvidence{Unavailable: `list networkpolicies in namespace "e2e": permission denied`}
	plain.Reset()
	if err := Text(&plain, tr, h, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain.String(), "policy  no model: list networkpolicies in namespace \"e2e\": permission denied\nverdict ") {
		t.Errorf("unavailable model not said:\n%s", plain.String())
	}
}
