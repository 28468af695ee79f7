package match

import (
	"fmt"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// cutWarnings says what was cut from an agent's stream, by the agent's
// budget or by the plugin.
func cutWarnings(a *trace.AgentInfo) []string {
	var out []string
	if budget, lines, bytes := a.BudgetCut(); lines > 0 {
		out = append(out, fmt.Sprintf("%s: its byte budget (%s/s, --budget) cut %d packet and change lines (%s): hops and changes there may be missing",
			a.Name, trace.FormatBytes(budget), lines, trace.FormatBytes(int64(bytes))))
	}
	in := a.Intake
	if in.CutLines > 0 {
		out = append(out, fmt.Sprintf("%s: the plugin kept what it could hold and set aside %d more lines (%s): hops and changes there may be missing",
			a.Name, in.CutLines, trace.FormatBytes(int64(in.CutBytes))))
	}
	if in.Invalid > 0 {
		out = append(out, fmt.Sprintf("%s: %d invalid lines skipped (the first: %s)", a.Name, in.Invalid, in.InvalidReason))
	}
	if in.Clamped > 0 {
		out = append(out, fmt.Sprintf("%s: %d lines had fields longer than the plugin accepts: shortened", a.Name, in.Clamped))
	}
	return out
}

// helloWarnings are the agent's own warnings, from its hello: what it
// could not observe as asked (a bridge not held promiscuous, gateways
// left out of the capture filter, conntrack not followed live). Each is
// said once, after the agent's name.
func helloWarnings(a *trace.AgentInfo) []string {
	if a.Hello == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, w := range a.Hello.Warnings {
		if w == "" || seen[w] {
			continue
		}
		seen[w] = true
		out = append(out, a.Name+": "+w)
	}
	return out
}
