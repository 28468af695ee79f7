// Package verdict is what happened: it judges each probe on the expected
// path from the journeys match built (delivered, lost, partial, ARP
// unanswered; observed when passive), marks each hop of the path seen, not
// seen or not observable, and says why in words a support engineer acts
// on: where the packet was last seen, the next hop that should have seen
// it, and what usually drops a packet between those two kinds of hop.
package verdict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Judge decides the trace's verdict from the evidence (t.Verdict), and
// marks each hop of the expected path (t.Path) seen, not seen or not
// observable.
func Judge(t *trace.Trace, g *graph.Graph) {
	t.Verdict = serviceVerdict(t, t.Session, verdict(t, g, t.Session))
	kernelEvidence(t)
	uncapturedEnds(t, g)
	cutEvidence(t)
}

// Unprivileged is the name of the mode whose pod agent runs without
// privilege and captures nothing (trace.Mode).
const Unprivileged = "unprivileged"

// uncaptured says why an endpoint's own eth0 was not captured, "" when
// it was or when no agent was meant to be there: the endpoint's agent
// runs unprivileged (it only sends the probe), or the trace's mode puts
// no capture in the pods. Its node agent sees the host end of its veth.
func uncaptured(t *trace.Trace, e trace.Endpoint) string {
	for _, a := range t.Agents {
		if e.Agent != "" && a.ID == e.Agent && a.Hello != nil && a.Hello.Unprivileged {
			return "not captured: the agent in " + e.Short + " runs unprivileged and only sends the probe"
		}
	}
	if m := t.Session.Mode; m != nil && m.Name == Unprivileged && e.Agent == "" {
		return "not captured: no agent in " + e.Short + " (mode unprivileged)"
	}
	return ""
}

// uncapturedEnds puts the pods' own eth0 on the path where the mode left
// it without capture: not observable, never lost.
func uncapturedEnds(t *trace.Trace, g *graph.Graph) {
	if len(t.Path) == 0 {
		return
	}
	tp := g.Expected(t)
	s := t.Session
	hop := func(e trace.Endpoint, why string) trace.Hop {
		return trace.Hop{Place: e.Short, Label: "eth0", Role: "pod eth0", Status: "not observable", Detail: why}
	}
	if why := uncaptured(t, s.Src); tp.SrcMissing && why != "" {
		t.Path = append([]trace.Hop{hop(s.Src, why)}, t.Path...)
	}
	if why := uncaptured(t, s.Dst); tp.DstMissing && why != "" {
		t.Path = append(t.Path, hop(s.Dst, why))
	}
}

func verdict(t *trace.Trace, g *graph.Graph, s trace.Session) trace.Verdict {
	if s.Probe == nil {
		n := 0
		path := g.Expected(t).Fwd
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
		return trace.Verdict{Result: "observed", Reason: reason}
	}
	tp := g.Expected(t)
	var v trace.Verdict
	var rtts []time.Duration
	var firstLost *trace.Verdict
	marked := false
	for seq := 1; seq <= s.Probe.Count; seq++ {
		id := s.Probe.Proto + "/" + fmt.Sprint(seq)
		var req, rep *trace.Journey
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
		one := judge(t, g, s, tp, req, rep, outcome)
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
		// Mark the path hops seen by the first probe sent (a watch's
		// round holds one probe, of any sequence number).
		if !marked {
			marked = true
			markPath(t, tp.Fwd, req, rep)
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

func markPath(t *trace.Trace, path []*trace.Iface, req, rep *trace.Journey) {
	if len(t.Path) == 0 {
		return
	}
	lastSeen := -1
	for i := range t.Path {
		if i < len(path) && req.At(path[i]) != nil {
			lastSeen = i
		}
	}
	for i := range t.Path {
		if i >= len(path) {
			break
		}
		switch {
		case req.At(path[i]) != nil || t.Path[i].Status == "seen":
			t.Path[i].Status = "seen"
		case !graph.Observable(path[i], nil) || i < lastSeen:
			// Not captured although a later hop saw the packet: the
			// dataplane bypassed this capture point (an eBPF redirect,
			// a bridge that is not promiscuous): not observable, not lost.
			t.Path[i].Status = "not observable"
		}
	}
}

// judge decides one probe.
func judge(t *trace.Trace, g *graph.Graph, s trace.Session, tp *trace.ExpectedPath, req, rep *trace.Journey, outcome *wire.Probe) trace.Verdict {
	v := trace.Verdict{}
	path, srcMissing, dstMissing := tp.Fwd, tp.SrcMissing, tp.DstMissing
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
	if rep != nil && errorFromAHop(rep, s) {
		return answeredOnTheWay(t, g, s, tp, req, rep, last, next)
	}
	dstSeen := len(path) > 0 && req.At(path[len(path)-1]) != nil
	if len(path) == 0 {
		// No hop of the destination observable: the prober's outcome
		// decides. An answer (reply, or refused: RST or port
		// unreachable) came from the destination; "unreachable" and a
		// timeout are no delivery.
		dstSeen = outcome != nil && (outcome.Event == "reply" || outcome.Event == "refused")
	}
	if !dstSeen {
		v.Result = "lost"
		if last != nil {
			v.LastSeen = fmt.Sprintf("%s (+%s)", last.If.Place(), trace.FormatDuration(last.P.TS.Sub(t.Start)))
		}
		if next != nil {
			v.NotSeen = next.Place()
		}
		v.Reason = lossReason(s, last, next, true)
		if tp.Problem != "" {
			v.Reason += "; " + tp.Problem
		}
		v.Drop = netfilterDrop(t, req.Probe, false, obsAgent(last), ifAgent(next))
		if arp := unansweredARP(t, s); arp != "" {
			v.Evidence = append(v.Evidence, arp)
		}
		return v
	}
	v.Result = "delivered"
	v.Path = pathString(t, path, srcMissing, dstMissing, s)
	// The answer.
	if rep != nil {
		v.Answer = answer(rep.Obs[0].P)
		back := tp.Back
		if len(back) > 0 && rep.At(back[len(back)-1]) == nil && (outcome == nil || outcome.Event == "timeout") {
			rl, rn := walk(back, rep)
			v.Result = "lost"
			v.Reason = fmt.Sprintf("%s answered (%s) but the answer was lost on the way back: %s", s.Dst.Short, v.Answer, lossReason(s, rl, rn, false))
			if rl != nil {
				v.LastSeen = rl.If.Place()
			}
			if rn != nil {
				v.NotSeen = rn.Place()
			}
			v.Drop = netfilterDrop(t, req.Probe, true, obsAgent(rl), ifAgent(rn))
			return v
		}
	} else {
		v.Answer = "none"
		if s.Probe.Proto != "udp" {
			v.Result = "lost"
			if len(path) > 0 { // else delivered by the prober's word alone: no hop to name
				v.LastSeen = path[len(path)-1].Place()
			}
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

func obsAgent(o *trace.Obs) *trace.AgentInfo {
	if o == nil {
		return nil
	}
	return o.Agent
}

func ifAgent(i *trace.Iface) *trace.AgentInfo {
	if i == nil {
		return nil
	}
	return i.Agent
}

// walk returns the last path hop the journey was seen at and the next
// observable one it was not seen at.
func walk(path []*trace.Iface, j *trace.Journey) (last *trace.Obs, next *trace.Iface) {
	idx := -1
	for i, hop := range path {
		if o := j.At(hop); o != nil {
			last, idx = o, i
		}
	}
	for i := idx + 1; i < len(path); i++ {
		var p *wire.Packet
		if j != nil && len(j.Obs) > 0 {
			p = j.Obs[0].P
		}
		if graph.Observable(path[i], p) {
			return last, path[i]
		}
	}
	return last, nil
}

// atHop is the journey's observation at path hop i, if any.
func atHop(j *trace.Journey, path []*trace.Iface, i int) *trace.Obs {
	if len(path) == 0 || j == nil {
		return nil
	}
	return j.At(path[i])
}

func answer(p *wire.Packet) string {
	if p.L4 == nil {
		return "unknown"
	}
	switch p.L4.Proto {
	case "icmp", "icmp6":
		if p.L4.Type == "dest-unreachable" {
			return unreachableAnswer(p.L4)
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

// unreachableAnswer names an ICMP destination unreachable by its code:
// RFC 792 and RFC 1812 §5.2.7.1 for ICMP, RFC 4443 §3.1 for ICMPv6.
func unreachableAnswer(l *wire.L4) string {
	if l.Proto == "icmp6" {
		switch l.Code {
		case 0:
			return "net-unreachable" // no route to destination
		case 1:
			return "prohibited" // communication administratively prohibited
		case 3:
			return "host-unreachable" // address unreachable
		case 4:
			return "port-unreachable"
		}
		return "unreachable"
	}
	switch l.Code {
	case 0:
		return "net-unreachable"
	case 1:
		return "host-unreachable"
	case 3:
		return "port-unreachable"
	case 4:
		return "frag-needed" // fragmentation needed and DF set
	case 9, 10, 13:
		return "prohibited" // network, host or communication administratively prohibited
	}
	return "unreachable"
}

// errorFromAHop tells whether an answer is an ICMP error that a hop on the
// way sent in place of the destination (a router without a route or
// without an ARP answer, a firewall's REJECT): its source is not the
// destination's address.
func errorFromAHop(rep *trace.Journey, s trace.Session) bool {
	p := rep.Obs[0].P
	return p.L4 != nil && (p.L4.Proto == "icmp" || p.L4.Proto == "icmp6") && p.L4.Type == "dest-unreachable" &&
		p.IP != nil && p.IP.Src != s.Dst.IP
}

// answeredOnTheWay is the verdict on a probe a hop answered with an ICMP
// error in place of the destination: lost where that hop took it last,
// and why in the words of the error.
func answeredOnTheWay(t *trace.Trace, g *graph.Graph, s trace.Session, tp *trace.ExpectedPath, req, rep *trace.Journey, last *trace.Obs, next *trace.Iface) trace.Verdict {
	p := rep.Obs[0].P
	v := trace.Verdict{Result: "lost", Answer: unreachableAnswer(p.L4)}
	who, name := p.IP.Src, p.IP.Src
	if i := g.IfaceWithIP(p.IP.Src); i != nil {
		name = i.Agent.Name
		who = name + " (" + p.IP.Src + ")"
	}
	if len(tp.Fwd) == 0 && len(req.Obs) > 0 {
		last = req.Obs[len(req.Obs)-1] // in path order: the farthest hop that saw it
	}
	if last != nil {
		v.LastSeen = fmt.Sprintf("%s (+%s)", last.If.Place(), trace.FormatDuration(last.P.TS.Sub(t.Start)))
	}
	if next != nil {
		v.NotSeen = next.Place()
	}
	kind := "ICMP"
	if p.L4.Proto == "icmp6" {
		kind = "ICMPv6"
	}
	why := "it could not deliver it"
	switch v.Answer {
	case "host-unreachable":
		why = fmt.Sprintf("it could not reach %s (no ARP or neighbour discovery answer for it on the way, or no host there)", s.Dst.IP)
	case "net-unreachable":
		why = fmt.Sprintf("it has no route to %s", s.Dst.IP)
	case "prohibited":
		why = fmt.Sprintf("a firewall rule on %s rejected it", name)
	case "port-unreachable":
		why = fmt.Sprintf("a firewall rule on %s rejected it (REJECT with port unreachable)", name)
	case "frag-needed":
		why = "the packet is larger than the MTU on the way and may not be fragmented"
	}
	v.Reason = fmt.Sprintf("%s answered %s (%s destination unreachable, code %d) in place of %s: %s",
		who, unreachableWords[v.Answer], kind, p.L4.Code, s.Dst.Short, why)
	if arp := unansweredARP(t, s); arp != "" {
		v.Evidence = append(v.Evidence, arp)
	}
	return v
}

var unreachableWords = map[string]string{
	"host-unreachable": "host unreachable",
	"net-unreachable":  "network unreachable",
	"prohibited":       "communication administratively prohibited",
	"port-unreachable": "port unreachable",
	"frag-needed":      "fragmentation needed",
	"unreachable":      "destination unreachable",
}

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

func pathString(t *trace.Trace, path []*trace.Iface, srcMissing, dstMissing bool, s trace.Session) string {
	var parts []string
	missing := func(e trace.Endpoint) string {
		if uncaptured(t, e) != "" {
			return e.Short + ":eth0 (not captured)"
		}
		return e.Short + ":eth0 (not observable)"
	}
	if srcMissing {
		parts = append(parts, missing(s.Src))
	}
	for i, p := range path {
		n := p.Name
		if p.Agent.Role == wire.RolePod && (i == 0 || i == len(path)-1) {
			n = p.Agent.Name + ":" + p.Name
		}
		parts = append(parts, n)
	}
	if dstMissing {
		parts = append(parts, missing(s.Dst))
	}
	return strings.Join(parts, " → ")
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

// markSummarized marks the path hops where a summarized flow toward the
// destination was counted as seen, and, as markPath does, a hop not
// counted before one that was as not observable (bypassed, or a bridge
// that is not promiscuous).
func markSummarized(t *trace.Trace, path []*trace.Iface) {
	if len(t.Flows) == 0 {
		return
	}
	counted := map[*trace.Iface]bool{}
	for _, f := range t.Flows {
		if f.Toward {
			for _, h := range f.Hops {
				counted[h.If] = true
			}
		}
	}
	last := -1
	for i := range t.Path {
		if i < len(path) && (counted[path[i]] || t.Path[i].Status == "seen") {
			last = i
		}
	}
	for i := range t.Path {
		if i >= len(path) {
			break
		}
		switch {
		case counted[path[i]]:
			t.Path[i].Status = "seen"
		case t.Path[i].Status == "not seen" && (!graph.Observable(path[i], nil) || i < last):
			t.Path[i].Status = "not observable"
		}
	}
}
