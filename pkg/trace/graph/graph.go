// Package graph is where a packet can go: the interfaces of all agents of a
// trace and what joins them (veth peers across namespaces, bridge ports and
// their bridge, each namespace's routing stack, node NICs on one underlay),
// the route walk a packet takes through them toward an address (routes,
// bridges' ports and FDB, overlay devices and their VTEPs), and the
// expected path between the trace's endpoints with each hop's role and the
// CNI shape it shows. It reads the agents' hello and topology lines (and,
// for an endpoint without an agent, where its frames enter a node), never a
// packet's fate: that is the job of match and verdict.
package graph

import (
	"net"
	"strconv"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Graph is the interfaces of all agents and what joins them: veth peers
// (across namespaces), bridge ports and their bridge, and the routing
// stack of each namespace joining its unenslaved interfaces.
type Graph struct {
	ifaces map[trace.IfKey]*trace.Iface
	sorted []*trace.Iface // in the order added: deterministic walks
	routes map[string]*trace.RouteWalk
	main   *trace.ExpectedPath
	byK    map[string]*trace.Iface
	adj    map[string][]string
}

func key(k trace.IfKey) string { return k.Agent + "#" + strconv.Itoa(k.Index) }

func stackKey(agent string) string { return agent + "#stack" }

// Build joins the interfaces the agents reported in their hello lines.
func Build(agents []*trace.AgentInfo) *Graph {
	g := &Graph{ifaces: map[trace.IfKey]*trace.Iface{}, byK: map[string]*trace.Iface{}, adj: map[string][]string{}}
	edge := func(a, b string) {
		g.adj[a] = append(g.adj[a], b)
		g.adj[b] = append(g.adj[b], a)
	}
	for _, a := range agents {
		if a.Hello == nil {
			continue
		}
		for _, l := range a.Hello.Links {
			k := trace.IfKey{Agent: a.ID, Index: l.Index}
			g.add(&trace.Iface{Key: k, Name: l.Name, Kind: l.Kind, MAC: l.MAC, Agent: a, Link: l})
		}
		for _, l := range a.Hello.Links {
			me := g.ifaces[trace.IfKey{Agent: a.ID, Index: l.Index}]
			if l.Master != 0 {
				if m, ok := g.ifaces[trace.IfKey{Agent: a.ID, Index: l.Master}]; ok {
					me.Master = m
					edge(key(me.Key), key(m.Key))
					continue
				}
			}
			if l.Name != "lo" {
				edge(key(me.Key), stackKey(a.ID))
			}
		}
	}
	// veth peers across namespaces: each end's iflink is the other's
	// ifindex. Ifindexes repeat across namespaces: when an end has more
	// than one candidate, the pair whose node routes the pod's address
	// through that veth (or its bridge) wins.
	type pair struct{ a, b *trace.Iface }
	var pairs []pair
	cands := map[*trace.Iface]int{}
	for _, a := range g.sorted {
		if a.Kind != "veth" || a.Link.IfLink == 0 {
			continue
		}
		for _, b := range g.sorted {
			if b.Key.Agent == a.Key.Agent || b.Kind != "veth" || key(a.Key) >= key(b.Key) {
				continue
			}
			if a.Link.IfLink == b.Key.Index && b.Link.IfLink == a.Key.Index && sameHost(a.Agent, b.Agent) {
				pairs = append(pairs, pair{a, b})
				cands[a]++
				cands[b]++
			}
		}
	}
	for _, p := range pairs {
		if (cands[p.a] > 1 || cands[p.b] > 1) && !plausiblePeers(p.a, p.b) {
			continue
		}
		edge(key(p.a.Key), key(p.b.Key))
	}
	// Roles.
	for _, i := range g.sorted {
		switch {
		case i.Name == "lo":
			i.Role = "loopback"
		case i.Kind == "bridge":
			i.Role = "bridge"
		case i.Kind == "vxlan" || i.Kind == "geneve":
			i.Role = "overlay"
		case i.Agent.Role == wire.RolePod:
			i.Role = "pod " + i.Name
		case i.Kind == "veth" && i.Agent.Role == wire.RoleNode && g.peerIsPod(i):
			i.Role = "host veth"
		case i.Kind == "veth" && i.Master != nil:
			i.Role = "host veth"
		default:
			i.Role = "node NIC"
		}
	}
	// Node NICs of different node agents on one IP subnet: one L2 or
	// routed underlay between nodes (veth peers are joined above).
	for _, a := range g.sorted {
		for _, b := range g.sorted {
			if a.Agent == b.Agent || a.Role != "node NIC" || b.Role != "node NIC" || key(a.Key) >= key(b.Key) ||
				a.Agent.Role != wire.RoleNode || b.Agent.Role != wire.RoleNode {
				continue
			}
			if sameSubnet(a, b) && !g.Adjacent(a, b) {
				edge(key(a.Key), key(b.Key))
			}
		}
	}
	for _, i := range g.sorted {
		if i.Role == "host veth" {
			for _, n := range g.adj[key(i.Key)] {
				if p := g.byKey(n); p != nil && p.Agent.Role == wire.RolePod {
					i.Owner = p.Agent.Name
				}
			}
		}
	}
	return g
}

// sameHost: agents of different nodes cannot be veth peers, unless the
// launcher did not say which node they are on.
func sameHost(a, b *trace.AgentInfo) bool {
	return a.Node == "" || b.Node == "" || a.Node == b.Node || a.Role == wire.RoleNode && b.Role == wire.RoleNode
}

func (g *Graph) peerIsPod(i *trace.Iface) bool {
	for _, n := range g.adj[key(i.Key)] {
		if p := g.byKey(n); p != nil && p.Agent.Role == wire.RolePod {
			return true
		}
	}
	return false
}

func (g *Graph) byKey(k string) *trace.Iface { return g.byK[k] }

// Adjacent tells whether two interfaces are joined directly (veth peers,
// port and bridge).
func (g *Graph) Adjacent(a, b *trace.Iface) bool {
	for _, n := range g.adj[key(a.Key)] {
		if n == key(b.Key) {
			return true
		}
	}
	return false
}

// At is an agent's interface by index; one the agent's hello did not list
// (a link that appeared later) is added with the name a packet or summary
// line gave it, in the role "device".
func (g *Graph) At(a *trace.AgentInfo, index int, name string) *trace.Iface {
	k := trace.IfKey{Agent: a.ID, Index: index}
	if i := g.ifaces[k]; i != nil {
		return i
	}
	i := &trace.Iface{Key: k, Name: name, Agent: a, Role: "device"}
	g.add(i)
	return i
}

func (g *Graph) add(i *trace.Iface) {
	if _, ok := g.ifaces[i.Key]; !ok {
		g.sorted = append(g.sorted, i)
	}
	g.ifaces[i.Key] = i
	g.byK[key(i.Key)] = i
}

// Distances is how many joins each interface reachable from one is away
// from it (a namespace's routing stack counts as one step between its
// interfaces), by a breadth-first walk.
func (g *Graph) Distances(from trace.IfKey) map[*trace.Iface]int {
	d := map[string]int{key(from): 0}
	q := []string{key(from)}
	for len(q) > 0 {
		n := q[0]
		q = q[1:]
		for _, m := range g.adj[n] {
			if _, ok := d[m]; !ok {
				d[m] = d[n] + 1
				q = append(q, m)
			}
		}
	}
	out := make(map[*trace.Iface]int, len(d))
	for k, n := range d {
		if i := g.byKey(k); i != nil {
			out[i] = n
		}
	}
	return out
}

// path is one shortest path of interfaces from a to b (stack nodes left
// out), or nil when they are not connected.
func (g *Graph) path(a, b trace.IfKey) []*trace.Iface {
	prev := map[string]string{key(a): ""}
	q := []string{key(a)}
	for len(q) > 0 {
		n := q[0]
		q = q[1:]
		if n == key(b) {
			break
		}
		for _, m := range g.adj[n] {
			if _, ok := prev[m]; !ok {
				prev[m] = n
				q = append(q, m)
			}
		}
	}
	if _, ok := prev[key(b)]; !ok {
		return nil
	}
	var rev []*trace.Iface
	for n := key(b); n != ""; n = prev[n] {
		if i := g.byKey(n); i != nil {
			rev = append(rev, i)
		}
	}
	out := make([]*trace.Iface, len(rev))
	for i := range rev {
		out[i] = rev[len(rev)-1-i]
	}
	return out
}

// IfaceWithIP finds the interface an agent owns that carries ip.
func (g *Graph) IfaceWithIP(ip string) *trace.Iface {
	want := net.ParseIP(ip)
	if want == nil {
		return nil
	}
	var best *trace.Iface
	for _, i := range g.sorted {
		for _, a := range i.Link.Addrs {
			addr, _, err := net.ParseCIDR(a)
			if err == nil && addr.Equal(want) {
				if best == nil || i.Agent.Role == wire.RolePod {
					best = i
				}
			}
		}
	}
	return best
}

// plausiblePeers: of a pod's eth0 and a node's veth, the node routes the
// pod's address out of that veth or the bridge it is a port of; of two
// node interfaces, they share a subnet.
func plausiblePeers(a, b *trace.Iface) bool {
	if a.Agent.Role != wire.RolePod {
		a, b = b, a
	}
	if a.Agent.Role != wire.RolePod {
		return sameSubnet(a, b) || len(a.Link.Addrs) == 0 || len(b.Link.Addrs) == 0
	}
	for _, c := range a.Link.Addrs {
		ip, _, err := net.ParseCIDR(c)
		if err != nil || ip.IsLinkLocalUnicast() {
			continue
		}
		r := b.Agent.RouteTo(ip)
		if r == nil {
			return b.Agent.Before == nil && b.Agent.After == nil // nothing known: keep
		}
		if r.Index == b.Key.Index || b.Link.Master != 0 && r.Index == b.Link.Master {
			return true
		}
	}
	return false
}
