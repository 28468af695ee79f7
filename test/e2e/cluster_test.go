//go:build e2e

package e2e

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestClusterShape checks what every other end-to-end test relies on: the node is
// Ready, the workload pods run on it with addresses from the pod CIDR, and each of
// them has its host-side veth on the cni0 bridge.
func TestClusterShape(t *testing.T) {
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	}
	getJSON(t, adminConfig, &node, "get", "node", nodeName)
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == "Ready" && c.Status == "True")
	}
	if !ready {
		t.Fatalf("node %s is not Ready: %+v", nodeName, node.Status.Conditions)
	}

	_, cidr, err := net.ParseCIDR(podCIDR)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"e2e": {"pod-a", "pod-b", "pod-c"}, "e2e-baseline": {"pod-a", "pod-b"}, "e2e-restricted": {"pod-a", "pod-b"}}
	npods := 0
	for ns, names := range want {
		for _, name := range names {
			var p pod
			getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
			ip := net.ParseIP(p.Status.PodIP)
			if p.Status.Phase != "Running" || ip == nil || !cidr.Contains(ip) || p.Spec.NodeName != nodeName {
				t.Errorf("%s/%s: phase %q ip %q node %q, want Running with an IP in %s on %s",
					ns, name, p.Status.Phase, p.Status.PodIP, p.Spec.NodeName, podCIDR, nodeName)
			}
			npods++
		}
	}

	out, err := exec.Command("ip", "-o", "link", "show", "master", "cni0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show master cni0: %v\n%s", err, out)
	}
	veths := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "veth") {
			veths++
		}
	}
	// other pods (agents of earlier tests) may be there as well
	if veths < npods {
		t.Errorf("%d veths on cni0, want at least %d (one per pod):\n%s", veths, npods, out)
	}
}
