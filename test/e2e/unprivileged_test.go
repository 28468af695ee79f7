//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Active traces where PodSecurity baseline or restricted is enforced: the
// limited user runs `kubectl podtrace` with the default --mode auto, which
// picks mode unprivileged (an agent without privilege in the source pod
// sends the probe; the node agents capture) and says so.

// unprivLine is the part of a JSON line these tests read.
type unprivLine struct {
	Kind string `json:"kind"`
	Mode *struct {
		Name string `json:"name"`
		Why  string `json:"why"`
	} `json:"mode"`
	Agents []struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	} `json:"agents"`
	ProbeID string `json:"probeId"`
	Reply   bool   `json:"reply"`
	Agent   string `json:"agent"`
	Iface   string `json:"iface"`
	Role    string `json:"role"`
	Hops    []struct {
		Place, Label, Role, Status, Detail string
	} `json:"hops"`
	Result   string `json:"result"`
	Answer   string `json:"answer"`
	LastSeen string `json:"lastSeen"`
	NotSeen  string `json:"notSeen"`
	Reason   string `json:"reason"`
	Path     string `json:"path"`
}

func parseUnpriv(t *testing.T, out string) []unprivLine {
	t.Helper()
	var lines []unprivLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var x unprivLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		lines = append(lines, x)
	}
	if len(lines) < 2 || lines[0].Kind != "trace" || lines[len(lines)-1].Kind != "verdict" {
		t.Fatalf("want a trace line first and a verdict last:\n%s", out)
	}
	return lines
}

// ephemeralShape is the added agent container as the API server holds it.
type ephemeralShape struct {
	Spec struct {
		EphemeralContainers []struct {
			Name            string   `json:"name"`
			Args            []string `json:"args"`
			SecurityContext struct {
				RunAsUser                *int64 `json:"runAsUser"`
				RunAsNonRoot             *bool  `json:"runAsNonRoot"`
				AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
				Capabilities             *struct {
					Add  []string `json:"add"`
					Drop []string `json:"drop"`
				} `json:"capabilities"`
			} `json:"securityContext"`
		} `json:"ephemeralContainers"`
	} `json:"spec"`
}

// checkUnprivilegedMode checks what every unprivileged trace shows: the
// mode and why on stderr and in the trace line, one agent in the source
// pod (unprivileged), none in the destination pod, and the pods' own eth0
// on the path as not observable (not captured), never lost.
func checkUnprivilegedMode(t *testing.T, ns string, r result, lines []unprivLine, before map[string]int) {
	t.Helper()
	level := strings.TrimPrefix(ns, "e2e-")
	if !strings.Contains(r.stderr, "podtrace: mode unprivileged: ") || !strings.Contains(r.stderr, fmt.Sprintf("PodSecurity %q", level)) {
		t.Errorf("stderr does not say the mode and why:\n%s", r.stderr)
	}
	if m := lines[0].Mode; m == nil || m.Name != "unprivileged" || !strings.Contains(m.Why, fmt.Sprintf("PodSecurity %q", level)) {
		t.Errorf("trace line mode %+v; want unprivileged, because of PodSecurity %q", m, level)
	}
	for _, l := range lines {
		if l.Kind == "hop" && l.Role == "pod eth0" {
			t.Errorf("a hop at a pod's eth0 (%s): nothing captures there in mode unprivileged", l.Agent)
		}
		if l.Kind == "path" {
			first, last := l.Hops[0], l.Hops[len(l.Hops)-1]
			if first.Role != "pod eth0" || first.Status != "not observable" || !strings.Contains(first.Detail, "not captured") {
				t.Errorf("path starts with %+v; want pod-a eth0, not observable (not captured)", first)
			}
			if last.Role != "pod eth0" || last.Status != "not observable" {
				t.Errorf("path ends with %+v; want the destination's eth0, not observable", last)
			}
		}
	}
	if a, b := ephemeralCount(t, ns, "pod-a"), ephemeralCount(t, ns, "pod-b"); a != before["pod-a"]+1 || b != before["pod-b"] {
		t.Errorf("ephemeral containers pod-a %d → %d, pod-b %d → %d; want one more in pod-a only", before["pod-a"], a, before["pod-b"], b)
	}
	var p ephemeralShape
	getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, "pod-a")
	ec := p.Spec.EphemeralContainers[len(p.Spec.EphemeralContainers)-1]
	sc := ec.SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || strings.Join(sc.Capabilities.Drop, ",") != "ALL" || !strings.Contains(strings.Join(ec.Args, " "), "--unprivileged") {
		t.Errorf("agent container %s: %+v args %v; want non-root, no capability, --unprivileged", ec.Name, sc, ec.Args)
	}
}

func counts(t *testing.T, ns string) map[string]int {
	return map[string]int{"pod-a": ephemeralCount(t, ns, "pod-a"), "pod-b": ephemeralCount(t, ns, "pod-b")}
}

func TestUnprivilegedModeTCPAndICMPDelivered(t *testing.T) {
	for _, ns := range []string{"e2e-baseline", "e2e-restricted"} {
		t.Run(ns+" tcp", func(t *testing.T) {
			before := counts(t, ns)
			r := kubectl(t, userConfig, podtraceArgs(ns+"/pod-a", ns+"/pod-b", "--proto", "tcp", "--port", "8080", "-o", "json")...)
			if r.err != nil {
				t.Fatalf("trace failed: %s", r)
			}
			lines := parseUnpriv(t, r.stdout)
			v := lines[len(lines)-1]
			t.Logf("verdict %s %s · %s", v.Result, v.Answer, v.Path)
			if v.Result != "delivered" || v.Answer != "syn-ack" || !strings.Contains(v.Path, "pod-a:eth0 (not captured)") {
				t.Errorf("verdict %+v; want delivered, syn-ack, from pod-a:eth0 (not captured)", v)
			}
			hosts := map[string]bool{}
			for _, l := range lines {
				if l.Kind == "hop" && l.ProbeID == "tcp/1" && !l.Reply && l.Role == "host veth" {
					hosts[l.Iface] = true
				}
			}
			if len(hosts) != 2 {
				t.Errorf("the SYN was seen at host veths %v; want 2 (pod-a's and pod-b's)", hosts)
			}
			checkUnprivilegedMode(t, ns, r, lines, before)
			noNodePodsEventually(t)
		})
		t.Run(ns+" icmp", func(t *testing.T) {
			before := counts(t, ns)
			r := kubectl(t, userConfig, podtraceArgs(ns+"/pod-a", ns+"/pod-b", "--color", "never")...)
			if r.err != nil {
				t.Fatalf("trace failed: %s", r)
			}
			t.Logf("%s", r.stdout)
			for _, want := range []string{"\nmode    unprivileged · namespace", "ICMP echo request", "ICMP echo reply", "verdict DELIVERED", "pod-a:eth0 (not captured)", "not captured: the agent in pod-a runs unprivileged"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("trace lacks %q", want)
				}
			}
			r2 := kubectl(t, userConfig, podtraceArgs(ns+"/pod-a", ns+"/pod-b", "-o", "json")...)
			if r2.err != nil {
				t.Fatalf("trace failed: %s", r2)
			}
			lines := parseUnpriv(t, r2.stdout)
			if v := lines[len(lines)-1]; v.Result != "delivered" || v.Answer != "echo-reply" {
				t.Errorf("verdict %+v; want delivered, echo-reply", v)
			}
			before["pod-a"]++ // the text run's
			checkUnprivilegedMode(t, ns, r2, lines, before)
			noNodePodsEventually(t)
		})
	}
}

// restrictedPodOnNode2 starts a workload pod that PodSecurity restricted
// admits on the second node, deleted at the end.
func restrictedPodOnNode2(t *testing.T, ns string) string {
	t.Helper()
	name := uniqueName("far")
	spec := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + ns + `"},
"spec":{"nodeName":"` + node2Name + `","automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"securityContext":{"runAsNonRoot":true,"runAsUser":65532,"runAsGroup":65532,"seccompProfile":{"type":"RuntimeDefault"}},
"containers":[{"name":"workload","image":"` + env("WORKLOAD_IMAGE", "podtrace.local/workload:e2e") + `","imagePullPolicy":"Never",
"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}`
	cmd := exec.Command("kubectl", "--kubeconfig", adminConfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(spec)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create %s: %v\n%s", name, err, out)
	}
	deleteAtCleanup(t, ns, name)
	eventually(t, 60*time.Second, name+" running", func() (bool, string) {
		var p pod
		getJSON(t, adminConfig, &p, "get", "pod", "-n", ns, name)
		return p.Status.Phase == "Running" && p.Status.PodIP != "", p.Status.Phase
	})
	return name
}

// A drop between the nodes, in the wire's own network namespace (as
// TestCrossNodeUnderlayDrop does): the node agents place the loss between
// node 1's NIC and node 2's, though no agent captures in the pods, for a
// TCP and an ICMP probe.
func TestUnprivilegedModeLocalisesADrop(t *testing.T) {
	mode := routingMode(t)
	for _, ns := range []string{"e2e-baseline", "e2e-restricted"} {
		t.Run(ns, func(t *testing.T) {
			far := restrictedPodOnNode2(t, ns)
			wire := filepath.Join(stateDir, "netns", "wire")
			nft := func(args ...string) error {
				out, err := exec.Command("nsenter", append([]string{"--net=" + wire, "--", "nft"}, args...)...).CombinedOutput()
				if err != nil {
					return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
				}
				return nil
			}
			const table = "podtrace-e2e-unpriv-drop"
			match := map[string]string{"vxlan": "udp dport " + vxlanPort, "hostgw": "ip daddr " + env("POD2_CIDR", "10.244.1.0/24")}[mode]
			_ = nft("delete", "table", "bridge", table)
			for _, cmd := range [][]string{
				{"add", "table", "bridge", table},
				{"add", "chain", "bridge", table, "between", "{ type filter hook forward priority 0; }"},
				{"add", "rule", "bridge", table, "between", match, "counter", "drop"},
			} {
				if err := nft(cmd...); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				if err := nft("delete", "table", "bridge", table); err != nil {
					t.Error(err)
				}
			})
			// TCP needs no privilege; ICMP goes through the pod's
			// unprivileged ping socket (ping_group_range).
			for _, probe := range [][]string{{"--proto", "tcp", "--port", "8080"}, {"--proto", "icmp"}} {
				r := kubectl(t, userConfig, podtraceArgs(append([]string{ns + "/pod-a", ns + "/" + far, "-o", "json"}, probe...)...)...)
				var ee *exec.ExitError
				if !errors.As(r.err, &ee) || ee.ExitCode() != 3 {
					t.Fatalf("%s: want exit status 3 (not delivered): %s", probe[1], r)
				}
				lines := parseUnpriv(t, r.stdout)
				v := lines[len(lines)-1]
				t.Logf("routing %s, %s, dropping %q on the wire: %s · last seen %s · not seen %s · %s", mode, probe[1], match, v.Result, v.LastSeen, v.NotSeen, v.Reason)
				if v.Result != "lost" || !strings.Contains(v.LastSeen, nodeName+" "+node1NIC) || !strings.Contains(v.NotSeen, node2Name+" "+node2NIC) || !strings.Contains(v.Reason, "between") {
					t.Errorf("%s: verdict %+v; want lost between %s's %s and %s's %s", probe[1], v, nodeName, node1NIC, node2Name, node2NIC)
				}
				if m := lines[0].Mode; m == nil || m.Name != "unprivileged" {
					t.Errorf("%s: trace line mode %+v; want unprivileged", probe[1], m)
				}
			}
			out, _ := exec.Command("nsenter", "--net="+wire, "--", "nft", "list", "table", "bridge", table).CombinedOutput()
			if !regexp.MustCompile(`counter packets [1-9]`).Match(out) {
				t.Errorf("the rule on the wire dropped nothing:\n%s", out)
			}
			noNodePodsEventually(t)
		})
	}
}
