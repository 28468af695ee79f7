//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// --kernel-drops on the cluster, as the limited user. As shipped the
// agent namespace's admission policy refuses the node agent's BPF and
// PERFMON: the trace stops in one line before creating anything. Once an
// admin allows them (kernelDrops: allow in ConfigMap podtrace-agent-policy,
// deploy/README.md), a UDP probe to a port pod-b does not listen on is
// answered port unreachable by pod-b's kernel, which frees the datagram
// as NO_SOCKET: the node agent's program, loaded in its pod with BPF and
// PERFMON only, names that reason, and the namespace it happened in.
func TestKernelDropsNameTheReasonOnTheCluster(t *testing.T) {
	args := podtraceArgs("e2e/pod-a", "e2e/pod-b", "--proto", "udp", "--port", "9", "--kernel-drops", "-o", "json")
	const cm = "podtrace-agent-policy"
	setKernelDrops := func(v string) {
		t.Helper()
		if r := kubectl(t, adminConfig, "-n", "podtrace-system", "patch", "configmap", cm, "--type", "merge", "-p", `{"data":{"kernelDrops":"`+v+`"}}`); r.err != nil {
			t.Fatalf("patch %s: %s", cm, r)
		}
	}
	setKernelDrops("deny")
	before := len(nodePods(t))
	r := kubectl(t, userConfig, args...)
	if r.err == nil || !strings.Contains(r.stderr, "--kernel-drops needs capabilities BPF and PERFMON") ||
		!strings.Contains(r.stderr, "nothing was created") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 2 {
		t.Fatalf("without the grant: want one line naming BPF and PERFMON and that nothing was created:\n%s", r)
	}
	if n := len(nodePods(t)); n != before {
		t.Errorf("node agent pods %d → %d: the refused trace created some", before, n)
	}

	setKernelDrops("allow")
	t.Cleanup(func() { setKernelDrops("deny") })
	// The policy's parameters reach the admission plugin within a second or so.
	var v struct {
		Kind   string `json:"kind"`
		Answer string `json:"answer"`
		Kernel *struct {
			Place, Netns, Reason, Location, Text string
		} `json:"kernel"`
	}
	eventually(t, 30e9, "a trace with --kernel-drops admitted", func() (bool, string) {
		r = kubectl(t, userConfig, args...)
		return r.err == nil, r.String()
	})
	t.Logf("%s", r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil || v.Kind != "verdict" {
		t.Fatalf("last line is not the verdict (%v):\n%s", err, r)
	}
	if v.Answer != "port-unreachable" || v.Kernel == nil || v.Kernel.Reason != "NO_SOCKET" || v.Kernel.Netns != "pod-b" || v.Kernel.Location == "" {
		t.Errorf("verdict answer %q, kernel %+v; want port-unreachable and the kernel's NO_SOCKET in pod-b, with its function", v.Answer, v.Kernel)
	}
	noNodePodsEventually(t)
}
