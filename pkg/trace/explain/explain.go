// Package explain tells what happened to one trace's packet in plain
// words (--explain): a short narrative after the trace, each sentence
// pinned to the lines of the trace it rests on. Every sentence comes from
// evidence the trace holds — a frame at a hop, a note the trace prints
// beside it, a neighbour or FDB change, a conntrack translation, the
// agents' routes and links, the verdict and its reasons — and a sentence
// for an event the trace did not see is never written. It reads a
// finished trace (its types only) and judges nothing itself: a loss is
// told in the verdict's words.
package explain

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Ref pins a sentence to one line of the trace: a row of its body (Line,
// the number the text output prints with --explain, counted from 1 over
// the hop, nat and change lines in display order), or the path, policy or
// verdict lines below it (Line 0).
type Ref struct {
	Line    int           `json:"line,omitempty"`
	Kind    string        `json:"kind"` // hop, nat, change, path, policy, verdict, routes
	TNs     time.Duration `json:"tNs"`  // the row's time since the trace start, as printed
	Journey int           `json:"journey,omitempty"`
	Agent   string        `json:"agent,omitempty"`
	Iface   string        `json:"iface,omitempty"`
	// Shows is what the line prints that the sentence rests on (a frame's
	// summary, a note, a change): the line carries it word for word.
	Shows string `json:"shows,omitempty"`
}

// Sentence is one step of the story.
type Sentence struct {
	// Topic names the step: namespace, veth, arp-request, fdb, arp-reply,
	// proxy-arp, neighbour, probe, forward, route, dnat, encapsulation,
	// underlay, decapsulation, delivered, reply, probes, not-observable,
	// loss, policy, passive.
	Topic string `json:"topic"`
	Text  string `json:"text"`
	Refs  []Ref  `json:"refs"`
}

// Narrative is the story of a trace, in the order it happened.
type Narrative struct {
	Sentences []Sentence `json:"sentences"`
}

// Lines is the sentence's body-row numbers, in order.
func (s Sentence) Lines() []int {
	var out []int
	for _, r := range s.Refs {
		if r.Line > 0 {
			out = append(out, r.Line)
		}
	}
	return out
}

// builder holds what the sentences are built from: the trace, its rows
// and where each observation, change and translation is printed.
type builder struct {
	t       *trace.Trace
	rows    []trace.Row
	obsRow  map[*trace.Obs]trace.Row
	chRow   map[*trace.Change]trace.Row
	natRow  map[*trace.Journey]trace.Row
	out     []Sentence
	told    map[*trace.Change]bool
	src     *trace.AgentInfo // the source's own agent, nil when none
	dst     *trace.AgentInfo
	srcEth  *trace.Iface
	fdbByMC map[string]*trace.Change // FDB changes by MAC|port
	pending *Sentence                // a bridged sentence waiting for flushBridged
	fdbTold bool                     // what an FDB is was told
	// resolutions are ARP exchanges of others during the probe, not told yet.
	resolutions []*trace.Journey
}

// Build tells the story of the trace.
func Build(t *trace.Trace) *Narrative {
	b := &builder{t: t, rows: t.Rows(), obsRow: map[*trace.Obs]trace.Row{}, chRow: map[*trace.Change]trace.Row{},
		natRow: map[*trace.Journey]trace.Row{}, told: map[*trace.Change]bool{}, fdbByMC: map[string]*trace.Change{}}
	for _, r := range b.rows {
		switch {
		case r.Change != nil:
			b.chRow[r.Change] = r
		case r.NAT != nil:
			b.natRow[r.Journey] = r
		default:
			b.obsRow[r.Obs] = r
		}
	}
	s := t.Session
	for _, a := range t.Agents {
		if a.ID == s.Src.Agent && s.Src.Agent != "" && a.Role == wire.RolePod {
			b.src = a
		}
		if a.ID == s.Dst.Agent && s.Dst.Agent != "" && a.Role == wire.RolePod {
			b.dst = a
		}
	}
	for _, c := range t.Changes {
		if f := c.C.FDB; f != nil && c.C.Action != "deleted" {
			k := strings.ToLower(f.MAC) + "|" + f.Port
			if b.fdbByMC[k] == nil {
				b.fdbByMC[k] = c
			}
		}
	}
	if s.Probe == nil {
		b.passive()
		return &Narrative{Sentences: b.out}
	}
	req, rep := b.probeJourneys()
	first := req
	arp := b.sourceARP(req)
	if arp != nil && (first == nil || arp.First.Before(first.First)) {
		first = arp
	}
	b.namespace(first, arp, req)
	if arp == nil || first != arp {
		b.veth(first)
	}
	if arp != nil {
		b.arpRequest(arp, func() { b.veth(first) })
		b.changesCausedBy(arp)
		if ans := b.arpAnswer(arp); ans != nil {
			b.arpReply(arp, ans)
			b.changesCausedBy(ans)
		}
	}
	if req != nil {
		for _, j := range b.t.Journeys {
			if p := j.Obs[0].P; j != arp && p.ARP != nil && p.ARP.Op == "who-has" && !j.First.Before(req.First) {
				b.resolutions = append(b.resolutions, j)
			}
		}
		b.probe(req)
		b.changesCausedBy(req)
		if rep != nil {
			b.resolve(rep.First)
		}
	}
	if rep != nil && b.t.Verdict.Answer != "" && !strings.Contains(b.t.Verdict.Reason, "in place of") {
		b.reply(req, rep)
		b.changesCausedBy(rep)
	}
	b.resolve(time.Time{})
	b.otherChanges()
	if v := b.t.Verdict; v.Sent > 1 && v.Result == "delivered" {
		b.say("probes", fmt.Sprintf("This tells the first of the %d probes sent; all %d were delivered.", v.Sent, v.Delivered),
			Ref{Kind: "verdict", Shows: fmt.Sprintf("%d/%d probes", v.Delivered, v.Sent)})
	}
	b.notObservable()
	b.loss(arp, req, rep)
	b.policy()
	return &Narrative{Sentences: b.out}
}

// say adds a sentence.
func (b *builder) say(topic, text string, refs ...Ref) {
	b.out = append(b.out, Sentence{Topic: topic, Text: text, Refs: refs})
}

// hop is the reference to an observation's line; shows is what the
// sentence reads on it ("" : the place alone).
func (b *builder) hop(o *trace.Obs, shows string) Ref {
	r := b.obsRow[o]
	ref := Ref{Line: r.N, Kind: "hop", TNs: r.TS().Sub(b.t.Start), Agent: o.Agent.Name, Iface: o.If.Label(), Shows: shows}
	if r.Journey != nil {
		ref.Journey = r.Journey.ID
	}
	return ref
}

func (b *builder) change(c *trace.Change) Ref {
	r := b.chRow[c]
	return Ref{Line: r.N, Kind: "change", TNs: r.TS().Sub(b.t.Start), Agent: c.Agent.Name, Shows: c.Text}
}

func (b *builder) nat(j *trace.Journey) Ref {
	r := b.natRow[j]
	text := j.NAT.Text
	if r.Reverse {
		text = j.NAT.ReverseText()
	}
	return Ref{Line: r.N, Kind: "nat", TNs: r.TS().Sub(b.t.Start), Journey: j.ID, Agent: j.NAT.Agent.Name, Shows: text}
}

// probeJourneys are the first probe's request and its answer.
func (b *builder) probeJourneys() (req, rep *trace.Journey) {
	s := b.t.Session
	id := s.Probe.Proto + "/1"
	for _, j := range b.t.Journeys {
		if j.Probe == id && !j.IsReply && req == nil {
			req = j
		}
	}
	for _, j := range b.t.Journeys {
		if j.IsReply && rep == nil && (j.Probe == id || j.Probe == "icmp-error" && req != nil && j.First.After(req.First)) {
			rep = j
		}
	}
	return req, rep
}

// sentBy is the journey's frame where the source's namespace sent it out
// of its interface, nil when the source's agent did not see it leave.
func (b *builder) sentBy(j *trace.Journey, a *trace.AgentInfo) *trace.Obs {
	if j == nil || a == nil {
		return nil
	}
	for _, o := range j.Obs {
		if o.Agent == a && o.P.Dir == "out" {
			return o
		}
	}
	return nil
}

// sourceARP is the source's first ARP who-has, sent before the probe
// (or without one), for the probe's next hop when the route names it.
func (b *builder) sourceARP(req *trace.Journey) *trace.Journey {
	s := b.t.Session
	for _, j := range b.t.Journeys {
		p := j.Obs[0].P
		if p.ARP == nil || p.ARP.Op != "who-has" || p.ARP.SenderIP != s.Src.IP {
			continue
		}
		if req != nil && !j.First.Before(req.First) {
			continue
		}
		return j
	}
	return nil
}

func probeDst(s trace.Session) string {
	if s.Probe != nil && s.Probe.Dst != "" {
		return s.Probe.Dst
	}
	return s.Dst.IP
}

// namespace: the source's own namespace, its address and the route it
// takes toward the probe's destination, and the next hop whose MAC it
// needs.
func (b *builder) namespace(first, arp, req *trace.Journey) {
	s := b.t.Session
	o := b.sentBy(first, b.src)
	if o == nil {
		return
	}
	b.srcEth = o.If
	dst := probeDst(s)
	addr := ""
	for _, a := range o.If.Link.Addrs {
		if ip, _, err := net.ParseCIDR(a); err == nil && ip.String() == s.Src.IP {
			addr = " (" + a + ")"
		}
	}
	text := fmt.Sprintf("%s has a network namespace of its own, with its own interface %s%s", s.Src.Short, o.If.Name, addr)
	r := b.src.RouteTo(net.ParseIP(dst))
	if r == nil {
		b.say("namespace", text+".", b.hop(o, first.Obs[0].P.Summary))
		return
	}
	nh := dst
	route := routeText(r)
	switch {
	case r.Gateway != "" && (r.Dst == "default" || r.Dst == "0.0.0.0/0" || r.Dst == "::/0"):
		text += fmt.Sprintf(" and its own routing table: its default route `%s` sends %s to the gateway %s", route, dst, r.Gateway)
		nh = r.Gateway
	case r.Gateway != "":
		text += fmt.Sprintf(" and its own routing table: the route `%s` sends %s to the gateway %s", route, dst, r.Gateway)
		nh = r.Gateway
	default:
		text += fmt.Sprintf(" and its own routing table: the route `%s` has no gateway, %s is on %s's own link", route, dst, r.Dev)
	}
	refs := []Ref{b.hop(o, first.Obs[0].P.Summary), {Kind: "routes", Agent: b.src.Name, Shows: route}}
	switch {
	case arp != nil && arp.Obs[0].P.ARP.TargetIP == nh:
		who := "its MAC"
		if nh == s.Dst.IP {
			who = s.Dst.Short + "'s own MAC"
		} else if nh == r.Gateway {
			who = "the gateway's MAC (not " + s.Dst.Short + "'s)"
		}
		text += fmt.Sprintf(", so %s needs %s to address the frame", s.Src.Short, who)
	case arp == nil && req != nil:
		if n := neighBefore(b.src, o.If, nh); n != nil {
			text += fmt.Sprintf("; its neighbour table already held %s → %s (%s) before the probe, so no ARP was needed", nh, n.MAC, n.State)
		}
	}
	b.say("namespace", text+".", refs...)
}

func neighBefore(a *trace.AgentInfo, i *trace.Iface, ip string) *wire.Neigh {
	if a.Before == nil {
		return nil
	}
	for k := range a.Before.Neigh {
		n := &a.Before.Neigh[k]
		if n.IP == ip && n.Index == i.Key.Index && n.MAC != "" && n.State != "FAILED" && n.State != "INCOMPLETE" {
			return n
		}
	}
	return nil
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

// veth: the source's interface is one end of a veth pair whose other end
// is the node's host veth, where the same frame is seen next.
func (b *builder) veth(j *trace.Journey) {
	o := b.sentBy(j, b.src)
	if o == nil || o.If.Kind != "veth" {
		return
	}
	for k, q := range j.Obs {
		if q != o || k+1 >= len(j.Obs) {
			continue
		}
		n := j.Obs[k+1]
		if n.If.Role != "host veth" || n.Agent.Role != wire.RoleNode || n.P.Dir != "in" {
			return
		}
		after := ""
		if n.HasDelta && !n.CrossClock && n.Delta >= 0 {
			after = " " + trace.FormatDuration(n.Delta) + " later"
		}
		b.say("veth", fmt.Sprintf("%s is one end of a veth pair; the other end, %s, is in %s's namespace, where the same frame arrives%s.",
			o.If.Name, n.If.Name, n.Agent.Name, after), b.hop(o, ""), b.hop(n, ""))
		return
	}
}

// owner names whose interface has a MAC: "pod-a's eth0"; "" when no
// agent's interface has it, or more than one has (proxy ARP veths share
// one MAC). Bridge ports are left out: a bridge takes a port's MAC.
func (b *builder) owner(mac string) string {
	who := ""
	for _, a := range b.t.Agents {
		if a.Hello == nil {
			continue
		}
		for _, l := range a.Hello.Links {
			if l.MAC == "" || !strings.EqualFold(l.MAC, mac) || l.Master != 0 {
				continue // a bridge port lends its MAC to the bridge: the bridge is named
			}
			if who != "" {
				return ""
			}
			who = a.Name + "'s " + l.Name
		}
	}
	return who
}

// portsOut are the bridge's ports a journey's frame left by, in path
// order.
func portsOut(j *trace.Journey, br *trace.Iface) []*trace.Obs {
	var out []*trace.Obs
	for _, o := range j.Obs {
		if o.If.Master == br && o.P.Dir == "out" {
			out = append(out, o)
		}
	}
	return out
}

func labels(os []*trace.Obs) string {
	var s []string
	for _, o := range os {
		s = append(s, o.If.Label())
	}
	return strings.Join(s, ", ")
}

// arpRequest: the who-has, broadcast, and what the bridge did with it.
// mid, when set, tells what comes between the request and the bridge.
func (b *builder) arpRequest(j *trace.Journey, mid func()) {
	o := j.Obs[0]
	p := o.P
	text := fmt.Sprintf("%s asks who has %s with an ARP request", o.Agent.Name, p.ARP.TargetIP)
	if p.Eth != nil && p.Eth.Dst == "ff:ff:ff:ff:ff:ff" {
		text += " sent to the broadcast MAC ff:ff:ff:ff:ff:ff"
	}
	b.say("arp-request", text+".", b.hop(o, p.Summary))
	if mid != nil {
		mid()
	}
	for _, q := range j.Obs {
		if q.If.Role != "bridge" || !strings.Contains(q.Note, "flooded to ") {
			continue
		}
		ports := portsOut(j, q.If)
		refs := []Ref{b.hop(q, "flooded to ")}
		for _, po := range ports {
			refs = append(refs, b.hop(po, ""))
		}
		// A port the frame came in by and is flooded back out of: the
		// port is in hairpin mode.
		var out, back []*trace.Obs
		for _, po := range ports {
			if slices.ContainsFunc(j.Obs, func(x *trace.Obs) bool { return x.If == po.If && x.P.Dir == "in" }) {
				back = append(back, po)
			} else {
				out = append(out, po)
			}
		}
		text := fmt.Sprintf("The bridge %s floods it, as it does every broadcast, to %s", q.If.Name, labels(out))
		if n := bridgePorts(q.If); n > 0 && len(out) == n-1 && q.P.Dir == "in" {
			text = fmt.Sprintf("The bridge %s floods the broadcast out of every port but the one it came in by: %s", q.If.Name, labels(out))
		}
		if len(back) > 0 {
			text += fmt.Sprintf(", and back out of %s, the port it came in by (hairpin mode)", labels(back))
		}
		for _, d := range j.Obs {
			if d.Agent.Role == wire.RolePod && d.Agent != o.Agent && d.P.Dir == "in" {
				text += fmt.Sprintf("; %s receives it on its %s", d.Agent.Name, d.If.Name)
				refs = append(refs, b.hop(d, ""))
				break
			}
		}
		if q.Agent != o.Agent {
			if l := ownsIP(q.Agent, p.ARP.TargetIP); l != nil {
				text += fmt.Sprintf("; %s itself holds %s, on its %s", q.Agent.Name, p.ARP.TargetIP, l.Name)
			}
		}
		b.say("arp-request", text+".", refs...)
		return
	}
}

// bridgePorts counts the interfaces enslaved to a bridge, 0 when its
// agent said nothing of its links.
func bridgePorts(br *trace.Iface) int {
	if br.Agent.Hello == nil {
		return 0
	}
	n := 0
	for _, l := range br.Agent.Hello.Links {
		if l.Master == br.Key.Index {
			n++
		}
	}
	return n
}

// resolve tells the address resolutions of others (b.resolutions) that
// started before until (zero: all that are left): a node resolving the
// destination's MAC before it can deliver the probe, the destination
// resolving its gateway to answer. The walk of a journey calls it before
// each hop, so that they are told in the order they happened.
func (b *builder) resolve(until time.Time) {
	for len(b.resolutions) > 0 {
		j := b.resolutions[0]
		if !until.IsZero() && !j.First.Before(until) {
			return
		}
		b.resolutions = b.resolutions[1:]
		b.arpRequest(j, nil)
		b.changesCausedBy(j)
		if ans := b.arpAnswer(j); ans != nil {
			b.arpReply(j, ans)
			b.changesCausedBy(ans)
		}
	}
}

// ownsIP is the interface of an agent that holds ip, nil when none.
func ownsIP(a *trace.AgentInfo, ip string) *wire.Link {
	x := net.ParseIP(ip)
	if a.Hello == nil || x == nil {
		return nil
	}
	for k := range a.Hello.Links {
		l := &a.Hello.Links[k]
		i := trace.Iface{Link: *l}
		if l.Name != "lo" && i.HasIP(x) {
			return l
		}
	}
	return nil
}

// arpAnswer is the is-at that answers the source's who-has.
func (b *builder) arpAnswer(req *trace.Journey) *trace.Journey {
	asked := req.Obs[0].P.ARP
	for _, j := range b.t.Journeys {
		p := j.Obs[0].P
		if p.ARP != nil && p.ARP.Op == "is-at" && p.ARP.SenderIP == asked.TargetIP && p.ARP.TargetIP == asked.SenderIP && !j.First.Before(req.First) {
			return j
		}
	}
	return nil
}

// arpReply: who answered (the destination, the node for its own
// address, or the node by proxy ARP), and how it came back.
func (b *builder) arpReply(req, j *trace.Journey) {
	o := j.Obs[0]
	a := o.P.ARP
	var text string
	switch {
	case strings.HasPrefix(o.Note, "answered by proxy ARP") && o.If.Link.ProxyARP && strings.EqualFold(a.SenderMAC, o.If.MAC):
		whose := ""
		if o.If.Owner != "" {
			whose = ", " + o.If.Owner + "'s host veth"
		}
		text = fmt.Sprintf("%s does not hold %s itself, yet answers in its place by proxy ARP on %s%s (proxy_arp is on there), with the veth's own MAC: %s is-at %s",
			o.Agent.Name, a.SenderIP, o.If.Name, whose, a.SenderIP, a.SenderMAC)
		b.say("proxy-arp", text+".", b.hop(o, o.Note))
	case o.Agent.Role == wire.RoleNode && ownsIP(o.Agent, a.SenderIP) != nil:
		l := ownsIP(o.Agent, a.SenderIP)
		text = fmt.Sprintf("%s answers itself: %s is the address of its own %s, and it replies %s is-at %s", o.Agent.Name, a.SenderIP, l.Name, a.SenderIP, a.SenderMAC)
		b.say("arp-reply", text+".", b.hop(o, o.P.Summary))
	default:
		text = fmt.Sprintf("%s answers with an ARP reply: %s is-at %s", o.Agent.Name, a.SenderIP, a.SenderMAC)
		if e := o.P.Eth; e != nil && e.Dst != "ff:ff:ff:ff:ff:ff" {
			text = fmt.Sprintf("%s answers with an ARP reply sent to %s alone: %s is-at %s", o.Agent.Name, e.Dst, a.SenderIP, a.SenderMAC)
		}
		b.say("arp-reply", text+".", b.hop(o, o.P.Summary))
	}
	// How the bridge passed it back, and where it arrived.
	for k, q := range j.Obs {
		if q.If.Role == "bridge" && strings.Contains(q.Note, "forwarded to ") {
			b.bridged(j, k, q, "the reply", nil, false)
			b.flushBridged()
			break
		}
	}
	last := j.Obs[len(j.Obs)-1]
	if last.Agent == req.Obs[0].Agent && last != o {
		b.say("arp-reply", fmt.Sprintf("The reply reaches %s's %s.", last.Agent.Name, last.If.Name), b.hop(last, ""))
	}
}

// changesCausedBy tells the neighbour and FDB changes whose causing frame
// belongs to the journey, in the order of the trace.
func (b *builder) changesCausedBy(j *trace.Journey) {
	if j == nil {
		return
	}
	mine := map[*trace.Obs]bool{}
	for _, o := range j.Obs {
		mine[o] = true
	}
	for _, r := range b.rows {
		c := r.Change
		if c == nil || b.told[c] || c.Cause == nil || !mine[c.Cause] {
			continue
		}
		b.told[c] = true
		b.tellChange(c)
	}
}

func (b *builder) tellChange(c *trace.Change) {
	w := c.C
	refs := []Ref{b.change(c)}
	if c.Cause != nil {
		refs = append(refs, b.hop(c.Cause, ""))
	}
	switch {
	case w.FDB != nil && w.Action == "new":
		who := ""
		if o := b.owner(w.FDB.MAC); o != "" {
			who = " (" + o + ")"
		}
		br := w.FDB.Bridge
		if br == "" {
			br = "The bridge"
		}
		what := "a new entry in its FDB"
		if !b.fdbTold {
			what = "a new entry in its forwarding database (FDB), its table of which MAC is behind which port; a bridge switches frames by MAC and keeps no ARP cache"
			b.fdbTold = true
		}
		b.say("fdb", fmt.Sprintf("%s learns from that frame's source MAC that %s%s is behind its port %s: %s.",
			br, w.FDB.MAC, who, w.FDB.Port, what), refs...)
	case w.FDB != nil && w.Action == "changed":
		b.say("fdb", fmt.Sprintf("The bridge's FDB moves %s to port %s (was: %s).", w.FDB.MAC, w.FDB.Port, w.Was), refs...)
	case w.Neigh != nil && w.Action != "deleted":
		n := w.Neigh
		where := c.Agent.Name + "'s neighbour table"
		if c.Agent.Role == wire.RolePod {
			where = c.Agent.Name + "'s own neighbour table (its ARP cache, in its namespace)"
		}
		how := ""
		if c.Cause == nil {
			// no causing frame seen: nothing to say of how
		} else if a := c.Cause.P.ARP; a != nil {
			switch {
			case a.Op == "is-at" && n.State == "REACHABLE":
				how = ": confirmed by the reply"
			case a.Op == "who-has" && n.State == "STALE":
				how = ": learned from the request it received, not confirmed yet"
			default:
				// Another state than the frame alone would give: the
				// entry existed in some form before; only the moment is
				// certain.
				how = ", as the " + map[string]string{"who-has": "request", "is-at": "reply"}[a.Op] + " arrived"
			}
		}
		verb := "now holds"
		if w.Action == "changed" {
			verb = "updates"
		}
		b.say("neighbour", fmt.Sprintf("%s %s %s → %s, %s, on %s%s.", where, verb, n.IP, n.MAC, n.State, n.Dev, how), refs...)
	}
}

// otherChanges tells the changes no sentence told yet, in the trace's
// order.
func (b *builder) otherChanges() {
	for _, r := range b.rows {
		if c := r.Change; c != nil && !b.told[c] {
			b.told[c] = true
			b.tellChange(c)
		}
	}
}

// probe: the probe leaves, crosses the hops, what each did, and whether
// it reached the destination.
func (b *builder) probe(j *trace.Journey) {
	s := b.t.Session
	o := j.Obs[0]
	text := fmt.Sprintf("Then the probe itself leaves %s: %s", o.Agent.Name, o.P.Summary)
	if o.P.Eth != nil && b.srcEth != nil && o.If == b.srcEth {
		if who := b.owner(o.P.Eth.Dst); who != "" {
			text += fmt.Sprintf(", in a frame to %s (%s)", o.P.Eth.Dst, who)
		} else {
			text += fmt.Sprintf(", in a frame to %s", o.P.Eth.Dst)
		}
	}
	b.say("probe", text+".", b.hop(o, o.P.Summary))
	b.walk(j, "it")
	last := j.Obs[len(j.Obs)-1]
	if b.dst != nil && last.Agent == b.dst && last.P.Dir == "in" {
		text := fmt.Sprintf("%s receives it on its %s", s.Dst.Short, last.If.Name)
		if first := j.Obs[0]; first.Agent.ClockDomain() == last.Agent.ClockDomain() && last.P.TS.After(first.P.TS) {
			text += fmt.Sprintf(", %s after it left %s", trace.FormatDuration(last.P.TS.Sub(first.P.TS)), first.Agent.Name)
		}
		b.say("delivered", text+".", b.hop(last, ""))
	}
}

// walk tells what happened at the hops of a journey past its first:
// bridged, routed, translated, encapsulated, carried across the
// underlay, decapsulated.
func (b *builder) walk(j *trace.Journey, noun string) {
	var plain []*trace.Obs // hops crossed without anything to tell
	told := map[*trace.Obs]bool{}
	flush := func() {
		if len(plain) == 0 {
			return
		}
		var refs []Ref
		for _, o := range plain {
			refs = append(refs, b.hop(o, ""))
		}
		b.say("forward", fmt.Sprintf("%s crosses %s.", capital(noun), placesText(plain)), refs...)
		plain = nil
	}
	for k, o := range j.Obs {
		if k == 0 || told[o] {
			continue
		}
		bridging := o.If.Role == "bridge" && strings.Contains(o.Note, "forwarded to ")
		if j.NAT != nil && k == j.NATAt {
			// The translation, where the trace shows it: before this
			// hop, and before what happened after it.
			flush()
			b.translation(j, o)
		}
		if len(b.resolutions) > 0 && b.resolutions[0].First.Before(o.P.TS) {
			if !bridging {
				flush()
			}
			b.resolve(o.P.TS)
		}
		note := o.Note
		switch {
		case o.If.Role == "bridge" && strings.Contains(note, "forwarded to "):
			cited := b.bridged(j, k, o, noun, plain, true)
			var rest []*trace.Obs
			for _, q := range plain {
				if !cited[q] {
					rest = append(rest, q)
				}
			}
			plain = rest
			flush()
			b.flushBridged()
			for q := range cited {
				told[q] = true
			}
		case strings.Contains(note, "routed: "):
			rt := note[strings.Index(note, "routed: ")+len("routed: "):]
			if i := strings.Index(rt, ", "); i >= 0 {
				rt = rt[:i]
			}
			text := fmt.Sprintf("%s routes it: `%s`", o.Agent.Name, rt)
			refs := []Ref{b.hop(o, "routed: "+rt)}
			if o.If.Role == "bridge" && o.P.Eth != nil && strings.EqualFold(o.P.Eth.Dst, o.If.MAC) {
				text = fmt.Sprintf("The frame is addressed to %s's own MAC %s, so %s takes it up to its own stack and routes it: `%s`", o.If.Name, o.If.MAC, o.Agent.Name, rt)
				if n := len(plain); n > 0 && plain[n-1].If.Master == o.If && plain[n-1].P.Dir == "in" {
					in := plain[n-1]
					plain = plain[:n-1]
					refs = append([]Ref{b.hop(in, "")}, refs...)
					text = fmt.Sprintf("%s enters %s by %s; t%s", capital(noun), o.If.Name, in.If.Label(), text[1:])
				}
			}
			flush()
			b.say("route", text+".", refs...)
		case o.If.Role == "overlay" && strings.Contains(note, "encapsulated to VTEP "):
			flush()
			l := o.If.Link
			kind := strings.ToUpper(o.If.Kind)
			if kind == "" {
				kind = "overlay"
			}
			vtep := note[strings.Index(note, "encapsulated to VTEP ")+len("encapsulated to VTEP "):]
			if i := strings.Index(vtep, ", "); i >= 0 {
				vtep = vtep[:i]
			}
			text := fmt.Sprintf("%s's %s is a %s device (VNI %d", o.Agent.Name, o.If.Name, kind, l.VNI)
			if l.Port != 0 {
				text += fmt.Sprintf(", UDP port %d", l.Port)
			}
			text += fmt.Sprintf("): it encapsulates the whole frame in a UDP packet to the remote VTEP %s", vtep)
			b.say("encapsulation", text+".", b.hop(o, "encapsulated to VTEP "+vtep))
		case o.P.Encap != nil && (o.If.Role == "node NIC"):
			flush()
			e := o.P.Encap
			shows := fmt.Sprintf("%s vni %d %s:%d → %s:%d", e.Type, e.VNI, e.OuterSrc, e.SrcPort, e.OuterDst, e.DstPort)
			if o.P.Dir == "out" {
				b.say("underlay", fmt.Sprintf("It leaves %s by %s inside that outer packet, %s:%d → %s:%d (%s, VNI %d).",
					o.Agent.Name, o.If.Name, e.OuterSrc, e.SrcPort, e.OuterDst, e.DstPort, strings.ToUpper(e.Type), e.VNI), b.hop(o, shows))
			} else {
				text := fmt.Sprintf("%s's %s receives the outer packet", o.Agent.Name, o.If.Name)
				if o.CrossClock && o.HasDelta {
					text += fmt.Sprintf(" (≈%s one-way, measured across the two nodes' clocks: see the clocks line)", trace.FormatDuration(o.Delta))
				}
				b.say("underlay", text+".", b.hop(o, shows))
			}
		case o.If.Role == "overlay" && strings.Contains(note, "decapsulated"):
			flush()
			b.say("decapsulation", fmt.Sprintf("%s's %s (VNI %d) takes the inner packet out again.", o.Agent.Name, o.If.Name, o.If.Link.VNI), b.hop(o, "decapsulated"))
		case o.If.Role == "node NIC" && o.P.Encap == nil && k > 0 && j.Obs[k-1].If.Role == "node NIC" && j.Obs[k-1].Agent != o.Agent && j.Obs[k-1].P.Encap == nil:
			flush()
			prev := j.Obs[k-1]
			b.say("underlay", fmt.Sprintf("It crosses from %s's %s to %s's %s as a plain routed packet, without encapsulation (host-gw routes: the pod's address is routed node to node).",
				prev.Agent.Name, prev.If.Name, o.Agent.Name, o.If.Name), b.hop(prev, ""), b.hop(o, ""))
		case k == len(j.Obs)-1 && o.Agent.Role == wire.RolePod:
			flush() // told by the caller
		default:
			plain = append(plain, o)
		}
	}
	flush()
}

// bridged: a bridge sent the frame out of one port; switched by its
// destination MAC, or, when it was addressed to the bridge's own MAC,
// taken up to the node's stack and sent back out through the bridge. The
// port it entered by, when one of before saw it, is told with it. It
// returns the hops it cites; the sentence waits in b.pending until
// flushBridged, so that hops crossed before it are told first.
func (b *builder) bridged(j *trace.Journey, k int, o *trace.Obs, noun string, before []*trace.Obs, inWalk bool) map[*trace.Obs]bool {
	cited := map[*trace.Obs]bool{}
	ports := portsOut(j, o.If)
	var in *trace.Obs // the frame entering the bridge by a port
	for q := k - 1; q >= 0; q-- {
		if x := j.Obs[q]; x.If.Master == o.If && x.P.Dir == "in" {
			in = x
			break
		}
	}
	var refs []Ref
	enters := ""
	if in != nil && (!inWalk || slices.Contains(before, in)) {
		refs = append(refs, b.hop(in, ""))
		cited[in] = true
		enters = fmt.Sprintf("%s enters %s by %s; ", capital(noun), o.If.Name, in.If.Label())
		noun = "it"
	}
	refs = append(refs, b.hop(o, "forwarded to "))
	if len(ports) != 1 || ports[0].P.Eth == nil {
		b.pending = &Sentence{Topic: "forward", Text: fmt.Sprintf("%sthe bridge %s forwards %s.", enters, o.If.Name, noun), Refs: refs}
		return cited
	}
	port := ports[0]
	refs = append(refs, b.hop(port, ""))
	cited[port] = true
	mac := port.P.Eth.Dst
	if in != nil && in.P.Eth != nil && strings.EqualFold(in.P.Eth.Dst, o.If.MAC) {
		if !cited[in] {
			refs = append([]Ref{b.hop(in, "")}, refs...)
		}
		b.pending = &Sentence{Topic: "forward", Text: fmt.Sprintf("%sthe frame is addressed to %s's own MAC %s, so %s takes it up to its own stack, which sends it back out through %s to %s, now addressed to %s.",
			enters, o.If.Name, o.If.MAC, o.Agent.Name, o.If.Name, port.If.Label(), mac), Refs: refs}
		return cited
	}
	text := fmt.Sprintf("%sthe bridge %s switches %s to %s only, by its destination MAC %s", enters, o.If.Name, noun, port.If.Label(), mac)
	if c := b.fdbByMC[strings.ToLower(mac)+"|"+port.If.Name]; c != nil && !c.At.After(o.P.TS) {
		text += ", which its FDB learned on that port"
		refs = append(refs, b.change(c))
	}
	b.pending = &Sentence{Topic: "forward", Text: text + ".", Refs: refs}
	return cited
}

func (b *builder) flushBridged() {
	if p := b.pending; p != nil {
		p.Text = capital(p.Text)
		b.out = append(b.out, *p)
		b.pending = nil
	}
}

func capital(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

func placesText(os []*trace.Obs) string {
	var s []string
	for _, o := range os {
		s = append(s, o.Agent.Name+" "+o.If.Label())
	}
	return strings.Join(s, ", then ")
}

// translation: the conntrack NAT before hop o of journey j.
func (b *builder) translation(j *trace.Journey, o *trace.Obs) {
	n := j.NAT
	w := n.N
	from := trace.HostPort(w.Orig.Dst, w.Orig.DstPort)
	to := trace.HostPort(w.Reply.Src, w.Reply.SrcPort)
	if j.Toward {
		by := ""
		if n.Family != "" {
			by = " by " + n.Family
		}
		ep := ""
		if n.Endpoint != "" && n.Endpoint != w.Reply.Src {
			ep = " (" + n.Endpoint + ")"
		}
		what := "the virtual address " + from
		if sv := b.t.Session.Service; sv != nil && sv.Name != "" && sv.Name != sv.IP {
			what = "the Service " + sv.Name + "'s address " + from
		}
		text := fmt.Sprintf("%s's conntrack shows a destination NAT (DNAT)%s: the connection to %s is rewritten to the endpoint %s%s, and from the next hop on the packet carries the endpoint's address",
			n.Agent.Name, by, what, to, ep)
		b.say("dnat", text+".", b.nat(j), b.hop(o, "DNAT: to "+to))
		return
	}
	b.say("dnat", fmt.Sprintf("On its way back, %s translates the answer back (un-DNAT): it leaves as %s, the address %s sent to, not as %s.",
		n.Agent.Name, from, b.t.Session.Src.Short, to), b.nat(j), b.hop(o, "translated back: from "+from))
}

// reply: the answer and its way back.
func (b *builder) reply(req, j *trace.Journey) {
	s := b.t.Session
	o := j.Obs[0]
	b.say("reply", fmt.Sprintf("%s answers: %s.", o.Agent.Name, o.P.Summary), b.hop(o, o.P.Summary))
	b.walk(j, "the answer")
	last := j.Obs[len(j.Obs)-1]
	if b.src != nil && last.Agent == b.src && last.P.Dir == "in" {
		text := fmt.Sprintf("The answer reaches %s's %s", s.Src.Short, last.If.Name)
		refs := []Ref{b.hop(last, "")}
		if v := b.t.Verdict; v.Result == "delivered" && v.RTT > 0 {
			text += fmt.Sprintf(": a round trip of %s", trace.FormatDuration(v.RTT))
			refs = append(refs, Ref{Kind: "verdict", Shows: "rtt " + trace.FormatDuration(v.RTT)})
		}
		b.say("reply", text+".", refs...)
	}
}

// notObservable: path hops no capture could see, which are no loss.
func (b *builder) notObservable() {
	for _, h := range b.t.Path {
		if h.Status != "not observable" {
			continue
		}
		text := fmt.Sprintf("%s %s is marked not observable: no capture there saw the packet, but a later hop did, so it passed there (it was bypassed or not visible to the capture), not lost", h.Place, h.Label)
		if h.Role == "bridge" {
			text += "; a bridge device shows forwarded unicast frames only while it is promiscuous"
		}
		b.say("not-observable", text+".", Ref{Kind: "path", Agent: h.Place, Iface: h.Label, Shows: "not observable"})
	}
}

// loss: where the probe died and what it means, in the verdict's words.
func (b *builder) loss(arp, req, rep *trace.Journey) {
	v := b.t.Verdict
	s := b.t.Session
	vr := Ref{Kind: "verdict", Shows: strings.ToUpper(v.Result)}
	switch v.Result {
	case "arp-unanswered":
		refs := []Ref{}
		n, target := 0, ""
		if arp != nil {
			target = arp.Obs[0].P.ARP.TargetIP
			for _, j := range b.t.Journeys {
				p := j.Obs[0].P
				if p.ARP != nil && p.ARP.Op == "who-has" && p.ARP.SenderIP == s.Src.IP && p.ARP.TargetIP == target {
					n++
					refs = append(refs, b.hop(j.Obs[0], p.Summary))
				}
			}
		}
		text := "No ARP reply came back"
		if n > 0 {
			text = fmt.Sprintf("Nobody answered: %s asked who has %s %s and no is-at came back", s.Src.Short, target, times(n))
		}
		text += fmt.Sprintf(", so %s never learned a MAC to address the probe to, and the probe itself never left it", s.Src.Short)
		b.say("loss", text+".", refs...)
		b.say("loss", "The verdict: "+v.Reason+".", vr)
		return
	case "delivered", "observed":
		return
	}
	if v.Result == "partial" {
		b.say("loss", fmt.Sprintf("%d of %d probes were delivered; this tells the first one, and the verdict the first lost one: %s.", v.Delivered, v.Sent, v.Reason), vr)
		return
	}
	if rep != nil && strings.Contains(v.Reason, "in place of") {
		o := rep.Obs[0]
		b.say("loss", fmt.Sprintf("Instead of %s, %s answers: %s.", s.Dst.Short, o.Agent.Name, o.P.Summary), b.hop(o, o.P.Summary))
	}
	var lastSeen, notSeen *trace.Hop
	for i := range b.t.Path {
		h := &b.t.Path[i]
		if h.Status == "seen" {
			lastSeen, notSeen = h, nil
		}
		if h.Status == "not seen" && notSeen == nil && lastSeen != nil {
			notSeen = h
		}
	}
	j := req
	if strings.Contains(v.Reason, "lost on the way back") && rep != nil {
		j = rep
		lastSeen, notSeen = nil, nil
	}
	var at *trace.Obs
	if j != nil {
		for _, o := range j.Obs {
			if lastSeen != nil && o.Agent.Name == lastSeen.Place && o.If.Label() == lastSeen.Label {
				at = o
			}
		}
		if lastSeen == nil && len(j.Obs) > 0 {
			at = j.Obs[len(j.Obs)-1]
		}
	}
	if at != nil {
		text := fmt.Sprintf("The probe was last seen at %s %s", at.Agent.Name, at.If.Label())
		refs := []Ref{b.hop(at, "")}
		if notSeen != nil {
			text += fmt.Sprintf(" and never at %s %s, the next hop of its path, where a capture was running: it was dropped between those two points", notSeen.Place, notSeen.Label)
			refs = append(refs, Ref{Kind: "path", Agent: notSeen.Place, Iface: notSeen.Label, Shows: "not seen"})
		}
		b.say("loss", text+".", refs...)
	}
	b.say("loss", "Why, as the verdict reads the hops on both sides: "+v.Reason+".", vr)
	for _, e := range v.Evidence {
		b.say("loss", "Also: "+e+".", Ref{Kind: "verdict", Shows: e})
	}
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	if n == 2 {
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// policy: the NetworkPolicy model's statement, beside the live result.
func (b *builder) policy() {
	p := b.t.Policy
	if p == nil || p.Unavailable != "" || p.Statement == "" {
		return
	}
	text := "The NetworkPolicy model, read from the API beside the live trace: " + p.Statement
	if p.Disagreement != "" {
		text += "; it disagrees with what the trace saw: " + p.Disagreement
	}
	b.say("policy", text+".", Ref{Kind: "policy", Shows: p.Statement})
}

// passive: no probe, so no story of one packet.
func (b *builder) passive() {
	b.say("passive", "No probe was sent (--passive): the trace shows the traffic it observed, and there is no single packet's story to tell; "+b.t.Verdict.Reason+".",
		Ref{Kind: "verdict", Shows: b.t.Verdict.Reason})
}
