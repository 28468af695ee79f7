package merge

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// endpointIface is the interface of an endpoint's own namespace that
// carries its IP, when an agent runs there.
func endpointIface(g *graph, e Endpoint) *Iface {
	i := g.ifaceWithIP(e.IP)
	if i != nil && i.Agent.Role == wire.RolePod {
		return i
	}
	return nil
}

// hostVethOf finds the host-side veth of an endpoint without a pod agent:
// the node interface where frames from its IP enter the node.
func hostVethOf(t *Trace, e Endpoint) *Iface {
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

// tracePath is the expected path between the endpoints, both ways.
type tracePath struct {
	fwd, back              []*Iface
	steps                  []step // the forward route, when routes were known
	problem                string // why the forward route stops short
	srcMissing, dstMissing bool
}

// expectedPath is the chain of interfaces between the endpoints, with
// each hop's role, and the CNI shape recognised along it.
func expectedPath(g *graph, t *Trace, s Session) ([]Hop, string) {
	tp := pathIfaces(g, t, s)
	if len(tp.fwd) == 0 {
		return nil, ""
	}
	detail := map[*Iface]string{}
	for _, st := range tp.steps {
		detail[st.If] = st.Detail
	}
	var hops []Hop
	var home *AgentInfo // the first node on the way
	for _, i := range tp.fwd {
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
		hops = append(hops, Hop{Place: i.Agent.Name, Label: i.Label(), Role: role, Detail: d, Status: "not seen"})
	}
	return hops, shapeOf(tp.fwd)
}

func joinDetail(d string) string {
	if d == "" {
		return ""
	}
	return "; " + d
}

func overlayText(i *Iface) string {
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
func shapeOf(path []*Iface) string {
	var bridges, overlays []string
	proxy, lxc, nodes := false, false, map[*AgentInfo]bool{}
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

// pathIfaces is the expected path as interfaces (computed once), extended
// with non-observable ends when an endpoint has no agent.
func pathIfaces(g *graph, t *Trace, s Session) *tracePath {
	if g.main != nil {
		return g.main
	}
	tp := &tracePath{}
	g.main = tp
	a, b := endpointIface(g, s.Src), endpointIface(g, s.Dst)
	if a == nil {
		a, tp.srcMissing = hostVethOf(t, s.Src), true
	}
	if b == nil {
		b, tp.dstMissing = hostVethOf(t, s.Dst), true
	}
	if a == nil || b == nil {
		return tp
	}
	r := g.routeCached(a, net.ParseIP(s.Dst.IP), tp.srcMissing)
	switch k := r.indexOr(b); {
	case k >= 0:
		tp.steps = r.Steps[:k+1]
	case r != nil && len(r.Steps) > 1:
		// The route stops short (no route, VTEP unknown): the rest of
		// the way is the graph's.
		tp.steps, tp.problem = r.Steps, r.Problem
	}
	if len(tp.steps) > 0 {
		for _, st := range tp.steps {
			tp.fwd = append(tp.fwd, st.If)
		}
		if last := tp.fwd[len(tp.fwd)-1]; last != b {
			tail := g.path(last.Key, b.Key)
			if len(tail) > 1 {
				tp.fwd = append(tp.fwd, tail[1:]...)
			} else {
				tp.fwd = append(tp.fwd, b)
			}
		}
	} else {
		tp.fwd = g.path(a.Key, b.Key)
	}
	tp.back = reverse(tp.fwd)
	if back := g.routeCached(b, net.ParseIP(s.Src.IP), tp.dstMissing); back != nil {
		if k := back.indexOr(a); k >= 0 {
			tp.back = back.ifaces()[:k+1]
		}
	}
	return tp
}

// observable: a bridge sees forwarded unicast only while promiscuous.
func observable(i *Iface, p *wire.Packet) bool {
	if i.Role != "bridge" {
		return i.Link.Captured || i.Link.Index != 0
	}
	if p != nil && isFlood(p) {
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

func seenAt(j *Journey, i *Iface) *Obs {
	if j == nil {
		return nil
	}
	for _, o := range j.Obs {
		if o.If == i {
			return o
		}
	}
	return nil
}

func place(i *Iface) string { return i.Agent.Name + " " + i.Label() }

// verdict decides from the evidence.
func verdict(t *Trace, g *graph, s Session) Verdict {
	if s.Probe == nil {
		n := 0
		path := pathIfaces(g, t, s).fwd
		for _, j := range t.Journeys {
			n += len(j.Obs)
			if j.Toward {
				markPath(t, path, j, nil)
			}
		}
		markSummarized(t, path)
		reason := fmt.Sprintf("%d packets in %d journeys observed", n, len(t.Journeys))
		if len(t.Summarized) > 0 {
			var frames uint64
			var who []string
			for _, sm := range t.Summarized {
				frames += sm.Packets
				who = append(who, sm.Agent.Name)
			}
			reason += fmt.Sprintf(", and %d frames counted in %d summarized flows (%s summarized)", frames, len(t.Flows), strings.Join(who, ", "))
		}
		return Verdict{Result: "observed", Reason: reason}
	}
	tp := pathIfaces(g, t, s)
	var v Verdict
	var rtts []time.Duration
	var firstLost *Verdict
	for seq := 1; seq <= s.Probe.Count; seq++ {
		id := s.Probe.Proto + "/" + fmt.Sprint(seq)
		var req, rep *Journey
		for _, j := range t.Journeys {
			if j.Probe == id && !j.IsReply && req == nil {
				req = j
			}
			if j.IsReply && rep == nil && (j.Probe == id || j.Probe == "icmp-error" && req != nil && j.First.After(req.First)) {
				rep = j
			}
		}
		var outcome *wire.Probe
		sent := false
		for _, p := range t.Probes {
			if p.ID == id && p.Event == "sent" {
				sent = true
			}
			if p.ID == id && p.Event != "sent" {
				outcome = p
			}
		}
		if !sent && req == nil {
			continue
		}
		v.Sent++
		one := judge(t, s, tp, req, rep, outcome)
		if one.Result == "delivered" {
			v.Delivered++
			if one.Answer != "" && one.Answer != "none" {
				v.Answered++
			}
			if one.RTT > 0 {
				rtts = append(rtts, one.RTT)
			}
			if v.Answer == "" {
				v.Answer = one.Answer
			}
			if v.Path == "" {
				v.Path = one.Path
			}
		} else if firstLost == nil {
			firstLost = &one
		}
		// Mark the path hops seen by the first probe.
		if seq == 1 {
			markPath(t, tp.fwd, req, rep)
		}
	}
	switch {
	case v.Sent == 0:
		v.Result = "lost"
		v.Reason = "no probe was sent"
		for _, a := range t.Agents {
			for _, e := range a.Errors {
				v.Evidence = append(v.Evidence, a.Name+": "+e)
			}
		}
	case v.Delivered == v.Sent:
		v.Result = "delivered"
		if len(rtts) > 0 {
			sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
			v.RTT = rtts[len(rtts)/2]
		}
	default:
		lost := *firstLost
		lost.Sent, lost.Delivered, lost.Answered = v.Sent, v.Delivered, v.Answered
		if v.Delivered > 0 {
			lost.Result = "partial"
			lost.Reason = fmt.Sprintf("%d of %d probes delivered; the first lost one: %s", v.Delivered, v.Sent, lost.Reason)
		}
		return lost
	}
	return v
}

func markPath(t *Trace, path []*Iface, req, rep *Journey) {
	if len(t.Path) == 0 {
		return
	}
	lastSeen := -1
	for i := range t.Path {
		if i < len(path) && seenAt(req, path[i]) != nil {
			lastSeen = i
		}
	}
	for i := range t.Path {
		if i >= len(path) {
			break
		}
		switch {
		case seenAt(req, path[i]) != nil || t.Path[i].Status == "seen":
			t.Path[i].Status = "seen"
		case !observable(path[i], nil) || i < lastSeen:
			// Not captured although a later hop saw the packet: the
			// dataplane bypassed this capture point (an eBPF redirect,
			// a bridge that is not promiscuous): not observable, not lost.
			t.Path[i].Status = "not observable"
		}
	}
}

// judge decides one probe.
func judge(t *Trace, s Session, tp *tracePath, req, rep *Journey, outcome *wire.Probe) Verdict {
	v := Verdict{}
	path, srcMissing, dstMissing := tp.fwd, tp.srcMissing, tp.dstMissing
	if req == nil {
		// The probe never showed up on the wire: did address resolution fail?
		if arp := unansweredARP(t, s); arp != "" {
			v.Result = "arp-unanswered"
			v.Reason = arp
			return v
		}
		v.Result = "lost"
		v.Reason = "the probe was not seen at any hop: it never left " + s.Src.Short
		if outcome != nil {
			v.Reason += " (" + outcome.Event + ": " + outcome.Detail + ")"
		}
		return v
	}
	last, next := walk(path, req)
	dstSeen := len(path) > 0 && seenAt(req, path[len(path)-1]) != nil
	if len(path) == 0 {
		dstSeen = outcome != nil && outcome.Event != "timeout" && outcome.Event != "error"
	}
	if !dstSeen {
		v.Result = "lost"
		if last != nil {
			v.LastSeen = fmt.Sprintf("%s (+%s)", place(last.If), FormatDuration(last.P.TS.Sub(t.Start)))
		}
		if next != nil {
			v.NotSeen = place(next)
		}
		v.Reason = lossReason(s, last, next, true)
		if tp.problem != "" {
			v.Reason += "; " + tp.problem
		}
		if arp := unansweredARP(t, s); arp != "" {
			v.Evidence = append(v.Evidence, arp)
		}
		return v
	}
	v.Result = "delivered"
	v.Path = pathString(path, srcMissing, dstMissing, s)
	// The answer.
	if rep != nil {
		v.Answer = answer(rep.Obs[0].P)
		back := tp.back
		if len(back) > 0 && seenAt(rep, back[len(back)-1]) == nil && (outcome == nil || outcome.Event == "timeout") {
			rl, rn := walk(back, rep)
			v.Result = "lost"
			v.Reason = fmt.Sprintf("%s answered (%s) but the answer was lost on the way back: %s", s.Dst.Short, v.Answer, lossReason(s, rl, rn, false))
			if rl != nil {
				v.LastSeen = place(rl.If)
			}
			if rn != nil {
				v.NotSeen = place(rn)
			}
			return v
		}
	} else {
		v.Answer = "none"
		if s.Probe.Proto != "udp" {
			v.Result = "lost"
			v.LastSeen = place(path[len(path)-1])
			v.Reason = fmt.Sprintf("%s received it but sent no answer (a firewall inside %s, or the kernel ignores it)", s.Dst.Short, s.Dst.Short)
			return v
		}
	}
	// The round trip as the source's eth0 saw it (kernel timestamps), else
	// as the probing socket measured it.
	if a, b := atHop(req, path, 0), atHop(rep, path, 0); a != nil && b != nil && !srcMissing {
		v.RTT = b.P.TS.Sub(a.P.TS)
	} else if outcome != nil && outcome.RTT > 0 && (outcome.Event == "reply" || outcome.Event == "refused") {
		v.RTT = outcome.RTT
	}
	return v
}

// walk returns the last path hop the journey was seen at and the next
// observable one it was not seen at.
func walk(path []*Iface, j *Journey) (last *Obs, next *Iface) {
	idx := -1
	for i, hop := range path {
		if o := seenAt(j, hop); o != nil {
			last, idx = o, i
		}
	}
	for i := idx + 1; i < len(path); i++ {
		var p *wire.Packet
		if j != nil && len(j.Obs) > 0 {
			p = j.Obs[0].P
		}
		if observable(path[i], p) {
			return last, path[i]
		}
	}
	return last, nil
}

func reverse(p []*Iface) []*Iface {
	out := make([]*Iface, len(p))
	for i := range p {
		out[i] = p[len(p)-1-i]
	}
	return out
}

// atHop is the journey's observation at path hop i, if any.
func atHop(j *Journey, path []*Iface, i int) *Obs {
	if len(path) == 0 || j == nil {
		return nil
	}
	return seenAt(j, path[i])
}

func answer(p *wire.Packet) string {
	if p.L4 == nil {
		return "unknown"
	}
	switch p.L4.Proto {
	case "icmp", "icmp6":
		if p.L4.Type == "dest-unreachable" {
			if p.L4.Code == 3 || (p.L4.Proto == "icmp6" && p.L4.Code == 4) {
				return "port-unreachable"
			}
			return "unreachable"
		}
		return p.L4.Type
	case "tcp":
		if strings.Contains(p.L4.Flags, "RST") {
			return "rst"
		}
		if strings.Contains(p.L4.Flags, "SYN") {
			return "syn-ack"
		}
		return "tcp"
	case "udp":
		return "udp-reply"
	}
	return p.L4.Proto
}

// lossReason explains a loss between two hops by the roles of both.
func lossReason(s Session, last *Obs, next *Iface, forward bool) string {
	to := s.Dst.Short
	from := s.Src.Short
	if !forward {
		to, from = from, to
	}
	switch {
	case last == nil && next != nil:
		return fmt.Sprintf("not seen at any hop of the path, not even %s", place(next))
	case last == nil:
		return "not seen at any hop of the path"
	case next == nil:
		return fmt.Sprintf("last seen at %s; the hops after it are not observable", place(last.If))
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
	return fmt.Sprintf("last seen at %s, not seen at %s", place(l), place(next))
}

// unansweredARP describes who-has requests from the endpoints that got no
// is-at reply.
func unansweredARP(t *Trace, s Session) string {
	asked := map[string]int{}
	var flooded map[string]bool
	var order []string
	answered := map[string]bool{}
	for _, j := range t.Journeys {
		p := j.Obs[0].P
		if p.ARP == nil {
			continue
		}
		if p.ARP.Op == "is-at" {
			answered[p.ARP.SenderIP] = true
			continue
		}
		if p.ARP.SenderIP != s.Src.IP && p.ARP.SenderIP != s.Dst.IP {
			continue
		}
		if asked[p.ARP.TargetIP] == 0 {
			order = append(order, p.ARP.TargetIP)
		}
		asked[p.ARP.TargetIP]++
		for _, o := range j.Obs {
			if o.If.Role == "host veth" && o.P.Dir == "out" {
				if flooded == nil {
					flooded = map[string]bool{}
				}
				flooded[o.If.Label()] = true
			}
		}
	}
	for _, ip := range order {
		if answered[ip] {
			continue
		}
		msg := fmt.Sprintf("ARP unanswered: who-has %s was asked %d time(s) and nobody answered", ip, asked[ip])
		if len(flooded) > 0 {
			var ports []string
			for p := range flooded {
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

func pathString(path []*Iface, srcMissing, dstMissing bool, s Session) string {
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

// FormatDuration prints a duration at a scale a human reads at a glance:
// µs below a millisecond, ms with two decimals below a second, else s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

// crossNodeReason explains losses around an overlay and between nodes.
func crossNodeReason(last *Obs, next *Iface) string {
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
