package match

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/graph"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// pairKey matches a request with its reply: probe id, else ICMP echo id
// and sequence.
func pairKey(j *trace.Journey) (string, bool) {
	if j.Probe != "" && j.Probe != "icmp-error" {
		return j.Probe, j.IsReply
	}
	p := j.Obs[0].P
	if p.L4 != nil && (p.L4.Type == "echo-request" || p.L4.Type == "echo-reply") && p.IP != nil {
		a, b := p.IP.Src, p.IP.Dst
		if p.L4.Type == "echo-reply" {
			a, b = b, a
		}
		return fmt.Sprintf("echo/%s/%s/%d/%d", a, b, p.L4.ICMPID, p.L4.ICMPSeq), p.L4.Type == "echo-reply"
	}
	return "", false
}

// estimateClocks estimates each other node's clock offset from the
// reference node's, and which to correct: those whose offset exceeds its
// error bound (within it, correcting would only add the estimate's noise).
func estimateClocks(t *trace.Trace, s trace.Session) ([]trace.ClockEstimate, map[string]time.Duration) {
	domains := map[string]bool{}
	var ref string
	for _, a := range t.Agents {
		if a.Hello == nil {
			continue
		}
		domains[a.ClockDomain()] = true
		if a.ID == s.Src.Agent || ref == "" && a.Role == wire.RolePod {
			ref = a.ClockDomain()
		}
	}
	if len(domains) < 2 {
		return nil, nil
	}
	if ref == "" {
		for _, a := range t.Agents {
			if a.Hello != nil {
				ref = a.ClockDomain()
				break
			}
		}
	}
	reqs := map[string]*trace.Journey{}
	reps := map[string]*trace.Journey{}
	var keys []string
	for _, j := range t.Journeys {
		k, reply := pairKey(j)
		if k == "" {
			continue
		}
		if reply {
			if reps[k] == nil {
				reps[k] = j
			}
		} else if reqs[k] == nil {
			reqs[k] = j
			keys = append(keys, k)
		}
	}
	var names []string
	for d := range domains {
		if d != ref {
			names = append(names, d)
		}
	}
	sort.Strings(names)
	var out []trace.ClockEstimate
	corr := map[string]time.Duration{}
	for _, d := range names {
		e := trace.ClockEstimate{Ref: ref, Node: d}
		best := time.Duration(-1)
		for _, k := range keys {
			req, rep := reqs[k], reps[k]
			if rep == nil {
				continue
			}
			t1, t2, ok1 := crossing(req, ref, d)
			t3, t4, ok2 := crossing(rep, d, ref)
			if !ok1 || !ok2 {
				continue
			}
			off, bound := ntp(t1, t2, t3, t4)
			e.Pairs++
			if best < 0 || bound < best {
				best, e.Offset, e.Bound = bound, off, bound
			}
		}
		if e.Pairs > 0 && absDur(e.Offset) > e.Bound {
			e.Applied = true
			corr[d] = e.Offset
		}
		out = append(out, e)
	}
	return out, corr
}

// ntp is the offset of the remote clock and its error bound from a
// request leaving at t1 (local clock), arriving at t2 (remote clock), the
// reply leaving at t3 (remote) and arriving at t4 (local).
func ntp(t1, t2, t3, t4 time.Time) (offset, bound time.Duration) {
	offset = (t2.Sub(t1) + t3.Sub(t4)) / 2
	bound = (t4.Sub(t1) - t3.Sub(t2)) / 2
	if bound < 0 {
		bound = 0
	}
	return offset, bound
}

// crossing is when a journey last left clock domain a (its last hop
// there before its first hop in b, in path order) and first arrived in b.
func crossing(j *trace.Journey, a, b string) (leave, arrive time.Time, ok bool) {
	var last *trace.Obs
	for _, o := range j.Obs {
		switch o.Agent.ClockDomain() {
		case a:
			last = o
		case b:
			if last == nil {
				return leave, arrive, false
			}
			return last.P.TS, o.P.TS, true
		}
	}
	return leave, arrive, false
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// proxyARPNotes marks ARP replies a host veth sent on behalf of an address
// its namespace does not own (proxy_arp on the veth: Calico's 169.254.1.1
// gateway, answered with the veth's own MAC).
func proxyARPNotes(g *graph.Graph, t *trace.Trace) {
	for _, j := range t.Journeys {
		for _, o := range j.Obs {
			a := o.P.ARP
			if a == nil || a.Op != "is-at" || o.P.Dir != "out" || !o.If.Link.ProxyARP || o.Agent.Role != wire.RoleNode {
				continue
			}
			if !strings.EqualFold(a.SenderMAC, o.If.MAC) {
				continue
			}
			if g.AgentHasIP(o.Agent, net.ParseIP(a.SenderIP)) {
				continue // its own address: an ordinary reply
			}
			o.Note = "answered by proxy ARP on " + o.If.Name
			if o.If.Owner != "" {
				o.Note += " (" + o.If.Owner + "'s host veth, proxy_arp on)"
			}
		}
	}
}
