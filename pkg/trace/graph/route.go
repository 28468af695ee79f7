package graph

import (
	"fmt"
	"net"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Route-aware paths. Within a namespace a packet goes from the interface
// it entered by to the egress device of the longest-prefix route for its
// destination (`ip route get` semantics), or, on a bridge, to the port
// behind which the destination lives. An overlay device (VXLAN, Geneve)
// leads to the underlay interface that carries its outer packets toward
// the remote VTEP (from the device's neighbour and FDB entries); the outer
// packet arrives at the interface that owns the remote VTEP address (or is
// the peer of the sending veth) and is decapsulated by the overlay device
// of the same VNI there. Everything is read from the agents' hello and
// topology lines; nothing is special to one CNI.

// tunnel is the overlay an outer packet belongs to while on the underlay.
type tunnel struct {
	dev    *trace.Iface
	vni    int
	port   int
	remote net.IP
}

// Route follows a packet toward dst from an interface: the interface it was
// sent out of (egress), or the one it entered by (ingress); nil when dst is
// nil. Walks are memoised per graph.
func (g *Graph) Route(from *trace.Iface, dst net.IP, ingress bool) *trace.RouteWalk {
	if dst == nil {
		return nil
	}
	k := fmt.Sprintf("%s|%s|%v", key(from.Key), dst, ingress)
	if r, ok := g.routes[k]; ok {
		return r
	}
	if g.routes == nil {
		g.routes = map[string]*trace.RouteWalk{}
	}
	r := g.walk(from, dst, ingress)
	g.routes[k] = r
	return r
}

// walk follows a packet to dst from an interface: the interface it was
// sent out of (egress), or the one it entered by (ingress).
func (g *Graph) walk(from *trace.Iface, dst net.IP, ingress bool) *trace.RouteWalk {
	res := &trace.RouteWalk{}
	seen := map[*trace.Iface]bool{}
	add := func(i *trace.Iface, detail string) bool {
		if seen[i] {
			return false
		}
		seen[i] = true
		res.Steps = append(res.Steps, trace.Step{If: i, Detail: detail})
		return true
	}
	if dst == nil {
		return res
	}
	add(from, "")
	if ingress {
		if ifaceHasIP(from, dst) {
			res.Arrived = true
			return res
		}
	}
	cur := from
	var hop net.IP // next hop on cur's link, nil: the destination itself
	var tun *tunnel
	in := from
	for n := 0; n < 64; n++ {
		if !ingress || n > 0 {
			// Across the wire from cur.
			target := hop
			if target == nil {
				target = dst
			}
			nxt := g.wireNext(cur, target)
			if nxt == nil || !add(nxt, "") {
				return res
			}
			in = nxt
			if tun != nil {
				ov := g.overlayFor(nxt.Agent, tun)
				if ov == nil {
					res.Problem = fmt.Sprintf("%s has no %s device for VNI %d: the encapsulated packet cannot be decapsulated there", nxt.Agent.Name, tunnelKind(tun.dev), tun.vni)
					return res
				}
				if !add(ov, "decapsulated") {
					return res
				}
				in, tun = ov, nil
			}
		}
		if ifaceHasIP(in, dst) || in.Agent.Role == wire.RolePod && g.AgentHasIP(in.Agent, dst) {
			res.Arrived = true
			return res
		}
		// Bridged to a port of the same bridge?
		if br := in.Master; br != nil && br.Role == "bridge" {
			if port := g.bridgePortTo(br, dst); port != nil && port != in {
				add(br, "")
				if !add(port, "") {
					return res
				}
				cur, hop = port, nil
				continue
			}
			add(br, "")
			in = br
			if ifaceHasIP(br, dst) {
				res.Arrived = true
				return res
			}
		}
		if g.AgentHasIP(in.Agent, dst) {
			res.Arrived = true // the namespace's own address
			return res
		}
		r := in.Agent.RouteTo(dst)
		if r == nil {
			if in.Agent.Before != nil || in.Agent.After != nil {
				res.Problem = fmt.Sprintf("%s has no route to %s", in.Agent.Name, dst)
			}
			return res
		}
		out := g.ifaces[trace.IfKey{Agent: in.Agent.ID, Index: r.Index}]
		if out == nil {
			return res
		}
		how := "routed: " + routeText(r)
		if len(res.Steps) > 0 && res.Steps[len(res.Steps)-1].If == in && in.Role != "pod eth0" {
			// The route is the decision taken at the ingress hop.
			if res.Steps[len(res.Steps)-1].Detail == "" {
				res.Steps[len(res.Steps)-1].Detail = how
			}
		}
		gw := net.ParseIP(r.Gateway)
		switch out.Role {
		case "bridge":
			if out != in && !add(out, "") {
				return res
			}
			port := g.bridgePortTo(out, dst)
			if port == nil || !add(port, "") {
				return res
			}
			cur, hop = port, nil
		case "overlay":
			if out == in || !add(out, "") {
				return res
			}
			nh := gw
			if nh == nil {
				nh = dst
			}
			remote, why := g.vtepFor(out, nh)
			if remote == nil {
				res.Problem = why
				return res
			}
			under, uwhy := g.underlayOf(out, remote)
			res.Steps[len(res.Steps)-1].Detail = fmt.Sprintf("encapsulated to VTEP %s", remote)
			if under == nil {
				res.Problem = uwhy
				return res
			}
			if !add(under, "") {
				return res
			}
			cur, hop, tun = under, remote, &tunnel{dev: out, vni: out.Link.VNI, port: out.Link.Port, remote: remote}
		default:
			if out == in && ingress && n == 0 {
				// Entered and leaves by the same interface (e.g. a pod's
				// eth0 observed first on the way in): go on from it.
			} else if !add(out, "") {
				return res
			}
			cur, hop = out, gw
		}
	}
	return res
}

func tunnelKind(i *trace.Iface) string {
	if i != nil && i.Kind == "geneve" {
		return "Geneve"
	}
	return "VXLAN"
}

func routeText(r *wire.Route) string {
	s := r.Dst
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// wireNext is where a frame sent out of cur is received: the peer of a
// veth (any namespace), else the interface of another agent that owns
// the next-hop address, else one of another agent's node NICs on the same
// IP subnet as cur.
func (g *Graph) wireNext(cur *trace.Iface, hop net.IP) *trace.Iface {
	for _, n := range g.adj[key(cur.Key)] {
		if p := g.byKey(n); p != nil && p.Agent != cur.Agent && p.Kind == "veth" && cur.Kind == "veth" {
			return p
		}
	}
	if hop == nil {
		return nil
	}
	var best *trace.Iface
	for _, i := range g.sorted {
		if i.Agent == cur.Agent || i.Role == "loopback" {
			continue
		}
		if ifaceHasIP(i, hop) {
			if best == nil || i.Role != "bridge" && best.Role == "bridge" {
				best = i
			}
		}
	}
	return best
}

// overlayFor is the overlay device of an agent that decapsulates a tunnel.
func (g *Graph) overlayFor(a *trace.AgentInfo, t *tunnel) *trace.Iface {
	var best *trace.Iface
	for _, i := range g.sorted {
		if i.Agent != a || i.Role != "overlay" || i.Link.VNI != t.vni || i.Kind != t.dev.Kind {
			continue
		}
		if t.port != 0 && i.Link.Port != 0 && i.Link.Port != t.port {
			continue
		}
		if best == nil || net.ParseIP(i.Link.Local).Equal(t.remote) {
			best = i
		}
	}
	return best
}

// bridgePortTo is the port of a bridge behind which ip lives: the port
// whose far end owns it, else the port the bridge's FDB names for the MAC
// the bridge's neighbour table holds for it.
func (g *Graph) bridgePortTo(br *trace.Iface, ip net.IP) *trace.Iface {
	for _, p := range g.sorted {
		if p.Master != br {
			continue
		}
		for _, n := range g.adj[key(p.Key)] {
			if q := g.byKey(n); q != nil && q.Agent != p.Agent && (ifaceHasIP(q, ip) || q.Agent.Role == wire.RolePod && g.AgentHasIP(q.Agent, ip)) {
				return p
			}
		}
	}
	mac := neighMAC(br.Agent, br.Key.Index, ip)
	if mac == "" {
		return nil
	}
	for _, f := range fdbs(br.Agent) {
		if strings.EqualFold(f.MAC, mac) && !f.Local && (f.Bridge == br.Name || f.Bridge == "") {
			if p := g.ifaces[trace.IfKey{Agent: br.Agent.ID, Index: f.Index}]; p != nil && p.Master == br {
				return p
			}
		}
	}
	return nil
}

// vtepFor finds the remote VTEP an overlay device sends nh's packets to:
// the MAC its neighbour table holds for nh, then the FDB entry of that MAC
// (or the all-zero default entry) on the device.
func (g *Graph) vtepFor(dev *trace.Iface, nh net.IP) (net.IP, string) {
	if r := net.ParseIP(dev.Link.Remote); r != nil {
		return r, "" // a point-to-point tunnel (Geneve remote, VXLAN remote)
	}
	mac := neighMAC(dev.Agent, dev.Key.Index, nh)
	if mac == "" {
		// No neighbour: VXLAN devices with a default FDB entry (or a
		// static "remote") still encapsulate after resolving by ARP on
		// the overlay; without one the packet is stuck.
		if r := fdbDst(dev, "00:00:00:00:00:00"); r != nil {
			return r, ""
		}
		return nil, fmt.Sprintf("VTEP neighbour missing: %s on %s has no neighbour entry for %s (the next hop of the overlay route), so it cannot address the remote VTEP", dev.Name, dev.Agent.Name, nh)
	}
	if r := fdbDst(dev, mac); r != nil {
		return r, ""
	}
	if r := fdbDst(dev, "00:00:00:00:00:00"); r != nil {
		return r, ""
	}
	return nil, fmt.Sprintf("VTEP FDB entry missing: %s on %s has no FDB entry for %s (the MAC of %s), so it does not know which node to encapsulate to", dev.Name, dev.Agent.Name, mac, nh)
}

func fdbDst(dev *trace.Iface, mac string) net.IP {
	for _, f := range fdbs(dev.Agent) {
		if f.Index == dev.Key.Index && strings.EqualFold(f.MAC, mac) && f.Dst != "" {
			if ip := net.ParseIP(f.Dst); ip != nil {
				return ip
			}
		}
	}
	return nil
}

// underlayOf is the interface that carries an overlay device's outer
// packets to remote: the one holding the device's local address, else the
// egress of the route to remote.
func (g *Graph) underlayOf(dev *trace.Iface, remote net.IP) (*trace.Iface, string) {
	if r := dev.Agent.RouteTo(remote); r != nil {
		if i := g.ifaces[trace.IfKey{Agent: dev.Agent.ID, Index: r.Index}]; i != nil && i != dev {
			return i, ""
		}
	}
	if local := net.ParseIP(dev.Link.Local); local != nil {
		for _, i := range g.sorted {
			if i.Agent == dev.Agent && ifaceHasIP(i, local) {
				return i, ""
			}
		}
	}
	if dev.Link.IfLink != 0 && dev.Link.IfLink != dev.Key.Index {
		if i := g.ifaces[trace.IfKey{Agent: dev.Agent.ID, Index: dev.Link.IfLink}]; i != nil {
			return i, ""
		}
	}
	return nil, fmt.Sprintf("%s has no route to the remote VTEP %s", dev.Agent.Name, remote)
}

func neighMAC(a *trace.AgentInfo, ifindex int, ip net.IP) string {
	for _, t := range []*wire.Topology{a.After, a.Before} {
		if t == nil {
			continue
		}
		for _, n := range t.Neigh {
			if n.Index == ifindex && n.MAC != "" && net.ParseIP(n.IP).Equal(ip) && n.State != "FAILED" && n.State != "INCOMPLETE" {
				return n.MAC
			}
		}
	}
	return ""
}

func fdbs(a *trace.AgentInfo) []wire.FDB {
	var out []wire.FDB
	if a.After != nil {
		out = append(out, a.After.FDB...)
	}
	if a.Before != nil {
		out = append(out, a.Before.FDB...)
	}
	return out
}

func ifaceHasIP(i *trace.Iface, ip net.IP) bool { return i.HasIP(ip) }

func (g *Graph) AgentHasIP(a *trace.AgentInfo, ip net.IP) bool {
	for _, i := range g.sorted {
		if i.Agent == a && i.Role != "loopback" && ifaceHasIP(i, ip) {
			return true
		}
	}
	return false
}

// sameSubnet tells whether two interfaces have addresses on one IP
// subnet (node NICs on one L2 segment).
func sameSubnet(a, b *trace.Iface) bool {
	for _, x := range a.Link.Addrs {
		ipa, na, err := net.ParseCIDR(x)
		if err != nil || ipa.IsLinkLocalUnicast() {
			continue
		}
		if ones, bits := na.Mask.Size(); ones == bits {
			continue
		}
		for _, y := range b.Link.Addrs {
			ipb, nb, err := net.ParseCIDR(y)
			if err == nil && na.Contains(ipb) && nb.Contains(ipa) && !ipa.Equal(ipb) {
				return true
			}
		}
	}
	return false
}
