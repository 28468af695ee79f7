//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestClusterNetfilterDropIsNamed: a rule in node 2's forward path drops TCP
// 8080 toward its pods. A trace from pod-a (node 1) to pod-x (node 2) as the
// limited user is lost there, and the verdict names the rule, as nft lists it
// in node 2's namespace, from the node agent's own netfilter trace: the node
// agent pod (NET_RAW and NET_ADMIN only, as deploy/ admits it) can trace.
// No tracing table is left on either node.
func TestClusterNetfilterDropIsNamed(t *testing.T) {
	node2 := filepath.Join(stateDir, "netns", "node2")
	nft := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"--net=" + node2, "--", "nft"}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	const table = "podtrace-e2e-fwd"
	_, _ = nft("delete", "table", "inet", table)
	for _, cmd := range [][]string{
		{"add", "table", "inet", table},
		{"add", "chain", "inet", table, "forward", "{ type filter hook forward priority 0; policy accept; }"},
		{"add", "rule", "inet", table, "forward", "tcp", "dport", "8080", "counter", "drop"},
	} {
		if _, err := nft(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if _, err := nft("delete", "table", "inet", table); err != nil {
			t.Error(err)
		}
	})
	listing, err := nft("-a", "list", "table", "inet", table)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(tcp dport 8080 counter) packets \d+ bytes \d+ (drop) # handle (\d+)$`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no drop rule in nft's listing:\n%s", listing)
	}
	wantRule, wantHandle := m[1]+" "+m[2], m[3]

	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-x", "--proto", "tcp", "--port", "8080", "-o", "json", "--wait", "500ms")...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var v struct {
		Result string `json:"result"`
		Reason string `json:"reason"`
		Drop   *struct {
			By, Agent, Backend, Family, Table, Chain, Rule, Verdict, Text string
			Handle                                                        uint64
		} `json:"drop"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("verdict: %v\n%s", err, r)
	}
	t.Logf("verdict %s: %s · %+v", v.Result, v.Reason, v.Drop)
	if v.Result != "lost" || v.Drop == nil {
		t.Fatalf("verdict %+v; want lost with the rule named\n%s", v, r)
	}
	d := v.Drop
	if d.Agent != node2Name || d.Family != "inet" || d.Table != table || d.Chain != "forward" || d.Rule != wantRule ||
		strconv.FormatUint(d.Handle, 10) != wantHandle || d.Verdict != "drop" || d.Backend != "nftables" {
		t.Errorf("drop %+v; want %s's inet %s forward rule %q (handle %s)", *d, node2Name, table, wantRule, wantHandle)
	}
	// The agents' tracing tables went with them, on both nodes.
	if out, _ := nft("list", "tables"); strings.Contains(out, "podtrace_trace_") {
		t.Errorf("a tracing table is left on %s:\n%s", node2Name, out)
	}
	if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "podtrace_trace_") {
		t.Errorf("a tracing table is left on %s:\n%s", nodeName, out)
	}
	noNodePodsEventually(t)
}
