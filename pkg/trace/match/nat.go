package match

import (
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Translations: a node's DNAT rewrites the probe's destination (a
// Service's virtual IP to an endpoint), so the packet has another
// fingerprint past it. Matching across the translation uses the tuples
// conntrack reported (wire.NAT), never a guess.

// collectNATs keeps the node agents' translations that rewrote a
// destination, in the order of the agents.
func collectNATs(t *trace.Trace, lines map[*trace.AgentInfo][]*wire.NAT) {
	for _, a := range t.Agents {
		for _, n := range lines[a] {
			if n.DNAT || n.Reply.Src != n.Orig.Dst || n.Reply.SrcPort != n.Orig.DstPort {
				h := &trace.NATHop{Agent: a, N: n, At: n.TS}
				t.NATs = append(t.NATs, h)
			}
		}
	}
}

// retarget makes the endpoint a DNAT chose the session's destination:
// the probe went to the Service's address, the trace follows it to the
// endpoint. It returns the session unchanged when nothing was translated.
func retarget(t *trace.Trace, s trace.Session) trace.Session {
	if s.Probe == nil || len(t.NATs) == 0 {
		return s
	}
	vip := s.Dst.IP
	if s.Service != nil {
		vip = s.Service.IP
	}
	h := t.NATTo(vip, s.Src.IP)
	if h == nil {
		return s
	}
	n := h.N
	if s.Service == nil {
		port := s.Probe.Port
		s.Service = &trace.Service{Name: vip, IP: vip, Port: port}
	}
	ep := n.Reply.Src
	if s.Dst.IP != ep {
		d := trace.Endpoint{Name: ep, Short: ep, IP: ep}
		for _, e := range s.Service.Endpoints {
			if e.IP == ep {
				d = e
				d.Agent = ""
			}
		}
		// An endpoint watched by an agent (local --via, or a cluster
		// endpoint the plugin started an agent in) keeps its agent.
		if s.Dst.Agent != "" && s.Dst.IP == ep {
			d.Agent = s.Dst.Agent
		}
		s.Dst = d
	}
	return s
}

// natView is a packet's place relative to a translation: the copy after
// the DNAT (forward) or before the reverse translation (reply).
type natView struct {
	n       *wire.NAT
	forward bool
}

// translatedCopy tells whether p is the probe's packet as translated by n:
// toward the endpoint after the DNAT, or the endpoint's answer before it
// is translated back.
func translatedCopy(p *wire.Packet, n *wire.NAT) (natView, bool) {
	r := n.Reply
	switch {
	case carries(p, n.Proto, wire.Tuple{Src: n.Orig.Src, SrcPort: n.Orig.SrcPort, Dst: r.Src, DstPort: r.SrcPort, ICMPID: r.ICMPID}):
		return natView{n, true}, true
	case carries(p, n.Proto, r):
		return natView{n, false}, true
	}
	return natView{}, false
}

// originalCopy tells whether p is the probe's packet as its source sent it
// (forward) or received it (reply) through n.
func originalCopy(p *wire.Packet, v natView) bool {
	o := v.n.Orig
	if !v.forward {
		o.Src, o.SrcPort, o.Dst, o.DstPort = o.Dst, o.DstPort, o.Src, o.SrcPort
	}
	return carries(p, v.n.Proto, o)
}

// carries tells whether p is a packet of proto with tu's addresses and
// ports (its echo id for ICMP).
func carries(p *wire.Packet, proto string, tu wire.Tuple) bool {
	if p.IP == nil || p.L4 == nil || p.L4.Proto != proto || p.IP.Src != tu.Src || p.IP.Dst != tu.Dst {
		return false
	}
	if proto == "icmp" || proto == "icmp6" {
		return p.L4.ICMPID == tu.ICMPID
	}
	return p.L4.SrcPort == tu.SrcPort && p.L4.DstPort == tu.DstPort
}

// samePacket compares what a DNAT leaves alone: IP ID and length, and the
// transport header's sequence numbers, flags, ICMP sequence and payload
// length.
func samePacket(a, b *wire.Packet) bool {
	return a.IP.ID == b.IP.ID && a.IP.Len == b.IP.Len && a.L4.Seq == b.L4.Seq && a.L4.Ack == b.L4.Ack &&
		a.L4.Flags == b.L4.Flags && a.L4.ICMPSeq == b.L4.ICMPSeq && a.L4.Type == b.L4.Type && a.L4.Payload == b.L4.Payload
}

// joinTranslated gives every translated copy of a probe's packet the
// fingerprint of its original copy (the same IP ID, length and transport
// sequence, the addresses and ports conntrack says it rewrote), so that
// one journey holds the packet on both sides of the translation; it
// marks the copies Translated. A translated copy without an original
// (a reply never translated back) keeps its own fingerprint.
func joinTranslated(t *trace.Trace, all []*trace.Obs) {
	if len(t.NATs) == 0 {
		return
	}
	for _, o := range all {
		for _, h := range t.NATs {
			v, ok := translatedCopy(o.P, h.N)
			if !ok {
				continue
			}
			o.Translated, o.NAT = true, h
			for _, x := range all {
				if x != o && !x.Translated && originalCopy(x.P, v) && samePacket(x.P, o.P) {
					cp := *o.P
					cp.FP = x.P.FP
					o.P = &cp
					break
				}
			}
			break
		}
	}
}

// placeNATs fills each translation's place in time, text and family, and
// where in its journeys it shows.
func placeNATs(t *trace.Trace, s trace.Session) {
	for _, h := range t.NATs {
		n := h.N
		h.Endpoint = n.Reply.Src
		if n.Reply.Src == s.Dst.IP && s.Dst.Name != "" {
			h.Endpoint = s.Dst.Name
		}
		if len(n.Rules) == 1 {
			h.Family = trace.FamilyText(n.Rules[0])
		}
		h.Reverse = "no reply went through it"
		if n.SeenReply || translatedBack(t, h) {
			h.Reverse = "the reply was translated back"
		}
		// Shown once each way: before the first copy past the DNAT of
		// the probe's first journey toward the endpoint, and before the
		// first copy translated back of the first answer. The DNAT sits
		// at the kernel time of the probe's last frame before it.
		fwd, rev := false, false
		for _, j := range t.Journeys {
			if j.Probe == "" || j.NAT != nil || (j.Toward && fwd) || (!j.Toward && rev) {
				continue
			}
			for k, o := range j.Obs {
				if k == 0 {
					continue
				}
				prev := j.Obs[k-1]
				if o.NAT != h && prev.NAT != h {
					continue
				}
				switch {
				case j.Toward && o.Translated && !prev.Translated:
					j.NATAt, j.NAT, fwd = k, h, true
					h.At = prev.P.TS
				case !j.Toward && !o.Translated && prev.Translated:
					j.NATAt, j.NAT, rev = k, h, true
				}
				if j.NAT != nil {
					break
				}
			}
		}
		h.SetText()
	}
	// Every journey says where its packet changed addresses.
	for _, j := range t.Journeys {
		for k, o := range j.Obs {
			if k == 0 {
				continue
			}
			prev := j.Obs[k-1]
			note := ""
			switch {
			case j.Toward && o.Translated && !prev.Translated:
				note = "DNAT: to " + trace.HostPort(o.NAT.N.Reply.Src, o.NAT.N.Reply.SrcPort)
			case !j.Toward && !o.Translated && prev.Translated && prev.NAT != nil:
				note = "translated back: from " + trace.HostPort(prev.NAT.N.Orig.Dst, prev.NAT.N.Orig.DstPort)
			}
			if note == "" {
				continue
			}
			if o.Note != "" {
				note += ", " + o.Note
			}
			o.Note = note
			break
		}
	}
}

// originalView is an observed packet as its source sent it (forward) or
// received it (reply): a translated copy with the addresses and ports the
// translation rewrote put back.
func originalView(o *trace.Obs) *wire.Packet {
	if !o.Translated || o.NAT == nil || o.P.IP == nil || o.P.L4 == nil {
		return o.P
	}
	n := o.NAT.N
	cp := *o.P
	ip, l4 := *cp.IP, *cp.L4
	cp.IP, cp.L4 = &ip, &l4
	if v, ok := translatedCopy(o.P, n); ok && v.forward {
		ip.Dst, l4.DstPort = n.Orig.Dst, n.Orig.DstPort
	} else if ok {
		ip.Src, l4.SrcPort = n.Orig.Dst, n.Orig.DstPort
	}
	return &cp
}

// translatedBack: an answer was seen both before and after h's reverse
// translation.
func translatedBack(t *trace.Trace, h *trace.NATHop) bool {
	for _, j := range t.Journeys {
		if j.Toward {
			continue
		}
		for k := 1; k < len(j.Obs); k++ {
			if j.Obs[k-1].Translated && j.Obs[k-1].NAT == h && !j.Obs[k].Translated {
				return true
			}
		}
	}
	return false
}
