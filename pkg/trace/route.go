package trace

// Step is one interface on a route and what the route did there.
type Step struct {
	If     *Iface
	Detail string // "routed: 10.244.2.0/24 via 10.244.2.0 dev flannel.1", "decapsulated", …
}

// RouteWalk is a packet's way toward an address as the routes, bridges and
// overlays of the agents' namespaces send it, and why it stops early when
// it does.
type RouteWalk struct {
	Steps   []Step
	Arrived bool   // the last step holds the destination address
	Problem string // why the route stops (no route, VTEP unknown, …)
}

// Ifaces is the walk's interfaces, in order.
func (r *RouteWalk) Ifaces() []*Iface {
	out := make([]*Iface, len(r.Steps))
	for i, s := range r.Steps {
		out[i] = s.If
	}
	return out
}

// Index is the place of an interface on the walk: -1 when the walk does
// not cross it, or there is no walk.
func (r *RouteWalk) Index(i *Iface) int {
	if r == nil {
		return -1
	}
	for k, s := range r.Steps {
		if s.If == i {
			return k
		}
	}
	return -1
}

// ExpectedPath is the way between the endpoints, both ways: the interfaces
// a packet from Src to Dst should cross (Fwd) and those of the answer
// (Back), extended with the host veth of an endpoint without an agent.
type ExpectedPath struct {
	Fwd, Back []*Iface
	Steps     []Step // the forward route, when routes were known
	Problem   string // why the forward route stops short
	// SrcMissing, DstMissing: the endpoint has no agent in its namespace;
	// the path starts (ends) at its host veth.
	SrcMissing, DstMissing bool
}
