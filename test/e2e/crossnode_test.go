//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cross-node traces on the two-node cluster (NODES=2): pod-a on node 1,
// pod-x on node 2, through the real kubectl as the limited user. make e2e
// runs these tests once per routing mode between the nodes (vxlan, then
// hostgw); the mode in force is in $E2E_STATE/routing.

var (
	node2Name = env("NODE2_NAME", "podtrace-e2e-node2")
	node1IP   = env("NODE_IP", "10.250.0.1")
	node2IP   = env("NODE2_IP", "10.250.0.2")
	vxlanVNI  = env("VXLAN_VNI", "1")
	vxlanPort = env("VXLAN_PORT", "8472")
	// the underlay NICs: node 1's end of the wire and node 2's
	node1NIC, node2NIC = "podtrace-e2e0", "eth0"
)

// routingMode skips the test on a one-node cluster and returns how pod
// traffic crosses between the nodes: "vxlan" or "hostgw".
func routingMode(t *testing.T) string {
	t.Helper()
	if env("E2E_NODES", "2") != "2" {
		t.Skip("one-node cluster: cross-node tests need NODES=2")
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "routing"))
	if err != nil {
		t.Fatalf("routing mode: %v (is the second node up?)", err)
	}
	m := strings.TrimSpace(string(b))
	if m != "vxlan" && m != "hostgw" {
		t.Fatalf("routing %q between the nodes: the cross-node tests want vxlan or hostgw", m)
	}
	return m
}

// crossLine is the part of a JSON line the cross-node tests read.
type crossLine struct {
	Kind    string `json:"kind"`
	ProbeID string `json:"probeId"`
	Reply   bool   `json:"reply"`
	Agent   string `json:"agent"`
	Iface   string `json:"iface"`
	Role    string `json:"role"`
	Agents  []struct {
		ID, Name, Role, Node string
	} `json:"agents"`
	Clocks []struct {
		Ref     string `json:"ref"`
		Node    string `json:"node"`
		Offset  int64  `json:"offsetNs"`
		Bound   int64  `json:"boundNs"`
		Pairs   int    `json:"pairs"`
		Applied bool   `json:"applied"`
	} `json:"clocks"`
	Discovered string `json:"discoveredShape"`
	Hops       []struct {
		Place, Label, Role, Status string
	} `json:"hops"`
	Packet *struct {
		Encap *outerHeaders `json:"encap"`
	} `json:"packet"`
	Result   string `json:"result"`
	Answer   string `json:"answer"`
	LastSeen string `json:"lastSeen"`
	NotSeen  string `json:"notSeen"`
	Reason   string `json:"reason"`
}

// outerHeaders is what a hop on the underlay carries around the pod's packet.
type outerHeaders struct {
	Type     string `json:"type"`
	VNI      int    `json:"vni"`
	OuterSrc string `json:"outerSrc"`
	OuterDst string `json:"outerDst"`
	DstPort  int    `json:"dstPort"`
}

func parseCross(t *testing.T, out string) []crossLine {
	t.Helper()
	var lines []crossLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var x crossLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		lines = append(lines, x)
	}
	if len(lines) == 0 {
		t.Fatal("no output")
	}
	return lines
}

func crossRoles(mode string) string {
	if mode == "vxlan" {
		return "pod eth0,host veth,bridge,overlay,node NIC,node NIC,overlay,bridge,host veth,pod eth0"
	}
	return "pod eth0,host veth,bridge,node NIC,node NIC,bridge,host veth,pod eth0"
}

// TestCrossNodeTraceJSON: the whole path both ways, hop by hop, with the
// outer headers on the underlay (vxlan), agents on both nodes, the clock
// offset between the nodes near zero (they share this host's clock), and
// no node agent pod left.
func TestCrossNodeTraceJSON(t *testing.T) {
	mode := routingMode(t)
	start := time.Now()
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-x", "-o", "json")...)
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	t.Logf("routing %s: kubectl podtrace e2e/pod-a e2e/pod-x -o json to verdict in %v", mode, took.Round(time.Millisecond))
	lines := parseCross(t, r.stdout)
	head, last := lines[0], lines[len(lines)-1]
	if last.Kind != "verdict" || last.Result != "delivered" || last.Answer != "echo-reply" {
		t.Fatalf("verdict %+v; want delivered with an echo reply\n%s", last, r.stdout)
	}

	// one node agent on each node, one pod agent in each pod
	var got []string
	for _, a := range head.Agents {
		got = append(got, a.Role+":"+a.Name+"@"+a.Node)
	}
	sort.Strings(got)
	want := []string{"node:" + nodeName + "@" + nodeName, "node:" + node2Name + "@" + node2Name,
		"pod:pod-a@" + nodeName, "pod:pod-x@" + node2Name}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("agents %v; want %v", got, want)
	}
	wantShape := map[string]string{"vxlan": "VXLAN overlay", "hostgw": "host-gw routes"}[mode]
	if !strings.Contains(head.Discovered, wantShape) {
		t.Errorf("discovered shape %q; want it to name %q", head.Discovered, wantShape)
	}

	// the clock offset of node 2 against node 1: both read this host's clock
	if len(head.Clocks) != 1 {
		t.Fatalf("clocks %+v; want one estimate (node 2 against node 1)", head.Clocks)
	}
	c := head.Clocks[0]
	t.Logf("clock offset %s − %s = %+d ns ± %d ns from %d pair(s), applied %v", c.Node, c.Ref, c.Offset, c.Bound, c.Pairs, c.Applied)
	if c.Ref != nodeName || c.Node != node2Name || c.Pairs < 1 {
		t.Errorf("clock estimate %+v; want %s against %s from at least one request/reply pair", c, node2Name, nodeName)
	}
	// The nodes share this host's clock: the true offset is 0, and it must
	// lie within the estimate's own error bound (which grows with the
	// asymmetry a loaded machine adds; a fixed tolerance would be flaky).
	if abs := max(c.Offset, -c.Offset); abs > c.Bound+1_000 {
		t.Errorf("clock offset %+d ns ± %d ns; the nodes share one clock, so 0 must be within the bound", c.Offset, c.Bound)
	}

	// both ways through every hop, in order; the underlay hops on the two nodes
	for _, reply := range []bool{false, true} {
		var hops []crossLine
		for _, l := range lines {
			if l.Kind == "hop" && l.ProbeID == "icmp/1" && l.Reply == reply {
				hops = append(hops, l)
			}
		}
		var roles []string
		for _, h := range hops {
			roles = append(roles, h.Role)
		}
		if got, want := strings.Join(roles, ","), crossRoles(mode); got != want {
			t.Fatalf("reply=%v hops %s; want %s\n%s", reply, got, want, r.stdout)
		}
		first, end := "pod-a", "pod-x"
		n1, n2 := hops[len(hops)/2-1], hops[len(hops)/2] // the underlay NICs
		outer := [2]string{node1IP, node2IP}
		if reply {
			first, end = end, first
			n1, n2 = n2, n1
			outer = [2]string{node2IP, node1IP}
		}
		if hops[0].Agent != first || hops[len(hops)-1].Agent != end {
			t.Errorf("reply=%v from %s to %s; want %s to %s", reply, hops[0].Agent, hops[len(hops)-1].Agent, first, end)
		}
		if n1.Agent != nodeName || n1.Iface != node1NIC || n2.Agent != node2Name || n2.Iface != node2NIC {
			t.Errorf("reply=%v underlay hops %s:%s, %s:%s; want %s:%s and %s:%s", reply, n1.Agent, n1.Iface, n2.Agent, n2.Iface,
				nodeName, node1NIC, node2Name, node2NIC)
		}
		for _, h := range []crossLine{n1, n2} {
			var e *outerHeaders
			if h.Packet != nil {
				e = h.Packet.Encap
			}
			switch {
			case mode == "hostgw" && e != nil:
				t.Errorf("hostgw: hop %s:%s has outer headers %+v", h.Agent, h.Iface, *e)
			case mode == "vxlan" && e == nil:
				t.Errorf("vxlan: underlay hop %s:%s has no outer headers", h.Agent, h.Iface)
			case mode == "vxlan":
				if e.Type != "vxlan" || strconv.Itoa(e.VNI) != vxlanVNI || strconv.Itoa(e.DstPort) != vxlanPort ||
					e.OuterSrc != outer[0] || e.OuterDst != outer[1] {
					t.Errorf("underlay hop %s:%s outer %+v; want vxlan vni %s %s → %s:%s", h.Agent, h.Iface, *e, vxlanVNI, outer[0], outer[1], vxlanPort)
				}
			}
		}
	}
	noNodePodsEventually(t)
}

var clockLine = regexp.MustCompile(`(?m)^clocks\s+(\S+) − (\S+) = ([+-]\d+) µs ± (\d+) µs`)

// TestCrossNodeTraceText: what a user reads: the path by role across the
// two nodes, the clock line (near zero here), the verdict.
func TestCrossNodeTraceText(t *testing.T) {
	mode := routingMode(t)
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-x", "--color", "never")...)
	t.Logf("routing %s:\n%s", mode, r)
	if r.err != nil {
		t.Fatalf("trace failed: %v", r.err)
	}
	wants := []string{"nodes " + nodeName + " → " + node2Name, "node NIC (underlay)", "peer node NIC", "verdict DELIVERED", "and back"}
	if mode == "vxlan" {
		wants = append(wants, "encapsulated to VTEP "+node2IP, "decapsulated", "vxlan vni "+vxlanVNI+" "+node1IP)
	} else {
		wants = append(wants, "via "+node2IP+" dev "+node1NIC)
	}
	for _, w := range wants {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("trace lacks %q", w)
		}
	}
	m := clockLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no clock offset line (clocks NODE − NODE = ±N µs ± M µs)")
	}
	off, _ := strconv.Atoi(m[3])
	bound, _ := strconv.Atoi(m[4])
	if m[1] != node2Name || m[2] != nodeName || max(off, -off) > bound+1 {
		t.Errorf("clock line %q; want %s − %s with 0 within the stated bound (one shared clock)", m[0], node2Name, nodeName)
	}
	noNodePodsEventually(t)
}

// TestCrossNodePcap: the pcapng of a cross-node trace opens in tshark and
// holds interfaces of both nodes and both pods.
func TestCrossNodePcap(t *testing.T) {
	mode := routingMode(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark is needed to read the pcapng: %v", err)
	}
	file := filepath.Join(t.TempDir(), "crossnode.pcapng")
	if r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-x", "-o", "json", "--pcap", file)...); r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	// (tshark decodes VXLAN on 4789 only; 8472, flannel's port, it must be told)
	out, err := exec.Command(tshark, "-r", file, "-d", "udp.port=="+vxlanPort+",vxlan", "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "vxlan.vni").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	ifaces := map[string]int{}
	vxlanFrames := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		ifaces[f[0]]++
		if len(f) > 1 && f[1] == vxlanVNI {
			vxlanFrames++
		}
	}
	t.Logf("routing %s: tshark read frames on %d interfaces %v, %d VXLAN vni %s", mode, len(ifaces), ifaces, vxlanFrames, vxlanVNI)
	for _, want := range []string{nodeName + "/root/" + node1NIC, node2Name + "/root/" + node2NIC,
		nodeName + "/pod-a/eth0", node2Name + "/pod-x/eth0", nodeName + "/root/cni0", node2Name + "/root/cni0"} {
		if ifaces[want] == 0 {
			t.Errorf("no frames on interface %q in the pcapng", want)
		}
	}
	switch {
	case mode == "vxlan" && vxlanFrames != 4:
		t.Errorf("%d VXLAN frames (vni %s) in the pcapng; want 4 (request and reply on both underlay NICs)", vxlanFrames, vxlanVNI)
	case mode == "hostgw" && vxlanFrames != 0:
		t.Errorf("%d VXLAN frames in a hostgw trace", vxlanFrames)
	}
	if mode == "vxlan" {
		out, err := exec.Command(tshark, "-r", file, "-d", "udp.port=="+vxlanPort+",vxlan", "-Y", "vxlan.vni=="+vxlanVNI+" && icmp",
			"-T", "fields", "-e", "frame.interface_name").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		for _, want := range []string{nodeName + "/root/" + node1NIC, node2Name + "/root/" + node2NIC} {
			if !strings.Contains(string(out), want) {
				t.Errorf("no VXLAN-encapsulated ICMP on %s in the pcapng:\n%s", want, out)
			}
		}
	}
	noNodePodsEventually(t)
}

// TestCrossNodeUnderlayDrop drops the probe on the wire between the nodes:
// an nftables rule on the bridge in the wire's own network namespace (no
// agent runs there), for UDP port 8472 (vxlan) or for node 2's pod subnet
// (hostgw). Node 1's agent sees the frame leave on its underlay NIC, node
// 2's never sees it arrive, so the verdict places the loss between the two
// nodes. (A rule on node 2's underlay ingress would not do: AF_PACKET sees
// a frame there before netdev ingress hooks drop it, and the verdict would
// rightly say node 2 saw it; a rule on node 1's egress drops before its
// capture point.)
func TestCrossNodeUnderlayDrop(t *testing.T) {
	mode := routingMode(t)
	wire := filepath.Join(stateDir, "netns", "wire")
	nft := func(args ...string) error {
		out, err := exec.Command("nsenter", append([]string{"--net=" + wire, "--", "nft"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	const table = "podtrace-e2e-drop"
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
	start := time.Now()
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-x", "-o", "json")...)
	t.Logf("routing %s, dropping %q on the wire: verdict in %v", mode, match, time.Since(start).Round(time.Millisecond))
	lines := parseCross(t, r.stdout)
	v := lines[len(lines)-1]
	t.Logf("verdict %s: last seen %s · not seen %s · %s", v.Result, v.LastSeen, v.NotSeen, v.Reason)
	if v.Kind != "verdict" || v.Result != "lost" {
		t.Fatalf("verdict %+v; want lost\n%s", v, r)
	}
	if !strings.Contains(v.LastSeen, nodeName+" "+node1NIC) || !strings.Contains(v.NotSeen, node2Name+" "+node2NIC) ||
		!strings.Contains(v.Reason, "between") || !strings.Contains(v.Reason, "never reached "+node2Name) {
		t.Errorf("verdict %+v; want the loss placed between %s's %s and %s's %s", v, nodeName, node1NIC, node2Name, node2NIC)
	}
	if mode == "vxlan" && !strings.Contains(v.Reason, "UDP "+vxlanPort) {
		t.Errorf("reason %q does not name the VXLAN port %s", v.Reason, vxlanPort)
	}
	out, _ := exec.Command("nsenter", "--net="+wire, "--", "nft", "list", "table", "bridge", table).CombinedOutput()
	if !regexp.MustCompile(`counter packets [1-9]`).Match(out) {
		t.Errorf("the rule on the wire dropped nothing:\n%s", out)
	}
	noNodePodsEventually(t)
}

// TestCrossNodeDryRunPlacesAgents: a same-node pair starts one node agent,
// a cross-node pair one on each node.
func TestCrossNodeDryRunPlacesAgents(t *testing.T) {
	routingMode(t)
	for _, c := range []struct {
		dst   string
		nodes []string
	}{{"e2e/pod-b", []string{nodeName}}, {"e2e/pod-x", []string{nodeName, node2Name}}} {
		r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", c.dst, "--dry-run")...)
		if r.err != nil {
			t.Fatalf("dry run failed: %s", r)
		}
		var got []string
		for _, m := range regexp.MustCompile(`(?m)^# agent \S+: node agent pod on node (\S+)`).FindAllStringSubmatch(r.stdout, -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, " ") != strings.Join(c.nodes, " ") {
			t.Errorf("pod-a → %s: node agent pods on %v; want exactly %v\n%s", c.dst, got, c.nodes, r.stdout)
		}
		if n := strings.Count(r.stdout, "hostNetwork: true"); n != len(c.nodes) {
			t.Errorf("pod-a → %s: %d hostNetwork pods in the dry run; want %d", c.dst, n, len(c.nodes))
		}
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("dry run created node pods: %v", p)
	}
}

// TestCrossNodeTimeToVerdict: the time to the verdict across the nodes
// (the agents of both pods, and one per node), beside kubectl debug in
// the same run, between two pods started for the test (as
// TestTimeToVerdict: a pod carrying the dead agents of many earlier
// traces costs the kubelet more at each sync), and beside the cluster's
// start floor for the same containers (startFloor). Figures, not
// assertions.
func TestCrossNodeTimeToVerdict(t *testing.T) {
	mode := routingMode(t)
	const runs = 10
	var verdict, exit, debug, floor durations
	var timed []timedRun
	pair := uniqueName("xttv")
	src, dst := pair+"-a", pair+"-x"
	workloadPodOn(t, nodeName, "e2e", src)
	workloadPodOn(t, node2Name, "e2e", dst)
	for i := 0; i < runs; i++ {
		settle()
		r := timedTrace(t, "e2e/"+src, "e2e/"+dst)
		timed = append(timed, r)
		verdict, exit = append(verdict, r.verdict), append(exit, r.exit)
		settle()
		debug = append(debug, debugTime(t, src))
		settle()
		floor = append(floor, startFloor(t, map[string]string{src: nodeName, dst: node2Name}))
	}
	t.Logf("routing %s: kubectl podtrace, pods on two nodes, to verdict %v, to exit %v; kubectl debug -i (inject, run, attach) %v", mode, verdict, exit, debug)
	t.Logf("routing %s: the cluster's start floor (a pod on each node and an agent container in each pod, each running only `podtrace-agent version`, from the first request until the pod statuses say they started) %v", mode, floor)
	logBreakdown(t, "routing "+mode, timed)
	noNodePodsEventually(t)
}
