package merge

import (
	"net"
	"strconv"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// IfKey names one interface of one agent's namespace.
type IfKey struct {
	Agent string
	Index int
}

// Iface is an interface as the merge sees it: where it is and what role it
// plays on the path.
type Iface struct {
	Key    IfKey
	Name   string
	Kind   string
	MAC    string
	Agent  *AgentInfo
	Role   string // "pod eth0", "host veth", "bridge", "overlay", "node NIC", "loopback", "device"
	Owner  string // the pod whose host veth this is, when known
	Master *Iface
	Link   wire.Link
}

// Label is how a trace names the interface: "cni0", "veth9f8e7d6c (pod-b)".
func (i *Iface) Label() string {
	if i.Owner != "" && i.Role == "host veth" {
		return i.Name + " (" + i.Owner + ")"
	}
	return i.Name
}

// AgentInfo is what the merge knows of one agent.
type AgentInfo struct {
	ID      string
	Role    string
	Name    string // display name: "pod-a", "node-1"
	Node    string
	Hello   *wire.Hello
	Gaps    uint64
	Stats   []wire.Stats
	Bye     string
	Errors  []string
	NetNSID uint64
	// Before and After are the agent's topology snapshots (routes,
	// neighbours, FDB), when it sent them.
	Before, After *wire.Topology
	// Summaries are the per-flow counts it wrote instead of packet lines
	// once its capture went over its threshold.
	Summaries []*wire.Summary
	// Intake is what the plugin received of the agent's stream and set
	// aside.
	Intake Intake
}

// clockDomain is the clock an agent's timestamps come from: its node's.
func (a *AgentInfo) clockDomain() string {
	if a.Node != "" {
		return a.Node
	}
	if a.Hello != nil {
		return a.Hello.Hostname
	}
	return ""
}

// graph is the interfaces of all agents and what joins them: veth peers
// (across namespaces), bridge ports and their bridge, and the routing
// stack of each namespace joining its unenslaved interfaces.
type graph struct {
	ifaces map[IfKey]*Iface
	sorted []*Iface // in the order added: deterministic walks
	routes map[string]*routeResult
	main   *tracePath
	byK    map[string]*Iface
	adj    map[string][]string
}

func key(k IfKey) string { return k.Agent + "#" + strconv.Itoa(k.Index) }

func stackKey(agent string) string { return agent + "#stack" }

func buildGraph(agents []*AgentInfo) *graph {
	g := &graph{ifaces: map[IfKey]*Iface{}, byK: map[string]*Iface{}, adj: map[string][]string{}}
	edge := func(a, b string) {
		g.adj[a] = append(g.adj[a], b)
		g.adj[b] = append(g.adj[b], a)
	}
	for _, a := range agents {
		if a.Hello == nil {
			continue
		}
		for _, l := range a.Hello.Links {
			k := IfKey{a.ID, l.Index}
			g.add(&Iface{Key: k, Name: l.Name, Kind: l.Kind, MAC: l.MAC, Agent: a, Link: l})
		}
		for _, l := range a.Hello.Links {
			me := g.ifaces[IfKey{a.ID, l.Index}]
			if l.Master != 0 {
				if m, ok := g.ifaces[IfKey{a.ID, l.Master}]; ok {
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
	type pair struct{ a, b *Iface }
	var pairs []pair
	cands := map[*Iface]int{}
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
			if sameSubnet(a, b) && !g.adjacent(a, b) {
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
func sameHost(a, b *AgentInfo) bool {
	return a.Node == "" || b.Node == "" || a.Node == b.Node || a.Role == wire.RoleNode && b.Role == wire.RoleNode
}

func (g *graph) peerIsPod(i *Iface) bool {
	for _, n := range g.adj[key(i.Key)] {
		if p := g.byKey(n); p != nil && p.Agent.Role == wire.RolePod {
			return true
		}
	}
	return false
}

func (g *graph) byKey(k string) *Iface { return g.byK[k] }

// adjacent tells whether two interfaces are joined directly (veth peers,
// port and bridge).
func (g *graph) adjacent(a, b *Iface) bool {
	for _, n := range g.adj[key(a.Key)] {
		if n == key(b.Key) {
			return true
		}
	}
	return false
}

func (g *graph) add(i *Iface) {
	if _, ok := g.ifaces[i.Key]; !ok {
		g.sorted = append(g.sorted, i)
	}
	g.ifaces[i.Key] = i
	g.byK[key(i.Key)] = i
}

// distances is a breadth-first walk from one interface.
func (g *graph) distances(from IfKey) map[string]int {
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
	return d
}

// path is one shortest path of interfaces from a to b (stack nodes left
// out), or nil when they are not connected.
func (g *graph) path(a, b IfKey) []*Iface {
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
	var rev []*Iface
	for n := key(b); n != ""; n = prev[n] {
		if i := g.byKey(n); i != nil {
			rev = append(rev, i)
		}
	}
	out := make([]*Iface, len(rev))
	for i := range rev {
		out[i] = rev[len(rev)-1-i]
	}
	return out
}

// ifaceWithIP finds the interface an agent owns that carries ip.
func (g *graph) ifaceWithIP(ip string) *Iface {
	want := net.ParseIP(ip)
	if want == nil {
		return nil
	}
	var best *Iface
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
func plausiblePeers(a, b *Iface) bool {
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
		r := lookupRoute(b.Agent, ip)
		if r == nil {
			return b.Agent.Before == nil && b.Agent.After == nil // nothing known: keep
		}
		if r.Index == b.Key.Index || b.Link.Master != 0 && r.Index == b.Link.Master {
			return true
		}
	}
	return false
}
