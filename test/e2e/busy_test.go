//go:build e2e

package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The busy pair: the source pod floods the destination's UDP echo port
// (and the echo floods back) while the trace runs. The trace must be
// delivered, and what crossed the API server stays bounded whatever the
// flood: the agents' byte budget.

// workloadPod starts a workload pod with the given arguments on node 1 and
// returns its IP; it is deleted at the end.
func workloadPod(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	return workloadPodOn(t, nodeName, ns, name, args...)
}

// workloadPodOn is workloadPod on the given node.
func workloadPodOn(t *testing.T, node, ns, name string, args ...string) string {
	t.Helper()
	a, _ := json.Marshal(args)
	spec := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + ns + `"},
"spec":{"nodeName":"` + node + `","automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"workload","image":"` + env("WORKLOAD_IMAGE", "podtrace.local/workload:e2e") + `","imagePullPolicy":"Never","args":` + string(a) + `}]}}`
	cmd := exec.Command("kubectl", "--kubeconfig", adminConfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create %s: %v\n%s", name, err, out)
	}
	deleteAtCleanup(t, ns, name)
	var ip string
	eventually(t, 60*time.Second, name+" running", func() (bool, string) {
		var p pod
		getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
		ip = p.Status.PodIP
		return p.Status.Phase == "Running" && ip != "", p.Status.Phase
	})
	return ip
}

// deleteAtCleanup deletes the pod when the test ends. Not with kubectl():
// the test's context is cancelled before cleanups run, which would kill
// the delete before it is sent.
func deleteAtCleanup(t *testing.T, ns, name string) {
	t.Cleanup(func() {
		out, err := exec.Command("kubectl", "--kubeconfig", adminConfig, "delete", "pod", "-n", ns, name, "--wait=false").CombinedOutput()
		if err != nil {
			t.Errorf("delete %s/%s: %v\n%s", ns, name, err, out)
		}
	})
}

// traceHead is the first line of `-o json`.
type traceHead struct {
	Kind          string `json:"kind"`
	ReceivedBytes int64  `json:"receivedBytes"`
	Agents        []struct {
		ID            string `json:"id"`
		ReceivedBytes int64  `json:"receivedBytes"`
		Stats         []struct {
			Packets  uint64 `json:"packets"`
			Drops    uint64 `json:"drops"`
			CutLines uint64 `json:"cutLines"`
			CutBytes uint64 `json:"cutBytes"`
		} `json:"stats"`
	} `json:"agents"`
}

func TestClusterBusyPairDeliveredWithinTheBudget(t *testing.T) {
	// The whole stream of a 2-3 s trace of three agents within their
	// default budget (128 KiB/s each, one second of burst) and their
	// topology lines: about 2 MB. Without a budget the same trace under
	// this flood streams tens of megabytes.
	const bound = 8 << 20
	pps := env("E2E_FLOOD_PPS", "20000")
	suffix := uniqueName("busy")
	dstName, srcName := suffix+"-dst", suffix+"-src"
	dstIP := workloadPod(t, "e2e", dstName)
	workloadPod(t, "e2e", srcName, "--flood", dstIP+":8081", "--pps", pps)
	eventually(t, 30*time.Second, srcName+" flooding", func() (bool, string) {
		r := kubectl(t, adminConfig, "logs", "-n", "e2e", srcName)
		return strings.Contains(r.stdout+r.stderr, "flooding"), r.stdout + r.stderr
	})

	start := time.Now()
	r := kubectl(t, userConfig, podtraceArgs("e2e/"+srcName, "e2e/"+dstName, "-o", "json")...)
	t.Logf("kubectl podtrace (busy pair, %s pps): %v, %d bytes of JSON\nstderr:\n%s", pps, time.Since(start).Round(time.Millisecond), len(r.stdout), r.stderr)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var head traceHead
	var last jsonLine
	if err := json.Unmarshal([]byte(lines[0]), &head); err != nil || head.Kind != "trace" {
		t.Fatalf("first line: %v: %s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Kind != "verdict" || last.Result != "delivered" || last.Answer != "echo-reply" {
		t.Errorf("verdict %+v; want delivered, echo reply, beside the flood", last)
	}
	var received string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "podtrace: received ") {
			received = l
		}
	}
	if received == "" {
		t.Error("no `podtrace: received …` line on stderr")
	}
	var sum int64
	for _, a := range head.Agents {
		sum += a.ReceivedBytes
		for _, s := range a.Stats {
			t.Logf("agent %s: received %d bytes; kernel passed %d frames, dropped %d; budget cut %d lines (%d bytes)",
				a.ID, a.ReceivedBytes, s.Packets, s.Drops, s.CutLines, s.CutBytes)
		}
	}
	t.Logf("bytes through attach: %d (%s)", head.ReceivedBytes, received)
	if head.ReceivedBytes == 0 || sum != head.ReceivedBytes || len(head.Agents) != 3 {
		t.Errorf("receivedBytes %d, agents' sum %d, %d agents", head.ReceivedBytes, sum, len(head.Agents))
	}
	if head.ReceivedBytes > bound {
		t.Errorf("%d bytes crossed the API server for one probe; want at most %d", head.ReceivedBytes, bound)
	}
	noNodePodsEventually(t)
}
