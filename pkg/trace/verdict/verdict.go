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
	t.Verdict = verdict(t, g, t.Session)
	cutEvidence(t)
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
		// Mark the path hops seen by the first probe.
		if seq == 1 {
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
			return v
		}
	} else {
		v.Answer = "none"
		if s.Probe.Proto != "udp" {
			v.Result = "lost"
			v.LastSeen = path[len(path)-1].Place()
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
