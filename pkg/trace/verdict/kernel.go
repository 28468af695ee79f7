package verdict

import (
	"fmt"
	"slices"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// kernelEvidence adds the kernel's own word to a verdict of a probe that
// did not arrive: the earliest drop of the probe's packets an agent's
// kernel drop reasons program reported (--kernel-drops) names the
// reason and the function; when the programs were armed and reported
// none, the evidence says so (the packet was not freed as a drop: it
// was lost elsewhere, or is still queued). A probe the destination
// refused (a closed port: RST, ICMP port unreachable) was dropped there
// too, and the kernel says why (NO_SOCKET).
func kernelEvidence(t *trace.Trace) {
	v := &t.Verdict
	// A probe delivered without an answer (UDP) may have been dropped
	// after the destination's interface, by its kernel.
	unanswered := v.Answer == "none"
	refused := v.Answer == "rst" || v.Answer == "port-unreachable"
	if (v.Result == "delivered" && !refused && !unanswered) || v.Result == "observed" || t.Session.Probe == nil {
		return
	}
	var first *wire.Drop
	var by *trace.AgentInfo
	var armed []string
	for _, a := range t.Agents {
		if a.Hello != nil && a.Hello.KernelDrops != nil && a.Hello.KernelDrops.Armed {
			armed = append(armed, a.Name)
		}
		for _, d := range a.Drops {
			if copyOfPromisc(a, d) {
				continue
			}
			if first == nil || d.TS.Before(first.TS) {
				first, by = d, a
			}
		}
	}
	if first == nil {
		if len(armed) > 0 && v.Result != "delivered" {
			v.Evidence = append(v.Evidence, fmt.Sprintf("the kernel reported no drop of the probe on %s (kernel drops followed there)", strings.Join(armed, ", ")))
		}
		return
	}
	v.Kernel = kernelDrop(t, by, first)
	if v.Result == "delivered" && unanswered && !v.Kernel.Reply {
		// It reached the destination's interface, and its kernel
		// dropped it there: it never reached a socket.
		dropped := map[string]bool{}
		for _, a := range t.Agents {
			for _, d := range a.Drops {
				if !copyOfPromisc(a, d) && d.Probe != "" {
					dropped[d.Probe] = true
				}
			}
		}
		v.Delivered = max(v.Delivered-len(dropped), 0)
		v.Result = "lost"
		if v.Delivered > 0 {
			v.Result = "partial"
		}
		v.Reason = fmt.Sprintf("it reached %s and the kernel dropped it before any socket had it", t.Session.Dst.Short)
		v.Answer = ""
	}
}

// copyOfPromisc: the kernel dropped a copy of a frame for another host
// that a device held in promiscuous mode by the agent passed up
// (OTHERHOST): a copy the observation made, not the packet's fate.
func copyOfPromisc(a *trace.AgentInfo, d *wire.Drop) bool {
	if d.Reason != "OTHERHOST" || a.Hello == nil || a.NetNSID != d.NetNSID {
		return false
	}
	return slices.Contains(a.Hello.Promisc, d.Iface)
}

// kernelDrop places one drop: the agent that reported it, and the
// namespace it happened in, named by the agent that watches that
// namespace on the same host when there is one.
func kernelDrop(t *trace.Trace, by *trace.AgentInfo, d *wire.Drop) *trace.KernelDrop {
	k := &trace.KernelDrop{Place: by.Name, Iface: d.Iface, Probe: d.Probe, Reason: d.Reason, Code: d.Code, Location: d.Location}
	src := t.Session.Src.IP
	k.Reply = d.Src != src && d.Dst == src
	if d.NetNSID != 0 {
		k.Netns = fmt.Sprintf("netns inode %d", d.NetNSID)
		for _, a := range t.Agents {
			if a.NetNSID == d.NetNSID && a.ClockDomain() == by.ClockDomain() {
				k.Netns = a.Name
				break
			}
		}
	}
	what := "it"
	if k.Reply {
		what = "the answer"
	}
	text := fmt.Sprintf("the kernel dropped %s on %s: %s", what, k.Place, k.Reason)
	if k.Location != "" {
		text += " at " + k.Location
	}
	var where []string
	if k.Netns != "" && k.Netns != k.Place {
		where = append(where, "in "+k.Netns)
	}
	if k.Iface != "" {
		where = append(where, "on "+k.Iface)
	}
	if len(where) > 0 {
		text += " (" + strings.Join(where, ", ") + ")"
	}
	k.Text = text
	return k
}
