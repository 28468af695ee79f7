package netsnap

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// in runs fn on a fresh OS thread inside the named namespace; the thread
// is thrown away afterwards (its goroutine exits locked).
func in(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		runtime.LockOSThread()
		defer func() { done <- recover() }()
		h, err := netns.GetFromName(ns)
		if err != nil {
			panic(err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			panic(err)
		}
		fn()
	}()
	if p := <-done; p != nil {
		t.Fatalf("in %s: %v", ns, p)
	}
}

func buildLab(t *testing.T) *lab.Lab {
	t.Helper()
	nettest.RequireRoot(t)
	prefix := nettest.Prefix()
	l, err := lab.Build(context.Background(), lab.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Teardown(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func pod(t *testing.T, l *lab.Lab, name string) lab.Pod {
	t.Helper()
	p, ok := l.Pod(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return p
}

func ping(t *testing.T, from lab.Pod, to lab.Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := nettest.Ping(ctx, from.NetNS, to.IP); err != nil {
		t.Fatal(err)
	}
}

func linkNamed(ls []wire.Link, name string) (wire.Link, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l, true
		}
	}
	return wire.Link{}, false
}

func mustTake(t *testing.T, ns, when string) *wire.Topology {
	t.Helper()
	var topo *wire.Topology
	var err error
	in(t, ns, func() { topo, err = Take(when) })
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestLinks(t *testing.T) {
	l := buildLab(t)
	node := l.Nodes[0]
	var nodeLinks []wire.Link
	var err error
	var ino uint64
	in(t, node.NetNS, func() {
		nodeLinks, err = Links()
		if err == nil {
			ino, err = NetNSInode()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(node.Path, &st); err != nil {
		t.Fatal(err)
	}
	if ino != st.Ino {
		t.Errorf("NetNSInode in node = %d, namespace file inode %d", ino, st.Ino)
	}
	if self, _ := NetNSInode(); self == ino {
		t.Errorf("NetNSInode outside the node namespace is the node's")
	}
	br, ok := linkNamed(nodeLinks, "cni0")
	if !ok || br.Kind != "bridge" || br.State != "up" || !contains(br.Addrs, "10.244.0.1/24") {
		t.Fatalf("cni0: %+v (links %+v)", br, nodeLinks)
	}
	for _, p := range l.Pods {
		hv, ok := linkNamed(nodeLinks, p.HostVeth)
		if !ok {
			t.Fatalf("no %s in node", p.HostVeth)
		}
		var podLinks []wire.Link
		in(t, p.NetNS, func() { podLinks, err = Links() })
		if err != nil {
			t.Fatal(err)
		}
		eth0, ok := linkNamed(podLinks, "eth0")
		if !ok {
			t.Fatalf("no eth0 in %s", p.Name)
		}
		t.Logf("%s: host %+v", p.Name, hv)
		t.Logf("%s: eth0 %+v", p.Name, eth0)
		if hv.Kind != "veth" || hv.Index != p.HostVethIndex || hv.Master != br.Index || hv.State != "up" || hv.MTU != 1500 {
			t.Errorf("host veth %s: %+v", p.HostVeth, hv)
		}
		if hv.IfLink != eth0.Index || eth0.IfLink != hv.Index {
			t.Errorf("veth peers: host %s iflink %d, eth0 index %d; eth0 iflink %d, host index %d",
				hv.Name, hv.IfLink, eth0.Index, eth0.IfLink, hv.Index)
		}
		if eth0.MAC != p.MAC || !contains(eth0.Addrs, p.IP+"/24") || eth0.Master != 0 {
			t.Errorf("eth0 of %s: %+v", p.Name, eth0)
		}
		if hv.ProxyARP || eth0.Captured {
			t.Errorf("unexpected proxy_arp/captured: %+v", hv)
		}
	}

	// proxy_arp is read per namespace: set it on one host veth only.
	a := pod(t, l, "pod-a")
	nettest.In(t, node.NetNS, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/"+a.HostVeth+"/proxy_arp")
	var viaSysctl bool
	in(t, node.NetNS, func() {
		nodeLinks, err = Links()
		viaSysctl = proxyARPSysctl(a.HostVeth)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, lk := range nodeLinks {
		if lk.ProxyARP != (lk.Name == a.HostVeth) {
			t.Errorf("%s proxy_arp = %v", lk.Name, lk.ProxyARP)
		}
	}
	if !viaSysctl {
		t.Errorf("/proc/sys read on a thread inside the namespace did not see proxy_arp")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestTake(t *testing.T) {
	l := buildLab(t)
	node := l.Nodes[0]
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")

	nodeBefore := mustTake(t, node.NetNS, "before")
	podBefore := mustTake(t, a.NetNS, "before")
	if len(podBefore.Neigh) != 0 {
		t.Errorf("pod-a neighbours before traffic: %+v", podBefore.Neigh)
	}
	for _, f := range nodeBefore.FDB {
		if f.MAC == a.MAC || f.MAC == b.MAC {
			t.Errorf("FDB knows a pod MAC before traffic: %+v", f)
		}
	}
	ping(t, a, b)
	nodeAfter := mustTake(t, node.NetNS, "after")
	podAfter := mustTake(t, a.NetNS, "after")

	if nodeAfter.When != "after" || len(nodeAfter.Links) == 0 {
		t.Errorf("topology: when %q, %d links", nodeAfter.When, len(nodeAfter.Links))
	}
	fdbFor := func(topo *wire.Topology, mac string) (wire.FDB, bool) {
		for _, f := range topo.FDB {
			if f.MAC == mac && f.Bridge == "cni0" && !f.Local {
				return f, true
			}
		}
		return wire.FDB{}, false
	}
	for _, p := range []lab.Pod{a, b} {
		f, ok := fdbFor(nodeAfter, p.MAC)
		if !ok || f.Port != p.HostVeth || f.Index != p.HostVethIndex {
			t.Errorf("FDB entry for %s (%s on %s): %+v ok=%v\nall: %+v", p.Name, p.MAC, p.HostVeth, f, ok, nodeAfter.FDB)
		}
	}
	var local int
	for _, f := range nodeAfter.FDB {
		if f.Local {
			local++
		}
		if strings.HasPrefix(f.MAC, "33:33") || strings.HasPrefix(f.MAC, "01:00:5e") {
			t.Errorf("multicast junk in FDB: %+v", f)
		}
	}
	if local == 0 {
		t.Errorf("no local (permanent) FDB entries: %+v", nodeAfter.FDB)
	}
	var neigh *wire.Neigh
	for i, n := range podAfter.Neigh {
		if n.IP == b.IP {
			neigh = &podAfter.Neigh[i]
		}
	}
	if neigh == nil || neigh.MAC != b.MAC || neigh.Dev != "eth0" || neigh.State != "REACHABLE" {
		t.Errorf("pod-a neighbour for pod-b: %+v (all %+v)", neigh, podAfter.Neigh)
	}
	var def, subnet bool
	for _, r := range podAfter.Routes {
		if r.Dst == "default" && r.Gateway == "10.244.0.1" && r.Dev == "eth0" {
			def = true
		}
		if r.Dst == "10.244.0.0/24" && r.Dev == "eth0" && r.Scope == "link" && r.Protocol == "kernel" && r.Src == a.IP {
			subnet = true
		}
	}
	if !def || !subnet {
		t.Errorf("pod-a routes: %+v", podAfter.Routes)
	}

	// The bridge learned both pods' MACs on their host veths during the
	// ping, and pod-a its neighbour: in the snapshot after, not before.
	for _, p := range []lab.Pod{a, b} {
		learned := func(fdb []wire.FDB) bool {
			return slices.ContainsFunc(fdb, func(f wire.FDB) bool { return f.MAC == p.MAC && f.Port == p.HostVeth && !f.Local })
		}
		if learned(nodeBefore.FDB) || !learned(nodeAfter.FDB) {
			t.Errorf("fdb %s on %s: before %v, after %v (want false, true)", p.MAC, p.HostVeth, learned(nodeBefore.FDB), learned(nodeAfter.FDB))
		}
	}
	if slices.ContainsFunc(podBefore.Neigh, func(n wire.Neigh) bool { return n.IP == b.IP && n.MAC == b.MAC }) {
		t.Errorf("pod-a knew %s before the ping: %+v", b.IP, podBefore.Neigh)
	}
}

func hasChange(cs []wire.Change, what, action string, match func(wire.Change) bool) bool {
	for _, c := range cs {
		if c.What == what && c.Action == action && match(c) {
			return true
		}
	}
	return false
}

func changes(cs []wire.Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString("\n  ")
		b.WriteString(c.What + " " + c.Action)
		switch {
		case c.FDB != nil:
			fmt.Fprintf(&b, " %s port %s br %s flags %s", c.FDB.MAC, c.FDB.Port, c.FDB.Bridge, c.FDB.Flags)
		case c.Neigh != nil:
			fmt.Fprintf(&b, " %s %s %s dev %s", c.Neigh.IP, c.Neigh.MAC, c.Neigh.State, c.Neigh.Dev)
		case c.Link != nil:
			fmt.Fprintf(&b, " %s %s", c.Link.Name, c.Link.State)
		}
		if c.Was != "" {
			b.WriteString(" (was " + c.Was + ")")
		}
	}
	return b.String()
}

type recorder struct {
	mu sync.Mutex
	cs []wire.Change
}

func (r *recorder) emit(c wire.Change) {
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
}

func (r *recorder) get() []wire.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wire.Change(nil), r.cs...)
}

// waitFor polls until ok holds for the recorded changes; only a change
// that never comes takes the whole minute.
func (r *recorder) waitFor(ok func([]wire.Change) bool) bool {
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok(r.get()) {
			return true
		}
	}
	return ok(r.get())
}

func watch(t *testing.T, ctx context.Context, ns string, r *recorder) {
	t.Helper()
	var ready <-chan struct{}
	var err error
	in(t, ns, func() { ready, err = Watch(ctx, r.emit) })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(time.Minute): // only a hang takes this long
		t.Fatal("watch not ready")
	}
}

func TestWatch(t *testing.T) {
	l := buildLab(t)
	node := l.Nodes[0]
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	baseline := watcherGoroutines()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var onNode, onA, onB recorder
	watch(t, ctx, node.NetNS, &onNode)
	watch(t, ctx, a.NetNS, &onA)
	watch(t, ctx, b.NetNS, &onB)
	if running := watcherGoroutines(); running <= baseline {
		t.Fatalf("%d watcher goroutines with three watchers running (%d before): the stop check below could not fail", running, baseline)
	}

	start := time.Now()
	ping(t, a, b)

	learned := func(p lab.Pod) func([]wire.Change) bool {
		return func(cs []wire.Change) bool {
			return hasChange(cs, "fdb", "new", func(c wire.Change) bool {
				return c.Was == "" && c.FDB.MAC == p.MAC && c.FDB.Port == p.HostVeth && c.FDB.Bridge == "cni0" && c.FDB.Index == p.HostVethIndex
			})
		}
	}
	if !onNode.waitFor(learned(a)) || !onNode.waitFor(learned(b)) {
		t.Errorf("node: no fdb new for both pods:%s", changes(onNode.get()))
	}
	// The kernel does not announce the INCOMPLETE entry it creates while
	// resolving: the first notification is the resolved one.
	if !onA.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "neigh", "new", func(c wire.Change) bool {
			return c.Neigh.IP == b.IP && c.Neigh.MAC == b.MAC && c.Neigh.State == "REACHABLE" && c.Neigh.Dev == "eth0" && c.Was == ""
		})
	}) {
		t.Errorf("pod-a: no neigh new REACHABLE for %s:%s", b.IP, changes(onA.get()))
	}
	// A changed entry says what it was.
	nettest.In(t, a.NetNS, "ip", "neigh", "replace", b.IP, "lladdr", "0a:58:0a:f4:00:99", "dev", "eth0", "nud", "permanent")
	if !onA.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "neigh", "changed", func(c wire.Change) bool {
			return c.Neigh.IP == b.IP && c.Neigh.MAC == "0a:58:0a:f4:00:99" && c.Neigh.State == "PERMANENT" && c.Was == b.MAC+" REACHABLE"
		})
	}) {
		t.Errorf("pod-a: no neigh changed to PERMANENT:%s", changes(onA.get()))
	}
	nettest.In(t, a.NetNS, "ip", "neigh", "del", b.IP, "dev", "eth0")
	if !onA.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "neigh", "deleted", func(c wire.Change) bool { return c.Neigh.IP == b.IP })
	}) {
		t.Errorf("pod-a: no neigh deleted:%s", changes(onA.get()))
	}
	// pod-b learns pod-a from its request (ARP who-has carries the sender).
	if !onB.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "neigh", "new", func(c wire.Change) bool { return c.Neigh.IP == a.IP && c.Neigh.MAC == a.MAC })
	}) {
		t.Errorf("pod-b: no neigh new for %s:%s", a.IP, changes(onB.get()))
	}
	for _, c := range onNode.get() {
		if c.TS.Before(start) || c.TS.After(time.Now()) {
			t.Errorf("change time %v outside the test", c.TS)
		}
	}
	t.Logf("node:%s", changes(onNode.get()))
	t.Logf("pod-a:%s", changes(onA.get()))
	t.Logf("pod-b:%s", changes(onB.get()))

	// Link changes: a host veth going down, with its previous state.
	nettest.In(t, node.NetNS, "ip", "link", "set", a.HostVeth, "down")
	if !onNode.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "link", "changed", func(c wire.Change) bool { return c.Link.Name == a.HostVeth && c.Link.State == "down" && c.Was == "up" })
	}) {
		t.Errorf("node: no link changed for %s:%s", a.HostVeth, changes(onNode.get()))
	}
	// A port going down flushes its learned FDB entries.
	if !onNode.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "fdb", "deleted", func(c wire.Change) bool { return c.FDB.MAC == a.MAC })
	}) {
		t.Errorf("node: no fdb deleted for %s:%s", a.MAC, changes(onNode.get()))
	}

	// Stopping: every goroutine of the three watchers (theirs and the
	// netlink library's) returns after cancel; then a change that a
	// watcher started afterwards sees reaches none of them.
	cancel()
	if !waitGoroutines(func(n int) bool { return n <= baseline }) {
		t.Fatalf("%d watcher goroutines still running after cancel (%d before the test):\n%s", watcherGoroutines(), baseline, watcherStacks())
	}
	n := len(onNode.get())
	var control recorder
	ctl, stop := context.WithCancel(context.Background())
	defer stop()
	watch(t, ctl, node.NetNS, &control)
	nettest.In(t, node.NetNS, "ip", "link", "set", a.HostVeth, "up")
	if !control.waitFor(func(cs []wire.Change) bool {
		return hasChange(cs, "link", "changed", func(c wire.Change) bool { return c.Link.Name == a.HostVeth && c.Link.State == "up" })
	}) {
		t.Fatalf("a running watcher did not see %s come up:%s", a.HostVeth, changes(control.get()))
	}
	if m := len(onNode.get()); m != n {
		t.Errorf("%d changes after cancel", m-n)
	}
}

// watcherStacks is the stacks of the goroutines a Watch runs: its own loop
// and the netlink library's subscription readers.
func watcherStacks() string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "netsnap.(*watcher).run") || strings.Contains(g, "netlink.linkSubscribeAt") || strings.Contains(g, "netlink.neighSubscribeAt") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func watcherGoroutines() int {
	s := watcherStacks()
	if s == "" {
		return 0
	}
	return strings.Count(s, "\n\n") + 1
}

// waitGoroutines polls until ok holds for the number of watcher
// goroutines; only goroutines that never return take the whole minute.
func waitGoroutines(ok func(int) bool) bool {
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok(watcherGoroutines()) {
			return true
		}
	}
	return ok(watcherGoroutines())
}

func TestOverlayAndRouted(t *testing.T) {
	nettest.RequireRoot(t)
	for _, topo := range []string{"vxlan", "routed"} {
		t.Run(topo, func(t *testing.T) {
			l, err := lab.Build(context.Background(), lab.Options{Prefix: nettest.Prefix(), Topology: topo})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Teardown()
			topo1 := mustTake(t, l.Nodes[0].NetNS, "before")
			switch topo {
			case "vxlan":
				fl, ok := linkNamed(topo1.Links, "flannel.1")
				eth0, _ := linkNamed(topo1.Links, "eth0")
				if !ok || fl.Kind != "vxlan" || fl.VNI != 1 || fl.Port != 8472 || fl.Local != "192.168.50.1" || fl.IfLink != eth0.Index || fl.MTU != 1450 {
					t.Errorf("flannel.1: %+v (eth0 %d)", fl, eth0.Index)
				}
				var fdb, neigh, route bool
				for _, f := range topo1.FDB {
					if f.Port == "flannel.1" && f.Dst == "192.168.50.2" && f.Bridge == "" && f.Flags == "self,permanent" {
						fdb = true
					}
				}
				for _, n := range topo1.Neigh {
					if n.Dev == "flannel.1" && n.IP == "10.244.2.0" && n.State == "PERMANENT" && n.MAC != "" {
						neigh = true
					}
				}
				for _, r := range topo1.Routes {
					if r.Dst == "10.244.2.0/24" && r.Gateway == "10.244.2.0" && r.Dev == "flannel.1" {
						route = true
					}
				}
				if !fdb || !neigh || !route {
					t.Errorf("flannel state: fdb %v neigh %v route %v\n%+v\n%+v\n%+v", fdb, neigh, route, topo1.FDB, topo1.Neigh, topo1.Routes)
				}
			case "routed":
				for _, p := range l.Pods {
					hv, ok := linkNamed(topo1.Links, p.HostVeth)
					if !ok || !hv.ProxyARP || hv.MAC != "ee:ee:ee:ee:ee:ee" || hv.Master != 0 {
						t.Errorf("%s: %+v", p.HostVeth, hv)
					}
					var route bool
					for _, r := range topo1.Routes {
						if r.Dst == p.IP+"/32" && r.Dev == p.HostVeth && r.Scope == "link" {
							route = true
						}
					}
					if !route {
						t.Errorf("no /32 route for %s: %+v", p.Name, topo1.Routes)
					}
				}
				if eth0, _ := linkNamed(topo1.Links, "eth0"); eth0.ProxyARP {
					t.Errorf("uplink has proxy_arp")
				}
			}
		})
	}
}
