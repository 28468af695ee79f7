package graph

import (
	"fmt"
	"net"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// endpointIface is the interface of an endpoint's own namespace that
// carries its IP, when an agent runs there.
func endpointIface(g *Graph, e trace.Endpoint) *trace.Iface {
	i := g.IfaceWithIP(e.IP)
	if i != nil && i.Agent.Role == wire.RolePod {
		return i
	}
	return nil
}

// hostVethOf finds the host-side veth of an endpoint without a pod agent:
// the node interface where frames from its IP enter the node.
func hostVethOf(t *trace.Trace, e trace.Endpoint) *trace.Iface {
	for _, o := range t.Packets {
		if o.Agent.Role != wire.RoleNode || o.P.Dir != "in" || o.If.Role == "bridge" {
			continue
		}
		if (o.P.IP != nil && o.P.IP.Src == e.IP && o.P.Encap == nil) || (o.P.ARP != nil && o.P.ARP.SenderIP == e.IP) {
			return o.If
		}
	}
	return nil
}

// Hops is the expected path between the endpoints as a trace shows it,
// each hop with its role and what the route did there, all "not seen"
// until the verdict marks them, and the CNI shape recognised along it.
func (g *Graph) Hops(t *trace.Trace) ([]trace.Hop, string) {
	tp := g.Expected(t)
	if len(tp.Fwd) == 0 {
		return nil, ""
	}
	detail := map[*trace.Iface]string{}
	for _, st := range tp.Steps {
		detail[st.If] = st.Detail
	}
	var hops []trace.Hop
	var home *trace.AgentInfo // the first node on the way
	for _, i := range tp.Fwd {
		role, d := i.Role, detail[i]
		switch {
		case i.Role == "node NIC" && home != nil && i.Agent != home:
			role = "peer node NIC"
		case i.Role == "node NIC":
			role = "node NIC (underlay)"
		case i.Role == "overlay":
			d = overlayText(i) + joinDetail(d)
		case i.Role == "host veth" && i.Link.ProxyARP:
			d = "proxy ARP" + joinDetail(d)
		}
		if home == nil && i.Agent.Role == wire.RoleNode {
			home = i.Agent
		}
		hops = append(hops, trace.Hop{Place: i.Agent.Name, Label: i.Label(), Role: role, Detail: d, Status: "not seen"})
	}
	return hops, shapeOf(tp.Fwd)
}

func joinDetail(d string) string {
	if d == "" {
		return ""
	}
	return "; " + d
}

func overlayText(i *trace.Iface) string {
	s := fmt.Sprintf("%s vni %d", tunnelKind(i), i.Link.VNI)
	if i.Link.Port != 0 {
		s += fmt.Sprintf(" port %d", i.Link.Port)
	}
	if i.Link.Local != "" {
		s += " local " + i.Link.Local
	}
	return s
}

// shapeOf names the CNI shape a path shows.
func shapeOf(path []*trace.Iface) string {
	var bridges, overlays []string
	proxy, lxc, nodes := false, false, map[*trace.AgentInfo]bool{}
	add := func(list []string, s string) []string {
		for _, x := range list {
			if x == s {
				return list
			}
		}
		return append(list, s)
	}
	for _, i := range path {
		switch i.Role {
		case "bridge":
			bridges = add(bridges, i.Name)
		case "overlay":
			overlays = add(overlays, fmt.Sprintf("%s overlay %s vni %d", tunnelKind(i), i.Name, i.Link.VNI))
		case "host veth":
			proxy = proxy || i.Link.ProxyARP
			lxc = lxc || strings.HasPrefix(i.Name, "lxc")
		}
		if i.Agent.Role == wire.RoleNode {
			nodes[i.Agent] = true
		}
	}
	var parts []string
	switch {
	case lxc:
		parts = append(parts, "Cilium-style lxc veths (eBPF may bypass hops: those are not observable)")
	case len(bridges) > 0:
		parts = append(parts, "bridge "+strings.Join(bridges, ", "))
	case proxy:
		parts = append(parts, "routed (proxy ARP, Calico-style)")
	case len(nodes) > 0:
		parts = append(parts, "routed")
	}
	parts = append(parts, overlays...)
	if len(overlays) == 0 && len(nodes) > 1 {
		parts = append(parts, "host-gw routes (node to node without encapsulation)")
	}
	return strings.Join(parts, " + ")
}

// Expected is the expected path between the trace's endpoints as
// interfaces (computed once per graph), extended with non-observable ends
// when an endpoint has no agent: its host veth is found where frames from
// its address enter the node (t.Packets).
func (g *Graph) Expected(t *trace.Trace) *trace.ExpectedPath {
	if g.main != nil {
		return g.main
	}
	s := t.Session
	tp := &trace.ExpectedPath{}
	g.main = tp
	a, b := endpointIface(g, s.Src), endpointIface(g, s.Dst)
	if a == nil {
		a, tp.SrcMissing = hostVethOf(t, s.Src), true
	}
	if b == nil {
		b, tp.DstMissing = hostVethOf(t, s.Dst), true
	}
	// A host veth found by the endpoint's frames is that endpoint's.
	for _, e := range []struct {
		i    *trace.Iface
		miss bool
		ep   trace.Endpoint
	}{{a, tp.SrcMissing, s.Src}, {b, tp.DstMissing, s.Dst}} {
		if e.miss && e.i != nil && e.i.Owner == "" && e.i.Role == "host veth" {
			e.i.Owner = e.ep.Short
		}
	}
	if a != nil && b == nil {
		// No agent in the destination's namespace and no frame from it
		// (the probe never reached it, or it never answered): the way
		// there is the route toward its address, as far as the nodes'
		// tables lead, so that a loss on it is still placed.
		if r := g.Route(a, net.ParseIP(s.Dst.IP), tp.SrcMissing); r != nil && len(r.Steps) > 1 {
			tp.Steps, tp.Problem = r.Steps, r.Problem
			tp.Fwd = r.Ifaces()
			tp.Back = reverse(tp.Fwd)
		}
		return tp
	}
	if a == nil || b == nil {
		return tp
	}
	r := g.Route(a, net.ParseIP(s.Dst.IP), tp.SrcMissing)
	switch k := r.Index(b); {
	case k >= 0:
		tp.Steps = r.Steps[:k+1]
	case r != nil && len(r.Steps) > 1:
		// The route stops short (no route, VTEP unknown): the rest of
		// the way is the graph's.
		tp.Steps, tp.Problem = r.Steps, r.Problem
	}
	if len(tp.Steps) > 0 {
		for _, st := range tp.Steps {
			tp.Fwd = append(tp.Fwd, st.If)
		}
		if last := tp.Fwd[len(tp.Fwd)-1]; last != b {
			tail := g.path(last.Key, b.Key)
			if len(tail) > 1 {
				tp.Fwd = append(tp.Fwd, tail[1:]...)
			} else {
				tp.Fwd = append(tp.Fwd, b)
			}
		}
	} else {
		tp.Fwd = g.path(a.Key, b.Key)
	}
	tp.Back = reverse(tp.Fwd)
	if back := g.Route(b, net.ParseIP(s.Src.IP), tp.DstMissing); back != nil {
		if k := back.Index(a); k >= 0 {
			tp.Back = back.Ifaces()[:k+1]
		}
	}
	return tp
}

func reverse(p []*trace.Iface) []*trace.Iface {
	out := make([]*trace.Iface, len(p))
	for i := range p {
		out[i] = p[len(p)-1-i]
	}
	return out
}

// Observable tells whether a capture at the interface can see the packet
// (p nil: any packet): a bridge sees forwarded unicast only while
// promiscuous.
func Observable(i *trace.Iface, p *wire.Packet) bool {
	if i.Role != "bridge" {
		return i.Link.Captured || i.Link.Index != 0
	}
	if p != nil && IsFlood(p) {
		return true
	}
	if i.Agent.Hello != nil {
		for _, n := range i.Agent.Hello.Promisc {
			if n == i.Name {
				return true
			}
		}
	}
	return false
}

// IsFlood tells whether a bridge floods the frame to every port: a
// broadcast or multicast.
func IsFlood(p *wire.Packet) bool {
	return p.Eth != nil && (p.Eth.Dst == "ff:ff:ff:ff:ff:ff" || p.PktType == "broadcast" || p.PktType == "multicast")
}
