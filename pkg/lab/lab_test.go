package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// build builds a lab and tears it down at the end of the test, checking
// that nothing is left.
func build(t *testing.T, topo string) *Lab {
	t.Helper()
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Build(ctx, Options{Prefix: prefix, Topology: topo, Progress: &progress})
	t.Cleanup(func() {
		if l != nil {
			if err := l.Teardown(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		_, _ = Purge(prefix)
	})
	if err != nil {
		t.Fatalf("build %s: %v\n%s", topo, err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	return l
}

func ping(t *testing.T, l *Lab, from, to string) {
	t.Helper()
	src, ok := l.Pod(from)
	if !ok {
		t.Fatalf("no pod %s", from)
	}
	dst, ok := l.Pod(to)
	if !ok {
		t.Fatalf("no pod %s", to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rtt, err := nettest.Ping(ctx, src.NetNS, dst.IP)
	if err != nil {
		t.Fatalf("%s -> %s: %v", from, to, err)
	}
	t.Logf("%s -> %s (%s): %v", from, to, dst.IP, rtt)
}

// assertGone checks that the lab's namespaces and host veths are gone, and
// that none of its links ever showed up in this (the root) namespace.
func assertGone(t *testing.T, l *Lab) {
	t.Helper()
	left, err := Leftovers(l.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("leftover namespaces: %v", left)
	}
	for _, p := range l.Pods {
		if _, err := os.Stat(p.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", p.Path, err)
		}
		if _, err := netlink.LinkByName(p.HostVeth); err == nil {
			t.Errorf("host veth %s exists in the root namespace", p.HostVeth)
		}
	}
}

func TestBridge(t *testing.T) {
	l := build(t, "bridge")
	if len(l.Nodes) != 1 || len(l.Pods) != 3 {
		t.Fatalf("nodes %v pods %v", l.Nodes, l.Pods)
	}
	for _, p := range l.Pods {
		if !strings.HasPrefix(p.HostVeth, "veth") || len(p.HostVeth) != 12 || p.HostVethIndex == 0 {
			t.Errorf("pod %s host veth %q index %d", p.Name, p.HostVeth, p.HostVethIndex)
		}
		if p.NetNS != l.Prefix+"-"+p.Name || p.Path != "/var/run/netns/"+p.NetNS {
			t.Errorf("pod %s namespace %q path %q", p.Name, p.NetNS, p.Path)
		}
	}
	a, _ := l.Pod("pod-a")
	if a.IP != "10.244.0.2" || a.MAC != "0a:58:0a:f4:00:02" {
		t.Errorf("pod-a: %+v", a)
	}
	// The node's sysctls are set inside the node namespace only.
	node := l.Nodes[0].NetNS
	if got := strings.TrimSpace(nettest.In(t, node, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "0" {
		t.Errorf("node ip_forward = %s", got)
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if got := strings.TrimSpace(nettest.In(t, node, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")); got != "0" {
			t.Errorf("node bridge-nf-call-iptables = %s", got)
		}
	}
	out := nettest.In(t, node, "ip", "-o", "link", "show", "master", "cni0")
	for _, p := range l.Pods {
		if !strings.Contains(out, p.HostVeth+"@") {
			t.Errorf("%s not enslaved to cni0:\n%s", p.HostVeth, out)
		}
	}
	// Cold caches: no neighbour entry in any pod before the first ping.
	for _, p := range l.Pods {
		if n := strings.TrimSpace(nettest.In(t, p.NetNS, "ip", "neigh", "show")); n != "" {
			t.Errorf("pod %s has neighbours before any traffic: %s", p.Name, n)
		}
	}
	ping(t, l, "pod-a", "pod-b")
	ping(t, l, "pod-a", "pod-c")
	ping(t, l, "pod-c", "pod-b")

	if err := l.Teardown(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l)
	if err := l.Teardown(); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
}

func TestBuildFailureCleansUp(t *testing.T) {
	nettest.RequireRoot(t)
	failAt = "pod pod-b"
	defer func() { failAt = "" }()
	prefix := nettest.Prefix()
	l, err := Build(context.Background(), Options{Prefix: prefix})
	if err == nil {
		l.Teardown()
		t.Fatal("build did not fail")
	}
	t.Logf("error: %v", err)
	if left, _ := Leftovers(prefix); len(left) != 0 {
		_, _ = Purge(prefix)
		t.Fatalf("leftovers after failed build: %v", left)
	}
}

func TestBuildCollisionKeepsForeignNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	foreign := nettest.NS(t, prefix+"-pod-b")
	_, err := Build(context.Background(), Options{Prefix: prefix})
	if err == nil || !errors.Is(err, os.ErrExist) {
		_, _ = Purge(prefix)
		t.Fatalf("want an already-exists error, got %v", err)
	}
	left, _ := Leftovers(prefix)
	if len(left) != 1 || left[0] != foreign {
		t.Fatalf("want only the foreign %s left, got %v", foreign, left)
	}
}

func TestBuildCancelled(t *testing.T) {
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, Options{Prefix: prefix}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if left, _ := Leftovers(prefix); len(left) != 0 {
		_, _ = Purge(prefix)
		t.Fatalf("leftovers: %v", left)
	}
}

func TestBadOptions(t *testing.T) {
	nettest.RequireRoot(t)
	if _, err := Build(context.Background(), Options{Topology: "mesh"}); err == nil {
		t.Error("unknown topology accepted")
	}
	if _, err := Build(context.Background(), Options{Prefix: "Bad/Prefix"}); err == nil {
		t.Error("bad prefix accepted")
	}
}

func TestVXLAN(t *testing.T) {
	l := build(t, "vxlan")
	if len(l.Nodes) != 2 || len(l.Pods) != 4 {
		t.Fatalf("nodes %v pods %v", l.Nodes, l.Pods)
	}
	for _, p := range []struct{ pod, node string }{{"pod-a", "node1"}, {"pod-c", "node1"}, {"pod-b", "node2"}, {"pod-d", "node2"}} {
		if got, _ := l.Pod(p.pod); got.Node != p.node {
			t.Errorf("%s on %s, want %s", p.pod, got.Node, p.node)
		}
	}
	for _, n := range l.Nodes {
		if n.Bridge != "cni0" || n.Uplink != "eth0" {
			t.Errorf("node %+v", n)
		}
		if got := strings.TrimSpace(nettest.In(t, n.NetNS, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
			t.Errorf("%s ip_forward = %s", n.Name, got)
		}
		d := nettest.In(t, n.NetNS, "ip", "-d", "link", "show", "flannel.1")
		for _, want := range []string{"vxlan id 1", "dstport 8472", "nolearning"} {
			if !strings.Contains(d, want) {
				t.Errorf("%s flannel.1 lacks %q:\n%s", n.Name, want, d)
			}
		}
		t.Logf("%s fdb flannel.1: %s", n.Name, nettest.In(t, n.NetNS, "bridge", "fdb", "show", "dev", "flannel.1"))
		t.Logf("%s neigh flannel.1: %s", n.Name, nettest.In(t, n.NetNS, "ip", "neigh", "show", "dev", "flannel.1"))
		t.Logf("%s routes: %s", n.Name, nettest.In(t, n.NetNS, "ip", "route"))
	}
	ping(t, l, "pod-a", "pod-b") // across the overlay
	ping(t, l, "pod-a", "pod-c") // same node
	ping(t, l, "pod-d", "pod-c") // across, the other way
	ping(t, l, "pod-b", "pod-d")
	if err := l.Teardown(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l)
}

func TestRouted(t *testing.T) {
	l := build(t, "routed")
	if len(l.Nodes) != 1 || len(l.Pods) != 3 || l.Nodes[0].Bridge != "" {
		t.Fatalf("nodes %v pods %v", l.Nodes, l.Pods)
	}
	node := l.Nodes[0].NetNS
	if got := strings.TrimSpace(nettest.In(t, node, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Errorf("ip_forward = %s", got)
	}
	routes := nettest.In(t, node, "ip", "route")
	for _, p := range l.Pods {
		if !strings.HasPrefix(p.HostVeth, "cali") || len(p.HostVeth) != 15 {
			t.Errorf("host veth %q", p.HostVeth)
		}
		if got := strings.TrimSpace(nettest.In(t, node, "cat", "/proc/sys/net/ipv4/conf/"+p.HostVeth+"/proxy_arp")); got != "1" {
			t.Errorf("%s proxy_arp = %s", p.HostVeth, got)
		}
		if !strings.Contains(nettest.In(t, node, "ip", "link", "show", p.HostVeth), "ee:ee:ee:ee:ee:ee") {
			t.Errorf("%s MAC is not ee:ee:ee:ee:ee:ee", p.HostVeth)
		}
		if !strings.Contains(routes, p.IP+" dev "+p.HostVeth+" scope link") {
			t.Errorf("no /32 route for %s via %s:\n%s", p.IP, p.HostVeth, routes)
		}
		if r := nettest.In(t, p.NetNS, "ip", "route"); !strings.Contains(r, "default via 169.254.1.1 dev eth0 onlink") {
			t.Errorf("%s routes:\n%s", p.Name, r)
		}
	}
	ping(t, l, "pod-a", "pod-b")
	ping(t, l, "pod-a", "pod-c")
	ping(t, l, "pod-c", "pod-b")
	a, _ := l.Pod("pod-a")
	if n := nettest.In(t, a.NetNS, "ip", "neigh"); !strings.Contains(n, "169.254.1.1 dev eth0 lladdr ee:ee:ee:ee:ee:ee") {
		t.Errorf("pod-a did not resolve its gateway by proxy ARP:\n%s", n)
	}
	if err := l.Teardown(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l)
}

// A cleanup of every lab (`lab --cleanup`) leaves alone the labs that a
// running process holds, and removes a lab once no process holds it (as
// after `lab --keep` exits).
func TestPurgeAllSparesLabsInUse(t *testing.T) {
	l := build(t, "bridge")
	if _, err := Purge(""); err != nil {
		t.Fatal(err)
	}
	left, err := Leftovers(l.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != len(l.made) {
		t.Fatalf("a cleanup of every lab removed a lab in use: %d of its %d namespaces left", len(left), len(l.made))
	}
	// The holder lets go, as a process that kept its lab and exited.
	l.mu.Lock()
	_ = l.lock.Close()
	l.lock = nil
	l.mu.Unlock()
	removed, err := Purge("")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range left {
		if !contains(removed, n) {
			t.Errorf("%s was not removed once its lab was let go (removed %v)", n, removed)
		}
	}
	if left, _ := Leftovers(l.Prefix); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	_ = os.Remove(LockDir + "/" + l.Prefix + ".lock")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
