package verdict

import (
	"fmt"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// answer names what came back for a probe.
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
