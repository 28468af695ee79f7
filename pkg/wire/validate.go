package wire

import (
	"fmt"
	"unicode/utf8"
)

// Limits a reader holds a decoded line to. They are far above anything an
// agent writes (an interface name has 15 bytes, a summary line ~100) and
// keep what a broken or hostile stream can make the plugin hold and print
// bounded.
const (
	MaxString   = 1024      // any string field, unless named below
	MaxText     = 16 << 10  // a capture filter, an error message, a probe's detail
	MaxList     = 32 << 10  // links, addresses, FDB, neighbour and route entries of one line
	MaxSmallLst = 256       // warnings, capabilities, a link's addresses, promiscuous bridges
	MaxFrame    = 256 << 10 // captured bytes of one frame (snaplen is at most 64 KiB)
)

// Sanitize checks a decoded line and holds it to the limits above: a line
// carries exactly the payload of its kind (an error names what is missing
// or what does not belong; the line is to be skipped), strings are cut (at
// a rune boundary, marked with "…") and lists shortened. It reports
// whether it changed anything. A line of a kind this build does not know
// passes if it carries none of the payloads of the kinds it knows.
func Sanitize(e *Envelope) (clamped bool, err error) {
	c := clamp{}
	e.Agent = c.str(e.Agent, MaxString)
	e.Kind = c.str(e.Kind, 64)
	for _, p := range payloads(e) {
		if p.set && p.kind != e.Kind {
			return false, fmt.Errorf("a %q line with a %q payload", e.Kind, p.kind)
		}
	}
	if !HasPayload(e) {
		return false, errMissing(e.Kind)
	}
	switch e.Kind {
	case KindHello:
		c.hello(e.Hello)
	case KindTopology:
		c.topology(e.Topology)
	case KindPacket:
		c.packet(e.Packet)
	case KindChange:
		c.change(e.Change)
	case KindProbe:
		p := e.Probe
		p.ID, p.Event, p.Detail = c.str(p.ID, MaxString), c.str(p.Event, MaxString), c.str(p.Detail, MaxText)
	case KindStats:
		e.Stats.Socket = c.str(e.Stats.Socket, MaxString)
	case KindError:
		e.Error.Msg = c.str(e.Error.Msg, MaxText)
	case KindBye:
		e.Bye.Reason = c.str(e.Bye.Reason, MaxString)
	case KindSummary:
		c.summary(e.Summary)
	case KindNAT:
		c.nat(e.NAT)
	case KindNFTrace:
		c.nftrace(e.NFTrace)
	}
	return c.changed, nil
}

func errMissing(kind string) error {
	return fmt.Errorf("a %q line without its %q payload", kind, kind)
}

type clamp struct{ changed bool }

// str cuts s to at most n bytes at a rune boundary, marked with "…".
func (c *clamp) str(s string, n int) string {
	if len(s) <= n {
		return s
	}
	c.changed = true
	return Cut(s, n)
}

// Cut shortens s to at most n bytes at a rune boundary, marked with "…":
// how a string from an agent or a recording is kept within its cap.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func (c *clamp) strs(l []string, max, each int) []string {
	l = bound(c, l, max)
	for i := range l {
		l[i] = c.str(l[i], each)
	}
	return l
}

// bound shortens a list to n entries.
func bound[T any](c *clamp, l []T, n int) []T {
	if len(l) > n {
		c.changed = true
		return l[:n:n]
	}
	return l
}

func (c *clamp) hello(h *Hello) {
	for _, p := range []*string{&h.Role, &h.Node, &h.Name, &h.NetNS, &h.Hostname, &h.Version, &h.Clock} {
		*p = c.str(*p, MaxString)
	}
	h.Filter = c.str(h.Filter, MaxText)
	h.Promisc = c.strs(h.Promisc, MaxSmallLst, MaxString)
	h.Caps = c.strs(h.Caps, MaxSmallLst, MaxString)
	h.Warnings = c.strs(h.Warnings, MaxSmallLst, MaxText)
	h.Links = c.links(h.Links)
	h.Addresses = bound(c, h.Addresses, MaxList)
	for i := range h.Addresses {
		h.Addresses[i].CIDR = c.str(h.Addresses[i].CIDR, MaxString)
	}
	if p := h.Probe; p != nil {
		p.Proto, p.Dst = c.str(p.Proto, MaxString), c.str(p.Dst, MaxString)
	}
	if n := h.NFTrace; n != nil {
		n.Table, n.Unavailable = c.str(n.Table, MaxString), c.str(n.Unavailable, MaxText)
		n.Legacy = c.strs(n.Legacy, MaxSmallLst, MaxString)
	}
}

func (c *clamp) links(l []Link) []Link {
	l = bound(c, l, MaxList)
	for i := range l {
		c.link(&l[i])
	}
	return l
}

func (c *clamp) link(l *Link) {
	for _, p := range []*string{&l.Name, &l.Kind, &l.MAC, &l.State, &l.Local, &l.Remote} {
		*p = c.str(*p, MaxString)
	}
	l.Addrs = c.strs(l.Addrs, MaxSmallLst, MaxString)
}

func (c *clamp) topology(t *Topology) {
	t.When = c.str(t.When, MaxString)
	t.Links = c.links(t.Links)
	t.FDB = bound(c, t.FDB, MaxList)
	for i := range t.FDB {
		c.fdb(&t.FDB[i])
	}
	t.Neigh = bound(c, t.Neigh, MaxList)
	for i := range t.Neigh {
		c.neigh(&t.Neigh[i])
	}
	t.Routes = bound(c, t.Routes, MaxList)
	for i := range t.Routes {
		r := &t.Routes[i]
		for _, p := range []*string{&r.Dst, &r.Gateway, &r.Dev, &r.Src, &r.Scope, &r.Protocol} {
			*p = c.str(*p, MaxString)
		}
	}
}

func (c *clamp) fdb(f *FDB) {
	for _, p := range []*string{&f.Bridge, &f.Port, &f.MAC, &f.Dst, &f.Flags} {
		*p = c.str(*p, MaxString)
	}
}

func (c *clamp) neigh(n *Neigh) {
	for _, p := range []*string{&n.Dev, &n.IP, &n.MAC, &n.State} {
		*p = c.str(*p, MaxString)
	}
}

func (c *clamp) change(ch *Change) {
	ch.What, ch.Action, ch.Was = c.str(ch.What, MaxString), c.str(ch.Action, MaxString), c.str(ch.Was, MaxString)
	if ch.Neigh != nil {
		c.neigh(ch.Neigh)
	}
	if ch.FDB != nil {
		c.fdb(ch.FDB)
	}
	if ch.Link != nil {
		c.link(ch.Link)
	}
}

func (c *clamp) packet(p *Packet) {
	for _, s := range []*string{&p.Iface, &p.Dir, &p.PktType, &p.Summary, &p.FP, &p.ProbeID} {
		*s = c.str(*s, MaxString)
	}
	p.Frame = bound(c, p.Frame, MaxFrame)
	if x := p.Eth; x != nil {
		x.Src, x.Dst, x.Type = c.str(x.Src, MaxString), c.str(x.Dst, MaxString), c.str(x.Type, MaxString)
	}
	if x := p.ARP; x != nil {
		for _, s := range []*string{&x.Op, &x.SenderMAC, &x.SenderIP, &x.TargetMAC, &x.TargetIP} {
			*s = c.str(*s, MaxString)
		}
	}
	if x := p.IP; x != nil {
		x.Src, x.Dst, x.Proto = c.str(x.Src, MaxString), c.str(x.Dst, MaxString), c.str(x.Proto, MaxString)
	}
	if x := p.Encap; x != nil {
		for _, s := range []*string{&x.Type, &x.OuterSrc, &x.OuterDst, &x.OuterMAC} {
			*s = c.str(*s, MaxString)
		}
	}
	if x := p.L4; x != nil {
		for _, s := range []*string{&x.Proto, &x.Flags, &x.Type, &x.Target} {
			*s = c.str(*s, MaxString)
		}
	}
}

// maxSummaryRecords bounds the flow records of one summary line (agents
// write at most --summary-records, 64 by default).
const maxSummaryRecords = 4096

func (c *clamp) summary(s *Summary) {
	s.Records = bound(c, s.Records, maxSummaryRecords)
	for i := range s.Records {
		r := &s.Records[i]
		for _, p := range []*string{&r.EtherType, &r.Src, &r.Dst, &r.Proto, &r.ICMP, &r.Iface, &r.Dir, &r.Encap, &r.Flags} {
			*p = c.str(*p, MaxString)
		}
	}
}

func (c *clamp) nat(n *NAT) {
	for _, p := range []*string{&n.Probe, &n.Proto, &n.State, &n.Orig.Src, &n.Orig.Dst, &n.Reply.Src, &n.Reply.Dst} {
		*p = c.str(*p, MaxString)
	}
	n.Rules = c.strs(n.Rules, MaxSmallLst, MaxString)
}

func (c *clamp) nftrace(n *NFTrace) {
	for _, p := range []*string{&n.Probe, &n.Family, &n.Table, &n.Chain, &n.Type, &n.Verdict, &n.Target, &n.Iif, &n.Oif} {
		*p = c.str(*p, MaxString)
	}
	n.Rule = c.str(n.Rule, MaxText)
}

// HasPayload reports whether a line of a known kind carries its payload;
// lines of other kinds report true. Readers drop lines without (Sanitize);
// code that builds envelopes by hand checks with it.
func HasPayload(e *Envelope) bool {
	for _, p := range payloads(e) {
		if p.kind == e.Kind {
			return p.set
		}
	}
	return true
}

// kindPayload says whether a line carries the payload of one kind.
type kindPayload struct {
	kind string
	set  bool
}

// payloads lists every kind this build knows with whether e carries its
// payload: the one place that pairs a kind with its Envelope field.
func payloads(e *Envelope) [11]kindPayload {
	return [...]kindPayload{
		{KindHello, e.Hello != nil}, {KindTopology, e.Topology != nil}, {KindPacket, e.Packet != nil},
		{KindChange, e.Change != nil}, {KindProbe, e.Probe != nil}, {KindStats, e.Stats != nil},
		{KindError, e.Error != nil}, {KindBye, e.Bye != nil}, {KindSummary, e.Summary != nil},
		{KindNAT, e.NAT != nil}, {KindNFTrace, e.NFTrace != nil},
	}
}
