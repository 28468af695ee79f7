package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// A node that cannot deliver the probe answers pod-a itself with an ICMP
// destination unreachable from its own address: the probe is lost at that
// node, and the verdict says which node answered what. With forwarding on
// (a node routes its pods' traffic), the bridge lab's node answers
//
//   - network unreachable at once when it has no route to the address
//     (RFC 792 code 0; the kernel's ip_error on a failed route lookup);
//   - host unreachable when its route leads out of an interface on which
//     nobody answers its ARP (code 1), after its three ARP requests
//     (mcast_solicit) went unanswered.
func TestICMPErrorFromTheNodeIsLostAtTheNode(t *testing.T) {
	for _, c := range []struct {
		name, answer, words string
		route               bool
	}{
		{"no route", "net-unreachable", "answered network unreachable (ICMP destination unreachable, code 0)", false},
		{"no ARP answer on the way", "host-unreachable", "answered host unreachable (ICMP destination unreachable, code 1)", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := buildLab(t)
			a := pod(t, l, "pod-a")
			node := l.Nodes[0].NetNS
			nettest.In(t, node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
			if c.route {
				// A segment with nobody on it: the far end of a veth
				// without an address answers no ARP.
				far := nettest.NS(t, l.Prefix+"-x")
				nettest.Veth(t, node, "segx", far, "segy")
				nettest.In(t, node, "ip", "addr", "add", "192.168.60.1/24", "dev", "segx")
				nettest.In(t, node, "ip", "link", "set", "segx", "up")
				nettest.In(t, far, "ip", "link", "set", "segy", "up")
			}
			r := podtrace(t, "local", "--from", a.NetNS, "--to", "192.168.60.7", "--node-netns", node, "-o", "json", "--wait", "8s")
			if r.code != ExitLost {
				t.Fatalf("exit %d; want %d\n%s", r.code, ExitLost, r.stderr)
			}
			v := parseJSON(t, r.stdout)
			last := v[len(v)-1]
			var ev struct {
				Evidence []string `json:"evidence"`
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil {
				t.Fatal(err)
			}
			t.Logf("verdict %s, answer %s, last seen %q\n  reason: %s\n  evidence: %q", last.Result, last.Answer, last.Last, last.Reason, ev.Evidence)
			if last.Result != "lost" || last.Answer != c.answer {
				t.Errorf("result %q, answer %q; want lost, %s", last.Result, last.Answer, c.answer)
			}
			if want := node + " (10.244.0.1) " + c.words; !strings.Contains(last.Reason, want) {
				t.Errorf("reason %q lacks %q", last.Reason, want)
			}
			if !strings.HasPrefix(last.Last, node+" ") {
				t.Errorf("last seen %q; want a hop of %s", last.Last, node)
			}
			// The node asked on segx, where no bridge floods anything:
			// the ports that flooded pod-a's own ARP for its gateway are
			// no part of it.
			if evidence := strings.Join(ev.Evidence, "\n"); c.route && (!strings.Contains(evidence, "who-has 192.168.60.7 was asked 3 time(s) and nobody answered") ||
				strings.Contains(evidence, "flooded to")) {
				t.Errorf("evidence %q; want the node's three unanswered ARP requests, flooded nowhere", ev.Evidence)
			}
		})
	}
}

// IPv6 resolves addresses by neighbour discovery (RFC 4861): for an
// address nobody on the bridge has, pod-a's kernel sends three
// solicitations (MAX_MULTICAST_SOLICIT), one a second, the bridge floods
// them, nobody advertises, and the echo request never leaves pod-a. The
// verdict names neighbour discovery, as it names ARP for IPv4.
func TestIPv6AbsentDestinationIsNeighbourDiscoveryUnanswered(t *testing.T) {
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	t.Cleanup(func() { assertNothingLeft(t, p) }) // runs last: after the namespaces are deleted
	node, a, b := nettest.NS(t, p+"-node"), nettest.NS(t, p+"-a"), nettest.NS(t, p+"-b")
	nettest.Run(t, "ip", "-n", node, "link", "add", "br0", "type", "bridge")
	nettest.Run(t, "ip", "-n", node, "link", "set", "br0", "up")
	for i, pod := range []string{a, b} {
		host := fmt.Sprintf("%sv%d", p, i)
		nettest.Veth(t, node, host, pod, p+"e")
		nettest.Run(t, "ip", "-n", node, "link", "set", host, "master", "br0")
		nettest.Run(t, "ip", "-n", pod, "link", "set", p+"e", "name", "eth0")
		nettest.Run(t, "ip", "-n", pod, "addr", "add", fmt.Sprintf("fd00:db8::%d/64", i+2), "dev", "eth0", "nodad")
		nettest.Run(t, "ip", "-n", pod, "link", "set", "eth0", "up")
	}
	r := podtrace(t, "local", "--from", a, "--to", "fd00:db8::99", "--node-netns", node, "-o", "json", "--wait", "6s")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d\n%s", r.code, ExitLost, r.stderr)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	t.Logf("verdict %s: %s", last.Result, last.Reason)
	if last.Result != "arp-unanswered" || !strings.Contains(last.Reason, "neighbour discovery unanswered: fd00:db8::99 was solicited 3 time(s) and nobody answered") ||
		!strings.Contains(last.Reason, fmt.Sprintf("flooded to %sv1", p)) {
		t.Errorf("verdict %+v; want neighbour discovery unanswered for fd00:db8::99, three solicitations flooded to pod-b's port", last)
	}
}
