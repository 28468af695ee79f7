package render

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// maxTextFlows bounds the summarized flows a text trace lists; -o json
// lists them all.
const maxTextFlows = 10

// writeFlows prints the flows that agents summarized, each with the hops
// that counted it: which agent, where, how many frames and bytes, over
// which span.
func writeFlows(b *strings.Builder, t *trace.Trace, c *colorer, pad func(string, int) string) {
	if len(t.Summarized) == 0 {
		return
	}
	var who []string
	for _, sm := range t.Summarized {
		who = append(who, Safe(sm.Agent.Name))
	}
	fmt.Fprintf(b, "%s   per flow and hop, as %s counted them instead of streaming each frame\n", c.head.Sprint("flows"), strings.Join(who, ", "))
	wPlace, wIf := 4, 4
	for i, f := range t.Flows {
		if i == maxTextFlows {
			break
		}
		for _, h := range f.Hops {
			wPlace = max(wPlace, utf8.RuneCountInString(Safe(h.Agent.Name)))
			wIf = max(wIf, utf8.RuneCountInString(Safe(h.If.Label())))
		}
	}
	for i, f := range t.Flows {
		if i == maxTextFlows {
			fmt.Fprintf(b, "  %s\n", c.dim.Sprintf("… %d more flows (-o json lists them all)", len(t.Flows)-maxTextFlows))
			break
		}
		arrow := "─▶"
		if !f.Toward {
			arrow = "◀─"
		}
		fmt.Fprintf(b, "  %s %s\n", arrow, Safe(FlowText(f.Flow)))
		for _, h := range f.Hops {
			extra := []string{}
			if h.Flags != "" {
				extra = append(extra, "flags "+Safe(h.Flags))
			}
			if h.Encap != "" {
				extra = append(extra, fmt.Sprintf("%s vni %d", Safe(h.Encap), h.VNI))
			}
			frames := "frames"
			if h.Packets == 1 {
				frames = "frame "
			}
			line := fmt.Sprintf("      %s  %s  %-3s %10d %s  %9s  %s … %s", c.place.Sprint(pad(Safe(h.Agent.Name), wPlace)), pad(Safe(h.If.Label()), wIf),
				Safe(h.Dir), h.Packets, frames, trace.FormatBytes(int64(h.Bytes)), rel(h.First.Sub(t.Start)), rel(h.Last.Sub(t.Start)))
			if len(extra) > 0 {
				line += "  " + strings.Join(extra, "  ")
			}
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("\n")
}

func rel(d time.Duration) string {
	if d >= 0 {
		return "+" + Dur(d)
	}
	return Dur(d)
}

// FlowText describes a summarized flow on one line.
func FlowText(f wire.Flow) string {
	var s string
	switch {
	case f.EtherType == "arp" && f.Proto == "who-has":
		s = fmt.Sprintf("ARP who-has %s tell %s", f.Dst, f.Src)
	case f.EtherType == "arp" && f.Proto == "is-at":
		s = fmt.Sprintf("ARP %s is-at, to %s", f.Src, f.Dst)
	case f.EtherType == "arp":
		s = fmt.Sprintf("ARP %s %s → %s", f.Proto, f.Src, f.Dst)
	case f.Src == "":
		s = "ethertype " + f.EtherType
	default:
		s = fmt.Sprintf("%s %s → %s", strings.ToUpper(f.Proto), trace.HostPort(f.Src, f.SrcPort), trace.HostPort(f.Dst, f.DstPort))
		if f.ICMP != "" {
			s += " " + f.ICMP
		}
	}
	if f.VLAN != 0 {
		s += fmt.Sprintf(" vlan %d", f.VLAN)
	}
	return s
}
