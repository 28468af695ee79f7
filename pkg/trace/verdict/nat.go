package verdict

import (
	"fmt"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// serviceVerdict completes the verdict of a trace to a Service: no ready
// endpoints; the DNAT done then the packet lost toward the endpoint; the
// reply not translated back.
func serviceVerdict(t *trace.Trace, s trace.Session, v trace.Verdict) trace.Verdict {
	sv := s.Service
	if s.Probe == nil || sv == nil {
		return v
	}
	vip := trace.HostPort(sv.IP, sv.Port)
	if sv.NoEndpoints != "" {
		out := trace.Verdict{Result: "no-endpoints", Sent: v.Sent, Answer: v.Answer,
			Reason: fmt.Sprintf("Service %s has no ready endpoint: %s; kube-proxy rejects connections to %s", sv.Name, sv.NoEndpoints, vip)}
		if v.Answer != "" && v.Answer != "none" {
			out.Reason += " (the probe was answered " + v.Answer + ")"
		}
		return out
	}
	h := t.NATTo(sv.IP, s.Src.IP)
	if h == nil {
		if v.Result != "delivered" {
			v.Evidence = append(v.Evidence, fmt.Sprintf("no node's conntrack shows a translation of the probe to %s (no DNAT rule matched it where an agent watched)", vip))
		}
		return v
	}
	ep := trace.HostPort(h.N.Reply.Src, h.N.Reply.SrcPort)
	if h.Endpoint != h.N.Reply.Src {
		ep += " (" + h.Endpoint + ")"
	}
	if o := notUnNATed(t, s); o != nil {
		v.Result = "lost"
		v.LastSeen = o.If.Place()
		v.NotSeen = ""
		v.Path = ""
		v.Reason = fmt.Sprintf("%s answered, but its answer reached %s from %s, not from the Service's %s: no node translated it back "+
			"(it bypassed the conntrack entry of the DNAT at %s: an asymmetric path, or bridged frames that skip the node's IP hooks without br_netfilter), "+
			"so %s's socket does not take it", s.Dst.Short, s.Src.Short, trace.HostPort(h.N.Reply.Src, h.N.Reply.SrcPort), vip, h.Agent.Name, s.Src.Short)
		return v
	}
	switch v.Result {
	case "delivered":
		v.Evidence = append(v.Evidence, fmt.Sprintf("%s → %s at %s (conntrack), %s", vip, ep, h.Agent.Name, h.Reverse))
	case "lost", "partial":
		v.Reason = fmt.Sprintf("Service %s: DNAT %s → %s done at %s, then %s", sv.Name, vip, ep, h.Agent.Name, v.Reason)
	}
	return v
}

// notUnNATed finds a reply that reached the source's own namespace still
// from the endpoint's address: the node did not translate it back (it
// bypassed the node's conntrack: an asymmetric path, or bridged frames that
// do not pass the node's IP hooks).
func notUnNATed(t *trace.Trace, s trace.Session) *trace.Obs {
	if s.Service == nil {
		return nil
	}
	for _, j := range t.Journeys {
		if j.Toward {
			continue
		}
		for _, o := range j.Obs {
			if o.Agent.Role == wire.RolePod && o.P.Dir == "in" && o.P.IP != nil && o.P.IP.Src == s.Dst.IP &&
				o.P.IP.Dst == s.Src.IP && o.Translated && o.If == endpointIfaceOf(t, o.Agent, s.Src.IP) {
				return o
			}
		}
	}
	return nil
}

func endpointIfaceOf(t *trace.Trace, a *trace.AgentInfo, ip string) *trace.Iface {
	for _, o := range t.Packets {
		if o.Agent == a && o.P.IP != nil && o.P.IP.Src == ip && o.P.Dir == "out" {
			return o.If
		}
	}
	return nil
}
