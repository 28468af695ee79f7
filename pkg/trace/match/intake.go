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
