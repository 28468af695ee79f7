package verdict

import (
	"fmt"
	"sort"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// lossReason explains a loss between two hops by the roles of both.
func lossReason(s trace.Session, last *trace.Obs, next *trace.Iface, forward bool) string {
	to := s.Dst.Short
	from := s.Src.Short
	if !forward {
		to, from = from, to
	}
	switch {
	case last == nil && next != nil:
		return fmt.Sprintf("not seen at any hop of the path, not even %s", next.Place())
	case last == nil:
		return "not seen at any hop of the path"
	case next == nil:
		return fmt.Sprintf("last seen at %s; the hops after it are not observable", last.If.Place())
	}
	l := last.If
	if r := crossNodeReason(last, next); r != "" {
		return r
	}
	switch {
	case l.Role == "bridge" && next.Master == l, l.Master != nil && next.Master == l.Master:
		return fmt.Sprintf("the bridge %s did not forward it to %s's port %s (a bridge or netfilter rule, the port is not forwarding, or the FDB points elsewhere)", next.Master.Name, to, next.Name)
	case l.Master != nil && next == l.Master:
		return fmt.Sprintf("it entered %s but the bridge %s never handled it (port not forwarding, STP blocking, or a rule on the port)", l.Name, next.Name)
	case l.Agent.Role == wire.RolePod && next.Role == "host veth":
		return fmt.Sprintf("it left %s's %s but never reached the node side of its veth pair", from, l.Name)
	case next.Agent.Role == wire.RolePod && l.Role == "host veth":
		return fmt.Sprintf("it left the node on %s but never reached %s's %s (the veth pair is down, or %s's namespace dropped it)", l.Name, to, next.Name, to)
	case l.Agent == next.Agent:
		return fmt.Sprintf("%s did not route it from %s to %s (routes, rp_filter, or a netfilter rule in the FORWARD path)", l.Agent.Name, l.Name, next.Name)
	case l.Agent != next.Agent && l.Agent.Role == wire.RoleNode && next.Agent.Role == wire.RoleNode:
		return fmt.Sprintf("it left %s on %s but never reached %s's %s: lost between the two nodes", l.Agent.Name, l.Name, next.Agent.Name, next.Name)
	}
	return fmt.Sprintf("last seen at %s, not seen at %s", l.Place(), next.Place())
}

// crossNodeReason explains losses around an overlay and between nodes.
func crossNodeReason(last *trace.Obs, next *trace.Iface) string {
	l := last.If
	outer := ""
	if e := last.P.Encap; e != nil {
		outer = fmt.Sprintf(" (%s vni %d %s → %s:%d)", e.Type, e.VNI, e.OuterSrc, e.OuterDst, e.DstPort)
	}
	port := ""
	if e := last.P.Encap; e != nil {
		port = fmt.Sprintf(" UDP %d", e.DstPort)
	} else if next.Link.Port != 0 {
		port = fmt.Sprintf(" UDP %d", next.Link.Port)
	} else if l.Link.Port != 0 { // at encapsulation: the overlay device's port
		port = fmt.Sprintf(" UDP %d", l.Link.Port)
	}
	switch {
	case l.Agent != next.Agent && l.Agent.Role == wire.RoleNode && next.Agent.Role == wire.RoleNode && l.Role == "node NIC" && next.Role == "node NIC":
		mtu := "an MTU too small for the packet"
		if last.P.Encap != nil {
			mtu = "an MTU too small for the outer headers"
		}
		return fmt.Sprintf("lost on the underlay between %s %s and %s %s%s: it left %s but never reached %s (a firewall or security group between the nodes blocking%s, %s, or no route between the nodes)",
			l.Agent.Name, l.Name, next.Agent.Name, next.Name, outer, l.Agent.Name, next.Agent.Name, orText(port, " it"), mtu)
	case l.Agent == next.Agent && l.Role == "node NIC" && next.Role == "overlay":
		return fmt.Sprintf("lost at %s's overlay device %s: the encapsulated packet%s crossed the underlay and reached %s %s but was never decapsulated (a firewall on %s dropping%s, a VNI or port mismatch, or %s down)",
			l.Agent.Name, next.Name, outer, l.Agent.Name, l.Name, l.Agent.Name, orText(port, " it"), next.Name)
	case l.Agent == next.Agent && next.Role == "overlay":
		return fmt.Sprintf("lost before encapsulation on %s: routed toward %s but never reached it (a netfilter FORWARD rule, rp_filter, or %s down)", l.Agent.Name, next.Name, next.Name)
	case l.Agent == next.Agent && l.Role == "overlay" && next.Role == "node NIC":
		return fmt.Sprintf("lost at encapsulation on %s: %s never sent it out of %s (the VTEP's neighbour or FDB entry missing, no underlay route to the peer node, or a netfilter OUTPUT rule on%s)",
			l.Agent.Name, l.Name, next.Name, orText(port, " the outer packet"))
	case l.Agent == next.Agent && l.Role == "overlay":
		return fmt.Sprintf("%s decapsulated it on %s but did not deliver it to %s (routes, rp_filter, or a netfilter FORWARD rule)", l.Agent.Name, l.Name, next.Label())
	}
	return ""
}

func orText(s, alt string) string {
	if s != "" {
		return s
	}
	return alt
}

// unansweredARP describes an address resolution on the way that got no
// answer: an ARP who-has (IPv4) or a neighbour solicitation (IPv6, RFC
// 4861) from an endpoint, or from anyone for the destination's address,
// without an is-at or a neighbour advertisement for the address asked.
func unansweredARP(t *trace.Trace, s trace.Session) string {
	asked := map[string]int{}
	ndp := map[string]bool{}
	flooded := map[string]map[string]bool{} // by address asked: the host veths the bridge flooded it to
	var order []string
	answered := map[string]bool{}
	for _, j := range t.Journeys {
		p := j.Obs[0].P
		var sender, target string
		switch {
		case p.ARP != nil && p.ARP.Op == "is-at":
			answered[p.ARP.SenderIP] = true
			continue
		case p.ARP != nil:
			sender, target = p.ARP.SenderIP, p.ARP.TargetIP
		case p.L4 != nil && p.L4.Proto == "icmp6" && p.L4.Type == "neighbor-advertisement":
			answered[p.L4.Target] = true
			continue
		case p.L4 != nil && p.L4.Proto == "icmp6" && p.L4.Type == "neighbor-solicitation" && p.IP != nil:
			sender, target = p.IP.Src, p.L4.Target
			ndp[target] = true
		default:
			continue
		}
		if sender != s.Src.IP && sender != s.Dst.IP && target != s.Dst.IP {
			continue
		}
		if asked[target] == 0 {
			order = append(order, target)
		}
		asked[target]++
		for _, o := range j.Obs {
			if o.If.Role == "host veth" && o.P.Dir == "out" {
				if flooded[target] == nil {
					flooded[target] = map[string]bool{}
				}
				flooded[target][o.If.Label()] = true
			}
		}
	}
	for _, ip := range order {
		if answered[ip] {
			continue
		}
		msg := fmt.Sprintf("ARP unanswered: who-has %s was asked %d time(s) and nobody answered", ip, asked[ip])
		if ndp[ip] {
			msg = fmt.Sprintf("neighbour discovery unanswered: %s was solicited %d time(s) and nobody answered", ip, asked[ip])
		}
		if len(flooded[ip]) > 0 {
			var ports []string
			for p := range flooded[ip] {
				ports = append(ports, p)
			}
			sort.Strings(ports)
			msg += " (flooded to " + strings.Join(ports, ", ") + ")"
		}
		if ip == s.Dst.IP {
			msg += fmt.Sprintf("; %s is not on this segment, or its link is down", ip)
		}
		return msg
	}
	return ""
}

// pathString is the path as the verdict line says it: "pod-a:eth0 → veth… → cni0 → … → pod-b:eth0".
func pathString(path []*trace.Iface, srcMissing, dstMissing bool, s trace.Session) string {
	var parts []string
	if srcMissing {
		parts = append(parts, s.Src.Short+":eth0 (not observable)")
	}
	for i, p := range path {
		n := p.Name
		if p.Agent.Role == wire.RolePod && (i == 0 || i == len(path)-1) {
			n = p.Agent.Name + ":" + p.Name
		}
		parts = append(parts, n)
	}
	if dstMissing {
		parts = append(parts, s.Dst.Short+":eth0 (not observable)")
	}
	return strings.Join(parts, " → ")
}
