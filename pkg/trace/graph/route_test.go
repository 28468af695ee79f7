package graph_test

// The route walk on topologies written down by hand, the way `ip link`,
// `ip route`, `ip neigh` and `bridge fdb` would show them on two flannel-
// style nodes:
//
//	node1: cni0 (bridge, 10.244.1.1/24) ─ veth-a (ifindex 10) ═ pod-a eth0 (ifindex 2, 10.244.1.2/24)
//	       flannel.1 (VXLAN vni 1, port 8472, local 192.168.50.1), eth0 192.168.50.1/24
//	       routes: 10.244.1.0/24 dev cni0; 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink;
//	               192.168.50.0/24 dev eth0
//	       neigh:  10.244.2.0 dev flannel.1 lladdr 0a:00:00:00:00:02
//	       fdb:    0a:00:00:00:00:02 dev flannel.1 dst 192.168.50.2
//	node2: the same with 2 for 1: cni0 10.244.2.1/24 ─ veth-b (ifindex 11) ═ pod-b eth0 (10.244.2.2/24),
//	       flannel.1 local 192.168.50.2, eth0 192.168.50.2/24
//	pod-a, pod-b: default via their cni0's address dev eth0
//
// A packet from pod-a to pod-b crosses, by the kernel's rules: pod-a's
// eth0, its veth peer veth-a, the bridge cni0 (whose route sends it to
// flannel.1), flannel.1 (the neighbour and FDB entries name VTEP
// 192.168.50.2), node1's eth0 (the route to the VTEP), node2's eth0 (which
// owns 192.168.50.2), node2's flannel.1 (same VNI: decapsulated), node2's
// cni0 (its route for 10.244.2.0/24), the port whose far end owns
// 10.244.2.2 (veth-b), and pod-b's eth0.

import (
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const vtepMAC = "0a:00:00:00:00:02"

func captured(links ...wire.Link) []wire.Link {
	for i := range links {
		links[i].Captured, links[i].State = true, "up"
	}
	return links
}

func agent(id, role, node string, links []wire.Link, topo *wire.Topology) *trace.AgentInfo {
	return &trace.AgentInfo{ID: id, Name: id, Role: role, Node: node, Before: topo,
		Hello: &wire.Hello{Role: role, Node: node, Links: links}}
}

func pod(id, node, addr string, peer int, gw string) *trace.AgentInfo {
	return agent(id, wire.RolePod, node,
		captured(wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: peer, Addrs: []string{addr}}),
		&wire.Topology{When: "before", Routes: []wire.Route{
			{Dst: "default", Gateway: gw, Index: 2, Dev: "eth0"},
			{Dst: strings.Join(strings.Split(addr, ".")[:3], ".") + ".0/24", Index: 2, Dev: "eth0"},
		}})
}

// twoNodes is the topology above; edit changes node1's topology snapshot
// before the graph is built.
func twoNodes(edit func(node1 *trace.AgentInfo)) []*trace.AgentInfo {
	node := func(n, podIdx int, peer string) *trace.AgentInfo {
		d := string(rune('0' + n))
		other := "1"
		if n == 1 {
			other = "2"
		}
		a := agent("node"+d, wire.RoleNode, "node"+d, captured(
			wire.Link{Index: 5, Name: "cni0", Kind: "bridge", Addrs: []string{"10.244." + d + ".1/24"}},
			wire.Link{Index: podIdx, Name: "veth-" + peer, Kind: "veth", IfLink: 2, Master: 5},
			wire.Link{Index: 6, Name: "flannel.1", Kind: "vxlan", VNI: 1, Port: 8472, Local: "192.168.50." + d, Addrs: []string{"10.244." + d + ".0/32"}},
			wire.Link{Index: 3, Name: "eth0", Kind: "device", Addrs: []string{"192.168.50." + d + "/24"}},
		), &wire.Topology{When: "before",
			Routes: []wire.Route{
				{Dst: "10.244." + d + ".0/24", Index: 5, Dev: "cni0"},
				{Dst: "10.244." + other + ".0/24", Gateway: "10.244." + other + ".0", Index: 6, Dev: "flannel.1"},
				{Dst: "192.168.50.0/24", Index: 3, Dev: "eth0"},
			},
			Neigh: []wire.Neigh{{IP: "10.244." + other + ".0", MAC: "0a:00:00:00:00:0" + other, Index: 6, Dev: "flannel.1", State: "PERMANENT"}},
			FDB:   []wire.FDB{{MAC: "0a:00:00:00:00:0" + other, Index: 6, Port: "flannel.1", Dst: "192.168.50." + other}},
		})
		return a
	}
	n1, n2 := node(1, 10, "a"), node(2, 11, "b")
	if edit != nil {
		edit(n1)
	}
	return []*trace.AgentInfo{
		pod("pod-a", "node1", "10.244.1.2/24", 10, "10.244.1.1"), n1,
		n2, pod("pod-b", "node2", "10.244.2.2/24", 11, "10.244.2.1"),
	}
}

func iface(t *testing.T, g *graph.Graph, a *trace.AgentInfo, name string) *trace.Iface {
	t.Helper()
	for _, l := range a.Hello.Links {
		if l.Name == name {
			return g.At(a, l.Index, name)
		}
	}
	t.Fatalf("%s has no %s", a.Name, name)
	return nil
}

func steps(w *trace.RouteWalk) []string {
	var out []string
	for _, s := range w.Steps {
		x := s.If.Agent.Name + " " + s.If.Name
		if s.Detail != "" {
			x += " (" + s.Detail + ")"
		}
		out = append(out, x)
	}
	return out
}

func TestRouteWalkAcrossAVXLANOverlay(t *testing.T) {
	agents := twoNodes(nil)
	g := graph.Build(agents)
	w := g.Route(iface(t, g, agents[0], "eth0"), net.ParseIP("10.244.2.2"), false)
	want := []string{
		"pod-a eth0",
		"node1 veth-a",
		"node1 cni0 (routed: 10.244.2.0/24 via 10.244.2.0 dev flannel.1)",
		"node1 flannel.1 (encapsulated to VTEP 192.168.50.2)",
		"node1 eth0",
		"node2 eth0",
		"node2 flannel.1 (decapsulated)",
		"node2 cni0",
		"node2 veth-b",
		"pod-b eth0",
	}
	if diff := cmp.Diff(want, steps(w)); diff != "" {
		t.Errorf("route pod-a → 10.244.2.2 (-want +got):\n%s", diff)
	}
	if !w.Arrived || w.Problem != "" {
		t.Errorf("arrived %v, problem %q; want arrived at pod-b, no problem", w.Arrived, w.Problem)
	}
	// The answer walks the mirror image.
	back := g.Route(iface(t, g, agents[3], "eth0"), net.ParseIP("10.244.1.2"), false)
	var got []string
	for _, i := range back.Ifaces() {
		got = append(got, i.Agent.Name+" "+i.Name)
	}
	wantBack := []string{"pod-b eth0", "node2 veth-b", "node2 cni0", "node2 flannel.1", "node2 eth0", "node1 eth0", "node1 flannel.1", "node1 cni0", "node1 veth-a", "pod-a eth0"}
	if diff := cmp.Diff(wantBack, got); diff != "" || !back.Arrived {
		t.Errorf("route pod-b → 10.244.1.2, arrived %v (-want +got):\n%s", back.Arrived, diff)
	}
}

// Where the kernel would stop, the walk stops and says why in terms of the
// entry that is missing.
func TestRouteWalkNamesWhatIsMissing(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*trace.AgentInfo)
		last    string
		problem string
	}{
		{"no neighbour for the overlay next hop", func(a *trace.AgentInfo) { a.Before.Neigh = nil },
			"node1 flannel.1", "VTEP neighbour missing: flannel.1 on node1 has no neighbour entry for 10.244.2.0"},
		{"a neighbour whose MAC has no FDB entry", func(a *trace.AgentInfo) { a.Before.FDB = nil },
			"node1 flannel.1", "VTEP FDB entry missing: flannel.1 on node1 has no FDB entry for " + vtepMAC + " (the MAC of 10.244.2.0)"},
		{"no route to the pod network", func(a *trace.AgentInfo) { a.Before.Routes = a.Before.Routes[:1] },
			"node1 cni0", "node1 has no route to 10.244.2.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			agents := twoNodes(c.edit)
			g := graph.Build(agents)
			w := g.Route(iface(t, g, agents[0], "eth0"), net.ParseIP("10.244.2.2"), false)
			t.Logf("steps %v; problem %q", steps(w), w.Problem)
			if w.Arrived {
				t.Errorf("arrived; want stopped at %s", c.last)
			}
			if n := len(w.Steps); n == 0 || w.Steps[n-1].If.Agent.Name+" "+w.Steps[n-1].If.Name != c.last {
				t.Errorf("last step %v; want %s", steps(w), c.last)
			}
			if !strings.HasPrefix(w.Problem, c.problem) {
				t.Errorf("problem %q; want %q", w.Problem, c.problem)
			}
		})
	}
	// The peer node has no device of that VNI: the outer packet arrives on
	// its NIC and goes no further.
	agents := twoNodes(nil)
	links := agents[2].Hello.Links
	agents[2].Hello.Links = append(links[:2:2], links[3])
	g := graph.Build(agents)
	w := g.Route(iface(t, g, agents[0], "eth0"), net.ParseIP("10.244.2.2"), false)
	if n := len(w.Steps); w.Arrived || n == 0 || w.Steps[n-1].If.Agent.Name != "node2" || w.Steps[n-1].If.Name != "eth0" ||
		w.Problem != "node2 has no VXLAN device for VNI 1: the encapsulated packet cannot be decapsulated there" {
		t.Errorf("steps %v, problem %q; want stopped at node2 eth0 for want of VNI 1", steps(w), w.Problem)
	}
}

// The expected path between the endpoints names each hop's role and the
// CNI shape; the interfaces' roles come from what joins them (a veth whose
// peer is a pod's is a host veth, labelled with the pod).
func TestExpectedPathRolesAndShape(t *testing.T) {
	agents := twoNodes(nil)
	g := graph.Build(agents)
	tr := &trace.Trace{Agents: agents, Session: trace.Session{
		Src: trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: "10.244.1.2", Agent: "pod-a"},
		Dst: trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: "10.244.2.2", Agent: "pod-b"},
	}}
	hops, shape := g.Hops(tr)
	var got []string
	for _, h := range hops {
		got = append(got, h.Place+" "+h.Label+": "+h.Role+" ["+h.Detail+"] "+h.Status)
	}
	want := []string{
		"pod-a eth0: pod eth0 [] not seen",
		"node1 veth-a (pod-a): host veth [] not seen",
		"node1 cni0: bridge [routed: 10.244.2.0/24 via 10.244.2.0 dev flannel.1] not seen",
		"node1 flannel.1: overlay [VXLAN vni 1 port 8472 local 192.168.50.1; encapsulated to VTEP 192.168.50.2] not seen",
		"node1 eth0: node NIC (underlay) [] not seen",
		"node2 eth0: peer node NIC [] not seen",
		"node2 flannel.1: overlay [VXLAN vni 1 port 8472 local 192.168.50.2; decapsulated] not seen",
		"node2 cni0: bridge [] not seen",
		"node2 veth-b (pod-b): host veth [] not seen",
		"pod-b eth0: pod eth0 [] not seen",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expected path (-want +got):\n%s", diff)
	}
	if shape != "bridge cni0 + VXLAN overlay flannel.1 vni 1" {
		t.Errorf("shape %q", shape)
	}
	ep := g.Expected(tr)
	if len(ep.Back) != len(ep.Fwd) || ep.Back[0] != ep.Fwd[len(ep.Fwd)-1] || ep.Back[len(ep.Back)-1] != ep.Fwd[0] || ep.SrcMissing || ep.DstMissing {
		t.Errorf("way back %v; want the forward path's ten hops from pod-b to pod-a", ep.Back)
	}
}

// A bridge sees forwarded unicast only while it is promiscuous; a flood it
// always sees.
func TestObservableBridge(t *testing.T) {
	agents := twoNodes(nil)
	g := graph.Build(agents)
	cni0 := iface(t, g, agents[1], "cni0")
	unicast := &wire.Packet{Eth: &wire.Eth{Dst: "0a:58:0a:f4:02:02"}}
	flood := &wire.Packet{Eth: &wire.Eth{Dst: "ff:ff:ff:ff:ff:ff"}, PktType: "broadcast"}
	if graph.Observable(cni0, unicast) || !graph.Observable(cni0, flood) {
		t.Errorf("not promiscuous: unicast %v, broadcast %v; want false, true", graph.Observable(cni0, unicast), graph.Observable(cni0, flood))
	}
	agents[1].Hello.Promisc = []string{"cni0"}
	if !graph.Observable(cni0, unicast) {
		t.Error("promiscuous cni0 cannot see unicast")
	}
	if veth := iface(t, g, agents[1], "veth-a"); !graph.Observable(veth, unicast) {
		t.Error("a captured veth is not observable")
	}
}
