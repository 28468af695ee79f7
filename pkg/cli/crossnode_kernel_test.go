package cli

// Real-kernel tests of traces across nodes and of CNIs without a bridge:
// the lab's flannel-style VXLAN and Calico-style routed topologies, and a
// two-node overlay built here whose underlay runs through a switch no agent
// watches (nodes joined by their VTEP addresses, as on a real cluster).

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
)

// Fields of the JSON lines beyond hopLine's.
type traceLine struct {
	Kind       string `json:"kind"`
	Discovered string `json:"discoveredShape"`
	Clocks     []struct {
		Node    string `json:"node"`
		Offset  int64  `json:"offsetNs"`
		Bound   int64  `json:"boundNs"`
		Pairs   int    `json:"pairs"`
		Applied bool   `json:"applied"`
	} `json:"clocks"`
	Hops []struct {
		Place, Label, Role, Detail, Status string
	} `json:"hops"`
	Journey int    `json:"journey"`
	Iface   string `json:"iface"`
	Agent   string `json:"agent"`
	Packet  *struct {
		Encap *struct {
			Type     string `json:"type"`
			VNI      int    `json:"vni"`
			OuterSrc string `json:"outerSrc"`
			OuterDst string `json:"outerDst"`
			DstPort  int    `json:"dstPort"`
		} `json:"encap"`
	} `json:"packet"`
}

func parseExtra(t *testing.T, out string) (head, path traceLine, encap map[string]traceLine) {
	t.Helper()
	encap = map[string]traceLine{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var x traceLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("bad JSON line: %v\n%s", err, l)
		}
		switch x.Kind {
		case "trace":
			head = x
		case "path":
			path = x
		case "hop":
			if x.Packet != nil && x.Packet.Encap != nil {
				encap[fmt.Sprintf("%d/%s:%s", x.Journey, x.Agent, x.Iface)] = x
			}
		}
	}
	return head, path, encap
}

func roles(hops []hopLine) string {
	var r []string
	for _, h := range hops {
		r = append(r, h.Role)
	}
	return strings.Join(r, ",")
}

const vxlanRoles = "pod eth0,host veth,bridge,overlay,node NIC,node NIC,overlay,bridge,host veth,pod eth0"

// checkOverlayTrace checks a delivered pod-a → pod-b trace across an
// overlay: both ways through every hop, outer headers on the underlay.
func checkOverlayTrace(t *testing.T, out, src, dst, vtep1, vtep2 string, vni, port int) {
	t.Helper()
	lines := parseJSON(t, out)
	if v := lines[len(lines)-1]; v.Result != "delivered" || v.Answer != "echo-reply" {
		t.Fatalf("verdict %+v; want delivered with an echo reply", v)
	}
	for _, c := range []struct {
		reply      bool
		first, end string
		outer      [2]string
	}{{false, src, dst, [2]string{vtep1, vtep2}}, {true, dst, src, [2]string{vtep2, vtep1}}} {
		hops := journeyHops(lines, func(h hopLine) bool { return h.Probe == "icmp/1" && h.Reply == c.reply })
		if roles(hops) != vxlanRoles || hops[0].Agent != c.first || hops[len(hops)-1].Agent != c.end {
			t.Fatalf("reply=%v hops %s from %s to %s; want %s from %s to %s", c.reply, roles(hops), hops[0].Agent, hops[len(hops)-1].Agent, vxlanRoles, c.first, c.end)
		}
		// The two underlay hops are on different nodes and carry the
		// outer headers.
		_, _, enc := parseExtra(t, out)
		for _, h := range hops[4:6] {
			e, ok := enc[fmt.Sprintf("%d/%s:%s", h.Journey, h.Agent, h.Iface)]
			if !ok {
				t.Fatalf("underlay hop %s has no outer headers", place(h))
			}
			x := e.Packet.Encap
			if x.Type != "vxlan" || x.VNI != vni || x.DstPort != port || x.OuterSrc != c.outer[0] || x.OuterDst != c.outer[1] {
				t.Errorf("underlay hop %s outer %+v; want vxlan vni %d %s → %s:%d", place(h), x, vni, c.outer[0], c.outer[1], port)
			}
		}
		if hops[4].Agent == hops[5].Agent {
			t.Errorf("underlay hops both on %s; want one per node", hops[4].Agent)
		}
	}
	_, path, _ := parseExtra(t, out)
	var pr []string
	for _, h := range path.Hops {
		pr = append(pr, h.Role)
		if h.Status != "seen" {
			t.Errorf("path hop %s %s is %s", h.Place, h.Label, h.Status)
		}
	}
	want := "pod eth0,host veth,bridge,overlay,node NIC (underlay),peer node NIC,overlay,bridge,host veth,pod eth0"
	if strings.Join(pr, ",") != want {
		t.Errorf("path roles %v; want %s", pr, want)
	}
}

func TestLabVXLANCrossNodeDeliveredThroughTheOverlay(t *testing.T) {
	nettest.RequireRoot(t)
	r := podtrace(t, "lab", "--topology", "vxlan", "-o", "json")
	if m := regexp.MustCompile(`building the vxlan lab (pt[0-9a-f]{4})`).FindStringSubmatch(r.stderr); m != nil {
		assertNothingLeft(t, m[1])
	}
	if r.code != 0 {
		t.Fatalf("exit %d; want 0", r.code)
	}
	checkOverlayTrace(t, r.stdout, "pod-a", "pod-b", "192.168.50.1", "192.168.50.2", 1, 8472)
	head, _, _ := parseExtra(t, r.stdout)
	if !strings.Contains(head.Discovered, "bridge cni0") || !strings.Contains(head.Discovered, "VXLAN overlay flannel.1 vni 1") {
		t.Errorf("discovered shape %q; want bridge cni0 + VXLAN overlay flannel.1 vni 1", head.Discovered)
	}
	// Both nodes share this machine's clock: the estimate must say ~0.
	if len(head.Clocks) != 1 || head.Clocks[0].Pairs != 1 {
		t.Fatalf("clocks %+v; want one estimate for node2 from one request/reply pair", head.Clocks)
	}
	c := head.Clocks[0]
	t.Logf("clock offset node2 − node1: %v ± %v", time.Duration(c.Offset), time.Duration(c.Bound))
	// The true offset, 0, lies within the estimate's own error bound (a
	// nanosecond of rounding aside), however loaded the machine: a fixed
	// bound would measure the load, not the estimate.
	if d := time.Duration(max(c.Offset, -c.Offset)); d > time.Duration(c.Bound)+time.Microsecond {
		t.Errorf("offset %v ± %v between two namespaces of one machine; the true offset 0 must lie within the bound", time.Duration(c.Offset), time.Duration(c.Bound))
	}
	// Text: the hops read by role, cross-node deltas say they are estimates.
	tx := podtrace(t, "lab", "--topology", "vxlan", "--color", "never")
	for _, want := range []string{"shape   bridge cni0 + VXLAN overlay flannel.1 vni 1", "one-way", "peer node NIC", "encapsulated to VTEP 192.168.50.2", "vxlan vni 1 192.168.50.1:"} {
		if !strings.Contains(tx.stdout, want) {
			t.Errorf("text trace lacks %q", want)
		}
	}
}

func TestLabVXLANDropOnPeerNodeUnderlayIsLostBeforeItsOverlay(t *testing.T) {
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	l, err := lab.Build(context.Background(), lab.Options{Prefix: prefix, Topology: "vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Teardown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		assertNothingLeft(t, prefix)
	})
	n1, _ := l.Node("node1")
	n2, _ := l.Node("node2")
	// A firewall on node2's underlay NIC dropping the VXLAN port. Packet
	// sockets see a frame on ingress before netfilter does, so node2's
	// eth0 sees it: it is lost on node2 between its NIC and flannel.1.
	nft(t, n2.NetNS, `table netdev podtrace_test {
  chain in { type filter hook ingress device "eth0" priority 0; udp dport 8472 drop; }
}`)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", n1.NetNS, "--node-netns", n2.NetNS, "-o", "json", "--wait", "500ms")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d (lost)", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	if last.Result != "lost" || !strings.Contains(last.Last, n2.NetNS+" eth0") || !strings.Contains(last.NotSeen, n2.NetNS+" flannel.1") {
		t.Fatalf("verdict %+v; want lost, last seen node2 eth0, not seen node2 flannel.1", last)
	}
	for _, w := range []string{"lost at " + n2.NetNS + "'s overlay device flannel.1", "crossed the underlay", "UDP 8472"} {
		if !strings.Contains(last.Reason, w) {
			t.Errorf("reason %q lacks %q", last.Reason, w)
		}
	}
}

// overlayPair builds two flannel-style nodes whose underlay NICs meet on
// a bridge in a third namespace (no agent there: a switch between real
// nodes), VXLAN VNI 7 on the IANA port 4789, one pod on each node.
type overlayPair struct {
	n1, n2, sw, a, b string
}

func buildOverlayPair(t *testing.T) overlayPair {
	t.Helper()
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	o := overlayPair{n1: p + "-n1", n2: p + "-n2", sw: p + "-sw", a: p + "-a", b: p + "-b"}
	t.Cleanup(func() { assertNothingLeft(t, p) })
	for _, ns := range []string{o.n1, o.n2, o.sw, o.a, o.b} {
		nettest.NS(t, ns)
		nettest.In(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	ip := func(ns string, args ...string) { nettest.Run(t, append([]string{"ip", "-n", ns}, args...)...) }
	ip(o.sw, "link", "add", "br0", "type", "bridge")
	ip(o.sw, "link", "set", "br0", "up")
	type node struct {
		ns, under, port, sub, gw, mac, pod, podIP string
	}
	nodes := []node{
		{o.n1, "192.168.60.1", "p1", "10.245.1.0", "10.245.1.1", "02:00:0a:f5:01:00", o.a, "10.245.1.2"},
		{o.n2, "192.168.60.2", "p2", "10.245.2.0", "10.245.2.1", "02:00:0a:f5:02:00", o.b, "10.245.2.2"},
	}
	for _, n := range nodes {
		nettest.In(t, n.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ip(n.ns, "link", "add", "eth0", "type", "veth", "peer", "name", n.port, "netns", o.sw)
		ip(o.sw, "link", "set", n.port, "master", "br0", "up")
		ip(n.ns, "addr", "add", n.under+"/24", "dev", "eth0")
		ip(n.ns, "link", "set", "eth0", "up")
		ip(n.ns, "link", "add", "cni0", "type", "bridge")
		ip(n.ns, "addr", "add", n.gw+"/24", "dev", "cni0")
		ip(n.ns, "link", "set", "cni0", "up")
		ip(n.ns, "link", "add", "flannel.1", "address", n.mac, "mtu", "1450", "type", "vxlan", "id", "7", "local", n.under, "dev", "eth0", "dstport", "4789", "nolearning")
		ip(n.ns, "addr", "add", n.sub+"/32", "dev", "flannel.1")
		ip(n.ns, "link", "set", "flannel.1", "up")
		ip(n.ns, "link", "add", "veth-"+n.pod[len(n.pod)-1:], "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", n.pod)
		ip(n.ns, "link", "set", "veth-"+n.pod[len(n.pod)-1:], "master", "cni0", "up")
		ip(n.pod, "addr", "add", n.podIP+"/24", "dev", "eth0")
		ip(n.pod, "link", "set", "eth0", "up")
		ip(n.pod, "route", "add", "default", "via", n.gw)
	}
	for i, n := range nodes {
		r := nodes[1-i]
		ip(n.ns, "neigh", "replace", r.sub, "lladdr", r.mac, "dev", "flannel.1", "nud", "permanent")
		nettest.In(t, n.ns, "bridge", "fdb", "append", r.mac, "dev", "flannel.1", "dst", r.under)
		ip(n.ns, "route", "add", r.sub+"/24", "via", r.sub, "dev", "flannel.1", "onlink")
	}
	return o
}

func (o overlayPair) trace(t *testing.T, extra ...string) result {
	return podtrace(t, append([]string{"local", "--from", o.a, "--to", o.b, "--node-netns", o.n1, "--node-netns", o.n2, "-o", "json"}, extra...)...)
}

func TestLocalAcrossTwoNodeNamespacesJoinedByVTEPAddress(t *testing.T) {
	o := buildOverlayPair(t)
	r := o.trace(t)
	if r.code != 0 {
		t.Fatalf("exit %d; want delivered", r.code)
	}
	checkOverlayTrace(t, r.stdout, o.a, o.b, "192.168.60.1", "192.168.60.2", 7, 4789)
	head, _, _ := parseExtra(t, r.stdout)
	if !strings.Contains(head.Discovered, "VXLAN overlay flannel.1 vni 7") {
		t.Errorf("discovered shape %q", head.Discovered)
	}
}

func TestLocalUnderlaySwitchDropIsLostBetweenTheNodes(t *testing.T) {
	o := buildOverlayPair(t)
	nft(t, o.sw, `table bridge podtrace_test {
  chain drop_vxlan { type filter hook forward priority 0; udp dport 4789 drop; }
}`)
	r := o.trace(t, "--wait", "500ms")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d (lost)", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	want := fmt.Sprintf("lost on the underlay between %s eth0 and %s eth0", o.n1, o.n2)
	if last.Result != "lost" || !strings.HasPrefix(last.Reason, want) || !strings.Contains(last.NotSeen, o.n2+" eth0") {
		t.Fatalf("verdict %+v; want %q, not seen %s eth0", last, want, o.n2)
	}
}

func TestLocalMissingVTEPFDBEntryIsNamed(t *testing.T) {
	o := buildOverlayPair(t)
	nettest.In(t, o.n1, "bridge", "fdb", "del", "02:00:0a:f5:02:00", "dev", "flannel.1", "dst", "192.168.60.2")
	r := o.trace(t, "--wait", "500ms")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d (lost)", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	if last.Result != "lost" || !strings.Contains(last.Reason, "VTEP FDB entry missing: flannel.1 on "+o.n1) || !strings.Contains(last.Reason, "02:00:0a:f5:02:00") {
		t.Fatalf("verdict %+v; want the missing VTEP FDB entry named", last)
	}
}

func TestLabRoutedProxyARPAndNoBridge(t *testing.T) {
	nettest.RequireRoot(t)
	r := podtrace(t, "lab", "--topology", "routed", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d; want delivered", r.code)
	}
	lines := parseJSON(t, r.stdout)
	for _, h := range lines {
		if h.Kind == "hop" && h.Role == "bridge" {
			t.Errorf("a bridge hop in a routed trace: %+v", h)
		}
	}
	isAt := journeyHops(lines, func(h hopLine) bool {
		return h.Packet.ARP != nil && h.Packet.ARP.Op == "is-at" && h.Packet.ARP.TargetIP == "10.244.0.2"
	})
	if len(isAt) == 0 || isAt[0].Role != "host veth" || isAt[0].Owner != "pod-a" || !strings.HasPrefix(isAt[0].Note, "answered by proxy ARP on cali") {
		t.Fatalf("the gateway's is-at must be answered by proxy ARP on pod-a's host veth: %+v", isAt)
	}
	req := journeyHops(lines, func(h hopLine) bool { return h.Probe == "icmp/1" && !h.Reply })
	if roles(req) != "pod eth0,host veth,host veth,pod eth0" {
		t.Errorf("request roles %s; want pod eth0, host veth, host veth, pod eth0", roles(req))
	}
	head, path, _ := parseExtra(t, r.stdout)
	if head.Discovered != "routed (proxy ARP, Calico-style)" {
		t.Errorf("discovered shape %q", head.Discovered)
	}
	if len(path.Hops) != 4 || !strings.HasPrefix(path.Hops[1].Detail, "proxy ARP; routed: 10.244.0.3/32 dev cali") {
		t.Errorf("path %+v; want 4 hops, pod-a's veth routing by the /32", path.Hops)
	}
	if v := lines[len(lines)-1]; v.Result != "delivered" {
		t.Errorf("verdict %+v", v)
	}
}
