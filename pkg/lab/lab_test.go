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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rtt, err := Ping(ctx, src.NetNS, dst.IP)
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
