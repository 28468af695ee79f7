// Package match is where a packet went: it reads the agents' streams into
// the trace's agents, matches the same packet at every hop by its
// fingerprint into journeys, orders each journey's hops along the route the
// graph walks (then by time), computes per-hop deltas, estimates the
// offsets between the nodes' clocks from request/reply pairs, tags the
// probes and their answers, picks out the neighbour and FDB changes that
// matter for the flow (and the frame that caused each), and collects the
// flows agents summarized. Judging what it all means is the verdict's job.
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

// Lines is what the agents' streams hold for the journeys: every packet
// line with the agent that saw it, and the changes they reported.
type Lines struct {
	packets []seenBy
	changes []*trace.Change
	nats    map[*trace.AgentInfo][]*wire.NAT
}

type seenBy struct {
	a *trace.AgentInfo
	p *wire.Packet
}

// Read takes in a session's streams: the trace's agents (hello, topology
// snapshots, stats, summaries, errors, bye), the probes' events, warnings
// of what was lost or cut on the way and the agents' own (their hello's),
// and the packet and change lines for Journeys.
func Read(s trace.Session, streams []trace.Stream) (*trace.Trace, *Lines) {
	t := &trace.Trace{Session: s}
	in := &Lines{nats: map[*trace.AgentInfo][]*wire.NAT{}}
	for _, st := range streams {
		a := &trace.AgentInfo{ID: st.Agent, Name: st.Display, Gaps: st.Gaps, Intake: st.Intake}
		t.Agents = append(t.Agents, a)
		for _, e := range st.Lines {
			if e == nil || !wire.HasPayload(e) {
				continue
			}
			switch e.Kind {
			case wire.KindHello:
				a.Hello, a.Role, a.Node, a.NetNSID = e.Hello, e.Hello.Role, e.Hello.Node, e.Hello.NetNSID
				if a.Name == "" {
					a.Name = e.Hello.Name
				}
			case wire.KindTopology:
				if e.Topology.When == "after" {
					a.After = e.Topology
				} else if a.Before == nil {
					a.Before = e.Topology
				}
			case wire.KindPacket:
				in.packets = append(in.packets, seenBy{a, e.Packet})
			case wire.KindChange:
				in.changes = append(in.changes, &trace.Change{Agent: a, C: e.Change})
			case wire.KindProbe:
				t.Probes = append(t.Probes, e.Probe)
			case wire.KindStats:
				a.Stats = append(a.Stats, *e.Stats)
			case wire.KindSummary:
				a.Summaries = append(a.Summaries, e.Summary)
			case wire.KindError:
				a.Errors = append(a.Errors, e.Error.Msg)
			case wire.KindBye:
				a.Bye = e.Bye.Reason
			case wire.KindNAT:
				in.nats[a] = append(in.nats[a], e.NAT)
			case wire.KindNFTrace:
				a.NFTrace = append(a.NFTrace, e.NFTrace)
			case wire.KindDrop:
				if len(a.Drops) < wire.MaxDrops {
					a.Drops = append(a.Drops, e.Drop)
				}
			}
		}
		if a.Gaps > 0 {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: %d observations lost in transit (sequence gaps)", a.Name, a.Gaps))
		}
		for _, stt := range a.Stats {
			if stt.Drops > 0 {
				t.Warnings = append(t.Warnings, fmt.Sprintf("%s: the kernel dropped %d of %d captured frames (ring full)", a.Name, stt.Drops, stt.Packets+stt.Drops))
			}
		}
		for _, m := range a.Errors {
			t.Warnings = append(t.Warnings, a.Name+": "+m)
		}
		t.Warnings = append(t.Warnings, helloWarnings(a)...)
		t.Warnings = append(t.Warnings, cutWarnings(a)...)
		if a.Hello != nil && a.Hello.KernelDrops != nil && !a.Hello.KernelDrops.Armed {
			t.Warnings = append(t.Warnings, a.Name+": kernel drops not followed: "+a.Hello.KernelDrops.Why)
		}
	}
	t.Changes = in.changes
	collectNATs(t, in.nats)
	t.Session = retarget(t, s)
	return t, in
}

// Journeys places every packet observation at its interface of the graph
// (t.Packets, in time order) and groups them into journeys, each ordered
// along its route, with deltas and notes; it estimates the nodes' clock
// offsets (t.Clocks) and, where one exceeds its error bound, does it again
// on corrected timestamps; then it keeps the changes that matter for the
// flow (t.Changes), each at the moment of the frame that caused it.
func Journeys(t *trace.Trace, g *graph.Graph, in *Lines) {
	s := t.Session
	// place builds the journeys with each clock domain's timestamps
	// corrected by corr.
	place := func(corr map[string]time.Duration) {
		var all []*trace.Obs
		for _, r := range in.packets {
			i := g.At(r.a, r.p.Index, r.p.Iface)
			p := r.p
			if d := corr[r.a.ClockDomain()]; d != 0 {
				cp := *p
				cp.TS = cp.TS.Add(-d)
				p = &cp
			}
			all = append(all, &trace.Obs{Agent: r.a, If: i, P: p})
		}
		sort.SliceStable(all, func(i, j int) bool { return all[i].P.TS.Before(all[j].P.TS) })
		joinTranslated(t, all)
		t.Packets = all
		t.Start = time.Time{}
		if len(all) > 0 {
			t.Start = all[0].P.TS
		}
		t.Journeys = journeys(all, s)
		for _, j := range t.Journeys {
			orderJourney(g, s, j)
			tagProbe(s, j)
		}
		t.Changes = nil
		for _, c := range in.changes {
			if d := corr[c.Agent.ClockDomain()]; d != 0 {
				cc := *c.C
				cc.TS = cc.TS.Add(-d)
				c = &trace.Change{Agent: c.Agent, C: &cc}
			}
			t.Changes = append(t.Changes, c)
		}
	}
	place(nil)
	var corr map[string]time.Duration
	t.Clocks, corr = estimateClocks(t, s)
	if len(corr) > 0 {
		place(corr)
	}
	proxyARPNotes(g, t)
	t.Changes = relevantChanges(t, s)
	placeNATs(t, s)
}

// Order puts the journeys and changes in display order (t.Items), and
// warns when the kernel stamped a hop earlier than the hop before it.
func Order(t *trace.Trace) {
	for _, j := range t.Journeys {
		for _, o := range j.Obs {
			if o.NonMonotonic {
				t.Warnings = append(t.Warnings, "* a hop the kernel stamped earlier than the hop before it (capture points stamp a frame at different moments of its path): shown as measured, ordered by topology")
				goto done
			}
		}
	}
done:
	for _, j := range t.Journeys {
		t.Items = append(t.Items, trace.Item{TS: j.First, Journey: j})
	}
	for _, c := range t.Changes {
		t.Items = append(t.Items, trace.Item{TS: c.At, Change: c})
	}
	sort.SliceStable(t.Items, func(i, j int) bool { return t.Items[i].TS.Before(t.Items[j].TS) })
	if t.Start.IsZero() && len(t.Items) > 0 {
		t.Start = t.Items[0].TS
	}
}

// journeys groups observations by fingerprint. The same fingerprint seen
// twice at one interface in one direction is a retransmission (an ARP
// retry, a TCP SYN resent): it starts a new journey.
func journeys(all []*trace.Obs, s trace.Session) []*trace.Journey {
	var out []*trace.Journey
	open := map[string]*trace.Journey{}
	type crossing struct {
		at  *trace.Iface
		dir string
	}
	seen := map[*trace.Journey]map[crossing]bool{}
	for _, o := range all {
		if o.P.FP == "" || !relevant(o.P, s) {
			continue
		}
		at := crossing{o.If, o.P.Dir}
		j := open[o.P.FP]
		if j == nil || seen[j][at] {
			j = &trace.Journey{ID: len(out) + 1, FP: o.P.FP, First: o.P.TS, Toward: toward(o.P, s)}
			out = append(out, j)
			open[o.P.FP] = j
			seen[j] = map[crossing]bool{}
		}
		seen[j][at] = true
		j.Obs = append(j.Obs, o)
	}
	return out
}

// relevant keeps what involves the traced endpoints; everything when
// passive without endpoints.
func relevant(p *wire.Packet, s trace.Session) bool {
	ips := []string{s.Src.IP, s.Dst.IP}
	if s.Src.IP == "" && s.Dst.IP == "" {
		return true
	}
	has := func(x string) bool {
		for _, ip := range ips {
			if ip != "" && x == ip {
				return true
			}
		}
		return false
	}
	switch {
	case p.ARP != nil:
		return has(p.ARP.SenderIP) || has(p.ARP.TargetIP)
	case p.IP != nil:
		return has(p.IP.Src) || has(p.IP.Dst)
	}
	return false
}

// toward tells whether the packet moves from Src toward Dst.
func toward(p *wire.Packet, s trace.Session) bool {
	switch {
	case p.ARP != nil && p.ARP.Op == "who-has":
		return p.ARP.SenderIP != s.Dst.IP
	case p.ARP != nil:
		return p.ARP.TargetIP != s.Src.IP
	case p.IP != nil:
		return p.IP.Dst == s.Dst.IP || p.IP.Src == s.Src.IP && p.IP.Dst != s.Src.IP
	}
	return true
}

// origin is the interface the packet was sent from: where its sender's
// namespace emitted it, else where it was first seen.
func origin(g *graph.Graph, j *trace.Journey) *trace.Obs {
	p := j.Obs[0].P
	sender := ""
	switch {
	case p.ARP != nil:
		sender = p.ARP.SenderIP
	case p.IP != nil:
		sender = p.IP.Src
	}
	if own := g.IfaceWithIP(sender); own != nil {
		for _, o := range j.Obs {
			if o.Agent == own.Agent && o.P.Dir == "out" {
				return o
			}
		}
	}
	for _, o := range j.Obs {
		if o.P.Dir == "out" && o.Agent.Role == wire.RolePod {
			return o
		}
	}
	return j.Obs[0]
}

const unreachableRank = 1 << 20

// rankRevisits places a frame that comes back through an interface it
// already crossed the other way — a bridge port in hairpin mode floods a
// broadcast back to its sender — after the bridge that sent it back, not
// beside its first crossing.
func rankRevisits(g *graph.Graph, j *trace.Journey) {
	byTime := append([]*trace.Obs(nil), j.Obs...)
	sort.SliceStable(byTime, func(a, b int) bool { return byTime[a].P.TS.Before(byTime[b].P.TS) })
	any := map[*trace.Iface]*trace.Obs{}
	for _, o := range byTime {
		if any[o.If] == nil {
			any[o.If] = o
		}
	}
	first := map[*trace.Iface]*trace.Obs{}
	revisits := map[*trace.Iface]*trace.Obs{}
	for _, o := range byTime {
		f := first[o.If]
		if f == nil {
			first[o.If] = o
			continue
		}
		if f.P.Dir == o.P.Dir {
			continue
		}
		switch {
		case o.If.Master != nil && any[o.If.Master] != nil:
			o.Rank = any[o.If.Master].Rank + 1
			o.Note = "hairpin: flooded back out of the port it came in"
		default:
			for peer, r := range revisits {
				if g.Adjacent(peer, o.If) {
					o.Rank = r.Rank + 1
					o.Note = "its own frame, reflected by the bridge (hairpin)"
				}
			}
		}
		revisits[o.If] = o
	}
}

// orderJourney sorts a journey's hops by distance from where the packet
// was sent, then by time, and computes per-hop deltas and notes.
func orderJourney(g *graph.Graph, s trace.Session, j *trace.Journey) {
	o0 := origin(g, j)
	d := g.Distances(o0.If.Key)
	// An IP packet follows the routes: its hops are ranked by their place
	// on the route from where it was sent; hops off that route (flooded
	// copies, or no topology known) by their distance in the graph.
	var rt *trace.RouteWalk
	if p := o0.P; p.IP != nil {
		dst := p.IP.Dst
		if s.Service != nil && dst == s.Service.IP {
			dst = s.Dst.IP // the probe goes on to the endpoint the DNAT chose
		}
		rt = g.Route(o0.If, net.ParseIP(dst), o0.P.Dir == "in")
	}
	for _, o := range j.Obs {
		if k := rt.Index(o.If); k >= 0 {
			o.Rank = k
		} else if r, ok := d[o.If]; ok {
			o.Rank = r
		} else {
			o.Rank = unreachableRank
		}
	}
	rankRevisits(g, j)
	sort.SliceStable(j.Obs, func(a, b int) bool {
		x, y := j.Obs[a], j.Obs[b]
		if x.Rank != y.Rank {
			return x.Rank < y.Rank
		}
		return x.P.TS.Before(y.P.TS)
	})
	for i, o := range j.Obs {
		// The previous hop is the last one of a lower rank (flooded copies
		// share a rank and each count from the hop before them).
		// A bridge device's own copy is stamped when the bridge passes the
		// frame up, after it forwarded it to its ports: a port's delta
		// counts from the hop before the bridge.
		for k := i - 1; k >= 0; k-- {
			if q := j.Obs[k]; q.If.Role == "bridge" && o.If.Master == q.If {
				continue
			}
			if j.Obs[k].Rank < o.Rank || o.Rank == unreachableRank {
				o.Delta = o.P.TS.Sub(j.Obs[k].P.TS)
				o.HasDelta = true
				o.CrossClock = o.Agent.ClockDomain() != j.Obs[k].Agent.ClockDomain()
				o.NonMonotonic = o.Delta < 0 && !o.CrossClock
				break
			}
		}
	}
	// Notes: where a bridge sent the frame.
	for _, o := range j.Obs {
		if o.If.Role != "bridge" {
			continue
		}
		var ports []string
		for _, q := range j.Obs {
			if q.If.Master == o.If && q.P.Dir == "out" {
				ports = append(ports, q.If.Label())
			}
		}
		switch {
		case len(ports) > 1 || (len(ports) == 1 && graph.IsFlood(o.P)):
			o.Note = "flooded to " + strings.Join(ports, ", ")
		case len(ports) == 1:
			o.Note = "forwarded to " + ports[0]
		case len(ports) == 0 && o.P.Dir == "in":
			o.Note = "to the node's own stack"
		}
	}
	for _, o := range j.Obs {
		if o.Note == "" && o.If.Master != nil && o.P.Dir == "in" {
			o.Note = "enters " + o.If.Master.Name
		}
	}
	// What the route did at a hop: routed to a device, encapsulated,
	// decapsulated.
	if rt != nil {
		for _, o := range j.Obs {
			if k := rt.Index(o.If); k >= 0 && rt.Steps[k].Detail != "" {
				switch o.Note {
				case "", "to the node's own stack":
					o.Note = rt.Steps[k].Detail
				default:
					if strings.HasPrefix(o.Note, "enters ") {
						o.Note += ", " + rt.Steps[k].Detail
					}
				}
			}
		}
	}
}

// tagProbe marks journeys that are a probe or its answer.
func tagProbe(s trace.Session, j *trace.Journey) {
	spec := s.Probe
	if spec == nil {
		return
	}
	p := originalView(j.Obs[0])
	if p.IP == nil || p.L4 == nil {
		return
	}
	for seq := 1; seq <= spec.Count; seq++ {
		id := wire.ProbeID(spec, seq)
		switch spec.Proto {
		case "icmp":
			if (p.L4.Proto == "icmp" || p.L4.Proto == "icmp6") && p.L4.ICMPID == spec.ID&0xffff && p.L4.ICMPSeq == seq {
				j.Probe, j.IsReply = id, p.L4.Type == "echo-reply"
				return
			}
		case "tcp", "udp":
			sp := wire.SourcePort(spec, seq)
			if p.L4.Proto == spec.Proto && p.L4.SrcPort == sp && p.L4.DstPort == spec.Port {
				j.Probe = id
				return
			}
			if p.L4.Proto == spec.Proto && p.L4.DstPort == sp && p.L4.SrcPort == spec.Port {
				j.Probe, j.IsReply = id, true
				return
			}
		}
	}
	// An ICMP error from the destination (port unreachable) answers the
	// probe in flight.
	if (p.L4.Proto == "icmp" || p.L4.Proto == "icmp6") && p.L4.Type == "dest-unreachable" && p.IP.Dst == s.Src.IP {
		j.IsReply = true
		j.Probe = "icmp-error"
	}
}

// relevantChanges keeps neighbour entries of the endpoints' IPs (and of
// addresses they resolved by ARP) and FDB entries of their MACs.
func relevantChanges(t *trace.Trace, s trace.Session) []*trace.Change {
	ips := map[string]bool{s.Src.IP: true, s.Dst.IP: true}
	macs := map[string]bool{}
	for _, j := range t.Journeys {
		for _, o := range j.Obs {
			if a := o.P.ARP; a != nil {
				ips[a.SenderIP], ips[a.TargetIP] = true, true
				macs[a.SenderMAC] = true
			}
			if o.P.Eth != nil && (o.P.IP != nil || o.P.ARP != nil) && o.P.Encap == nil {
				macs[o.P.Eth.Src] = true
			}
		}
	}
	delete(ips, "")
	delete(macs, "00:00:00:00:00:00")
	var out []*trace.Change
	for _, c := range t.Changes {
		w := c.C
		switch {
		case w.Neigh != nil && ips[w.Neigh.IP]:
			was := ""
			if w.Was != "" {
				was = " (was: " + w.Was + ")"
			} else if w.Action == "new" {
				was = " (new)"
			}
			mac := w.Neigh.MAC
			if mac == "" {
				mac = "?"
			}
			if w.Action == "deleted" {
				c.Text = fmt.Sprintf("neigh %s %s deleted", w.Neigh.IP, w.Neigh.Dev)
			} else {
				c.Text = fmt.Sprintf("neigh %s → %s %s on %s%s", w.Neigh.IP, mac, w.Neigh.State, w.Neigh.Dev, was)
			}
		case w.FDB != nil && macs[w.FDB.MAC] && !w.FDB.Local:
			br := w.FDB.Bridge
			if br != "" {
				br += " "
			}
			switch w.Action {
			case "deleted":
				c.Text = fmt.Sprintf("%sfdb %s on %s removed", br, w.FDB.MAC, w.FDB.Port)
			case "new":
				c.Text = fmt.Sprintf("%sfdb %s learned on %s (new)", br, w.FDB.MAC, w.FDB.Port)
			default:
				c.Text = fmt.Sprintf("%sfdb %s now on %s (was: %s)", br, w.FDB.MAC, w.FDB.Port, w.Was)
			}
		case w.Link != nil && w.Action != "new" && isOperState(w.Was) && w.Was != w.Link.State:
			c.Text = fmt.Sprintf("link %s %s", w.Link.Name, w.Link.State)
		default:
			continue
		}
		c.At = c.C.TS
		if cause := causeOf(t.Packets, c); cause != nil && !cause.P.TS.After(c.C.TS) {
			c.At, c.Cause = cause.P.TS, cause
		}
		out = append(out, c)
	}
	return out
}

// causeOf finds the frame that made the kernel learn an FDB or neighbour
// entry: the first frame from the MAC entering that bridge port, or the
// first ARP frame from that address reaching that namespace.
func causeOf(all []*trace.Obs, c *trace.Change) *trace.Obs {
	w := c.C
	if w.Action != "new" && w.Action != "changed" {
		return nil
	}
	for _, o := range all { // in time order
		if o.Agent != c.Agent || o.P.Dir != "in" {
			continue
		}
		switch {
		case w.FDB != nil:
			if o.P.Eth != nil && o.P.Encap == nil && o.P.Eth.Src == w.FDB.MAC && o.If.Name == w.FDB.Port {
				return o
			}
		case w.Neigh != nil:
			if o.If.Name != w.Neigh.Dev {
				continue
			}
			if a := o.P.ARP; a != nil && a.SenderIP == w.Neigh.IP && a.SenderMAC == w.Neigh.MAC {
				return o
			}
			// IPv6: a neighbour solicitation from the address, or an
			// advertisement for it, sent from that MAC.
			if l := o.P.L4; l != nil && l.Proto == "icmp6" && o.P.Eth != nil && o.P.Eth.Src == w.Neigh.MAC && o.P.IP != nil &&
				(l.Type == "neighbor-solicitation" && o.P.IP.Src == w.Neigh.IP || l.Type == "neighbor-advertisement" && l.Target == w.Neigh.IP) {
				return o
			}
		}
	}
	return nil
}

func isOperState(s string) bool {
	switch s {
	case "up", "down", "lowerlayerdown", "dormant", "notpresent", "testing", "unknown":
		return true
	}
	return false
}
