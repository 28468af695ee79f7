package merge

import (
	"fmt"
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

// expectedPath is the chain of interfaces between the endpoints.
func expectedPath(g *graph, s Session) []Hop {
	a, b := endpointIface(g, s.Src), endpointIface(g, s.Dst)
	if a == nil || b == nil {
		return nil
	}
	var hops []Hop
	for _, i := range g.path(a.Key, b.Key) {
		hops = append(hops, Hop{Place: i.Agent.Name, Label: i.Label(), Role: i.Role, Status: "not seen"})
	}
	return hops
}

// pathIfaces is the expected path as interfaces, extended with
// non-observable ends when an endpoint has no agent.
func pathIfaces(g *graph, t *Trace, s Session) (path []*Iface, srcMissing, dstMissing bool) {
	a, b := endpointIface(g, s.Src), endpointIface(g, s.Dst)
	if a == nil {
		a, srcMissing = hostVethOf(t, s.Src), true
	}
	if b == nil {
		b, dstMissing = hostVethOf(t, s.Dst), true
	}
	if a == nil || b == nil {
		return nil, srcMissing, dstMissing
	}
	return g.path(a.Key, b.Key), srcMissing, dstMissing
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
		path, _, _ := pathIfaces(g, t, s)
		for _, j := range t.Journeys {
			n += len(j.Obs)
			if j.Toward {
				markPath(t, path, j, nil)
			}
		}
		return Verdict{Result: "observed", Reason: fmt.Sprintf("%d packets in %d journeys observed", n, len(t.Journeys))}
	}
	path, srcMissing, dstMissing := pathIfaces(g, t, s)
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
		one := judge(t, s, path, srcMissing, dstMissing, req, rep, outcome)
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
			markPath(t, path, req, rep)
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
	for i := range t.Path {
		if i >= len(path) {
			break
		}
		switch {
		case seenAt(req, path[i]) != nil || t.Path[i].Status == "seen":
			t.Path[i].Status = "seen"
		case !observable(path[i], nil):
			t.Path[i].Status = "not observable"
		}
	}
}

// judge decides one probe.
func judge(t *Trace, s Session, path []*Iface, srcMissing, dstMissing bool, req, rep *Journey, outcome *wire.Probe) Verdict {
	v := Verdict{}
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
			v.LastSeen = fmt.Sprintf("%s (+%s)", place(last.If), fmtDur(last.P.TS.Sub(t.Start)))
		}
		if next != nil {
			v.NotSeen = place(next)
		}
		v.Reason = lossReason(s, last, next, true)
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
		back := reverse(path)
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

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
