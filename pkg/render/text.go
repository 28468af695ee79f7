package render

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/explain"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Header is what the plugin knows of the run beyond the streams.
type Header struct {
	Armed time.Duration // from start to the last agent's hello
	Notes []string      // e.g. which injection mode was taken
	// Explain, when set, is the narrative printed after the trace
	// (--explain); the text output then numbers the trace's lines, which
	// its sentences cite.
	Explain *explain.Narrative
}

// Text prints the trace for humans.
func Text(w io.Writer, t *trace.Trace, h Header, colorOn bool) error {
	c := newColorer(colorOn)
	b := &strings.Builder{}

	writeHeader(b, t, h, c)
	b.WriteString("\n")

	// Column widths.
	wPlace, wIf := 4, 4
	for _, it := range t.Items {
		if it.Journey != nil {
			for _, o := range it.Journey.Obs {
				wPlace = max(wPlace, utf8.RuneCountInString(o.Agent.Name))
				wIf = max(wIf, utf8.RuneCountInString(o.If.Label()))
			}
		} else {
			wPlace = max(wPlace, utf8.RuneCountInString(it.Change.Agent.Name))
		}
	}
	pad := func(s string, n int) string {
		if k := utf8.RuneCountInString(s); k < n {
			return s + strings.Repeat(" ", n-k)
		}
		return s
	}
	rows := t.Rows()
	num := ""
	line := func(n int, ts time.Time, placeName, iface, arrow, text, extra string) {
		d := ts.Sub(t.Start)
		sign := "+"
		if d < 0 {
			sign = ""
		}
		if h.Explain != nil {
			// Row numbers, which the explanation's sentences cite.
			num = fmt.Sprintf("%*d", len(fmt.Sprint(len(rows))), n)
			num = c.dim.Sprint(num) + " "
		}
		rel := fmt.Sprintf("%10s", sign+Dur(d))
		fmt.Fprintf(b, "%s%s  %s  %s  %s %s", num, rel, c.place.Sprint(pad(Safe(placeName), wPlace)), pad(Safe(iface), wIf), arrow, text)
		if extra != "" {
			fmt.Fprintf(b, "  %s", extra)
		}
		b.WriteString("\n")
	}
	for _, r := range rows {
		if ch := r.Change; ch != nil {
			what := "neigh"
			if ch.C.What == "fdb" {
				what = "fdb"
			}
			line(r.N, r.TS(), ch.Agent.Name, what, "  ", c.change.Sprint(Safe(ch.Text)), "")
			continue
		}
		j, o := r.Journey, r.Obs
		arrow := "─▶"
		if !j.Toward {
			arrow = "◀─"
		}
		if r.NAT != nil {
			nt := r.NAT.Text
			if r.Reverse {
				nt = r.NAT.ReverseText()
			}
			line(r.N, r.TS(), r.NAT.Agent.Name, "conntrack", "⇄ ", c.change.Sprint(Safe(nt)), "")
			continue
		}
		first := o == j.Obs[0]
		text := Safe(o.P.Summary)
		if o.P.ARP != nil {
			if o.P.ARP.Op == "who-has" && isBroadcast(o.P) {
				text += " (broadcast)"
			}
			text = c.arp.Sprint(text)
		}
		var extra []string
		if !first {
			text = c.dim.Sprint("…")
			if o.HasDelta {
				d := "+" + Dur(o.Delta)
				if o.NonMonotonic {
					d = Dur(o.Delta) + "*"
				}
				if o.CrossClock {
					sign := "+"
					if o.Delta < 0 {
						sign = ""
					}
					d = "≈" + sign + Dur(o.Delta) + " one-way"
				}
				extra = append(extra, d)
			}
		}
		if o.P.Encap != nil {
			e := o.P.Encap
			extra = append(extra, fmt.Sprintf("%s vni %d %s:%d → %s:%d", Safe(e.Type), e.VNI, Safe(e.OuterSrc), e.SrcPort, Safe(e.OuterDst), e.DstPort))
		}
		if o.Note != "" {
			extra = append(extra, Safe(o.Note))
		}
		if o == j.Obs[len(j.Obs)-1] && j.IsReply && !first {
			extra = append(extra, "back in "+Dur(o.P.TS.Sub(j.Obs[0].P.TS)))
		}
		line(r.N, o.P.TS, o.Agent.Name, o.If.Label(), arrow, text, strings.Join(extra, "  "))
	}
	if len(t.Items) == 0 && len(t.Flows) == 0 {
		b.WriteString(c.dim.Sprint("  (no packet of this flow was observed)") + "\n")
	}
	b.WriteString("\n")
	writeFlows(b, t, c, pad)

	// Path: one hop a line, with its role and what the route did there.
	if len(t.Path) > 0 {
		wp, wr := 0, 0
		for _, hp := range t.Path {
			wp = max(wp, utf8.RuneCountInString(Safe(hp.Place+" "+hp.Label)))
			wr = max(wr, utf8.RuneCountInString(hp.Role))
		}
		for k, hp := range t.Path {
			head := "        "
			if k == 0 {
				head = c.head.Sprint("path") + "    "
			}
			arrow := "→ "
			if k == 0 {
				arrow = "  "
			}
			status := hp.Status
			switch hp.Status {
			case "seen":
			case "not observable":
				status = c.dim.Sprint(status)
			default:
				status = c.bad.Sprint(Safe(status))
			}
			line := fmt.Sprintf("%s%s%s  %s  %s", head, arrow, pad(Safe(hp.Place+" "+hp.Label), wp), pad(Safe(hp.Role), wr), status)
			if hp.Detail != "" {
				line += "  " + Safe(hp.Detail)
			}
			b.WriteString(line + "\n")
		}
	}
	for _, w := range t.Warnings {
		fmt.Fprintf(b, "%s %s\n", c.warn.Sprint("warning"), Safe(w))
	}
	if t.Policy != nil {
		b.WriteString(PolicyLine(t.Policy, c) + "\n")
	}
	b.WriteString(VerdictLine(t.Verdict, t.Session, c) + "\n")
	if h.Explain != nil {
		writeExplain(b, h.Explain, c)
	}
	_, err := io.WriteString(w, safeText(b.String(), colorOn))
	return err
}

// writeHeader writes the lines above a trace's hops: the endpoints, the
// probe, the agents, the shape, clocks, Service and notes.
func writeHeader(b *strings.Builder, t *trace.Trace, h Header, c *colorer) {
	s := t.Session
	fmt.Fprintf(b, "%s   %s %s ─▶ %s %s", c.head.Sprint("trace"), c.place.Sprint(Safe(s.Src.Name)), Safe(s.Src.IP), c.place.Sprint(Safe(s.Dst.Name)), Safe(s.Dst.IP))
	switch {
	case s.Src.Node != "" && s.Src.Node == s.Dst.Node:
		fmt.Fprintf(b, " · same node %s", Safe(s.Src.Node))
	case s.Src.Node != "" && s.Dst.Node != "":
		fmt.Fprintf(b, " · nodes %s → %s", Safe(s.Src.Node), Safe(s.Dst.Node))
	}
	if s.Shape != "" {
		fmt.Fprintf(b, " · %s", Safe(s.Shape))
	}
	fmt.Fprintf(b, " · %s\n", probeText(s.Probe))
	var ag []string
	for _, a := range t.Agents {
		ag = append(ag, fmt.Sprintf("%s (%s)", Safe(a.Name), Safe(a.Role)))
	}
	armed := ""
	if h.Armed > 0 {
		armed = fmt.Sprintf(" · all armed in %.2f s", h.Armed.Seconds())
	}
	fmt.Fprintf(b, "%s  %s%s\n", c.head.Sprint("agents"), strings.Join(ag, " · "), armed)
	if m := s.Mode; m != nil {
		fmt.Fprintf(b, "%s    %s", c.head.Sprint("mode"), Safe(m.Name))
		if m.Why != "" {
			fmt.Fprintf(b, " · %s", Safe(m.Why))
		}
		b.WriteString("\n")
	}
	if t.Shape != "" {
		fmt.Fprintf(b, "%s   %s\n", c.head.Sprint("shape"), Safe(t.Shape))
	}
	for _, ce := range t.Clocks {
		fmt.Fprintf(b, "%s  %s; deltas across nodes are one-way estimates (≈)\n", c.head.Sprint("clocks"), Safe(ce.String()))
	}
	if sv := s.Service; sv != nil {
		fmt.Fprintf(b, "%s %s %s", c.head.Sprint("service"), c.place.Sprint(Safe(sv.Name)), Safe(trace.HostPort(sv.IP, sv.Port)))
		switch {
		case sv.NoEndpoints != "":
			fmt.Fprintf(b, " · no ready endpoint: %s", Safe(sv.NoEndpoints))
		case len(t.NATs) > 0:
			n := t.NATs[0].N
			fmt.Fprintf(b, " → endpoint %s %s", c.place.Sprint(Safe(s.Dst.Name)), Safe(trace.HostPort(n.Reply.Src, n.Reply.SrcPort)))
		default:
			b.WriteString(" · no translation seen")
		}
		b.WriteString("\n")
	}
	for _, n := range h.Notes {
		fmt.Fprintf(b, "%s    %s\n", c.head.Sprint("note"), Safe(n))
	}
}

// VerdictLine is the last line of a text trace.
func VerdictLine(v trace.Verdict, s trace.Session, c *colorer) string {
	return verdictLine(v, s, c, "probes")
}

// verdictLine is the verdict line, counting probes, or a watch's rounds.
func verdictLine(v trace.Verdict, s trace.Session, c *colorer, unit string) string {
	if c == nil {
		c = newColorer(false)
	}
	res := Safe(strings.ToUpper(v.Result))
	var parts []string
	switch v.Result {
	case "delivered":
		parts = append(parts, c.ok.Sprint(res))
		if v.Sent > 1 {
			parts = append(parts, fmt.Sprintf("%d/%d %s", v.Delivered, v.Sent, unit))
		}
		if v.Answer != "" {
			parts = append(parts, answerText(v.Answer, s))
		}
		if v.Kernel != nil {
			parts = append(parts, Safe(v.Kernel.Text))
		}
		if v.RTT > 0 {
			parts = append(parts, "rtt "+Dur(v.RTT))
		}
		if v.Path != "" {
			p := Safe(v.Path)
			if v.Answer != "none" {
				p += ", and back"
			}
			parts = append(parts, p)
		}
	case "observed":
		parts = append(parts, c.ok.Sprint(res), Safe(v.Reason))
	default:
		parts = append(parts, c.bad.Sprint(res))
		if v.Kernel != nil {
			parts = append(parts, c.bad.Sprint(Safe(v.Kernel.Text)))
		}
		if v.LastSeen != "" {
			parts = append(parts, "last seen "+Safe(v.LastSeen))
		}
		if v.NotSeen != "" {
			parts = append(parts, "not seen "+Safe(v.NotSeen))
		}
		if v.Reason != "" {
			parts = append(parts, Safe(v.Reason))
		}
		if v.Drop != nil {
			d := Safe(v.Drop.Text)
			if !v.Drop.Unavailable {
				d = c.bad.Sprint(d)
			}
			parts = append(parts, d)
		}
	}
	out := c.head.Sprint("verdict") + " " + strings.Join(parts, " · ")
	for _, e := range v.Evidence {
		out += "\n        " + Safe(e)
	}
	return out
}

// PolicyLine is the NetworkPolicy model's statement, printed above the
// verdict, and the disagreement with it when there is one.
func PolicyLine(p *trace.PolicyEvidence, c *colorer) string {
	if c == nil {
		c = newColorer(false)
	}
	head := c.head.Sprint("policy ")
	if p.Unavailable != "" {
		return head + " " + c.warn.Sprint("no model: ") + Safe(p.Unavailable)
	}
	st := Safe(p.Statement)
	if !p.Admitted {
		st = c.bad.Sprint(st)
	}
	out := head + " " + st
	if p.Disagreement != "" {
		out += "\n        " + c.warn.Sprint("disagree: ") + Safe(p.Disagreement)
	}
	return out
}

func answerText(a string, s trace.Session) string {
	switch a {
	case "syn-ack":
		return fmt.Sprintf("port %d open (SYN-ACK)", s.Probe.Port)
	case "rst":
		return fmt.Sprintf("port %d closed (RST)", s.Probe.Port)
	case "port-unreachable":
		return fmt.Sprintf("port %d closed (ICMP port unreachable)", s.Probe.Port)
	case "prohibited":
		return "rejected by a firewall rule (ICMP administratively prohibited)"
	case "none":
		return "no answer (none required)"
	case "udp-reply":
		return "UDP reply"
	case "echo-reply":
		return "echo reply"
	}
	return Safe(a)
}

func probeText(p *wire.ProbeSpec) string {
	if p == nil {
		return "passive"
	}
	switch p.Proto {
	case "icmp":
		return fmt.Sprintf("probe ICMP echo ×%d", p.Count)
	case "tcp":
		return fmt.Sprintf("probe TCP SYN to port %d ×%d", p.Port, p.Count)
	}
	return fmt.Sprintf("probe UDP to port %d ×%d", p.Port, p.Count)
}

func isBroadcast(p *wire.Packet) bool {
	return p.Eth != nil && p.Eth.Dst == "ff:ff:ff:ff:ff:ff"
}

// Dur prints a duration at a scale a human reads at a glance.
func Dur(d time.Duration) string { return trace.FormatDuration(d) }
