package merge

import (
	"fmt"
	"strings"
)

// Intake is what the plugin received of one agent's stream and what it
// set aside: lines over its per-agent bound (so that its memory stays
// bounded whatever the traffic), lines it could not accept (too long, not
// JSON, a kind without its payload), and lines whose fields it shortened.
type Intake struct {
	ReceivedBytes int64  `json:"receivedBytes"`
	CutLines      uint64 `json:"cutLines,omitempty"` // set aside over the plugin's bound
	CutBytes      uint64 `json:"cutBytes,omitempty"`
	Invalid       uint64 `json:"invalidLines,omitempty"`
	InvalidReason string `json:"invalidReason,omitempty"` // why the first was invalid
	Clamped       uint64 `json:"clampedLines,omitempty"`
}

// BudgetCut sums what the agent's own byte budget cut, from its stats
// lines: the budget (bytes per second), lines and bytes.
func (a *AgentInfo) BudgetCut() (budget int64, lines, bytes uint64) {
	for _, s := range a.Stats {
		budget = max(budget, s.Budget)
		lines += s.CutLines
		bytes += s.CutBytes
	}
	return budget, lines, bytes
}

// cutWarnings says what was cut from this agent's stream, by the agent's
// budget or by the plugin.
func (a *AgentInfo) cutWarnings() []string {
	var out []string
	if budget, lines, bytes := a.BudgetCut(); lines > 0 {
		out = append(out, fmt.Sprintf("%s: its byte budget (%s/s, --budget) cut %d packet and change lines (%s): hops and changes there may be missing",
			a.Name, FormatBytes(budget), lines, FormatBytes(int64(bytes))))
	}
	in := a.Intake
	if in.CutLines > 0 {
		out = append(out, fmt.Sprintf("%s: the plugin kept what it could hold and set aside %d more lines (%s): hops and changes there may be missing",
			a.Name, in.CutLines, FormatBytes(int64(in.CutBytes))))
	}
	if in.Invalid > 0 {
		out = append(out, fmt.Sprintf("%s: %d invalid lines skipped (the first: %s)", a.Name, in.Invalid, in.InvalidReason))
	}
	if in.Clamped > 0 {
		out = append(out, fmt.Sprintf("%s: %d lines had fields longer than the plugin accepts: shortened", a.Name, in.Clamped))
	}
	return out
}

// cutEvidence qualifies a verdict other than delivered when lines were cut
// at an agent: "not seen" there may mean "cut".
func cutEvidence(t *Trace) {
	if t.Verdict.Result == "delivered" || t.Verdict.Result == "observed" {
		return
	}
	var who []string
	for _, a := range t.Agents {
		if _, lines, _ := a.BudgetCut(); lines > 0 || a.Intake.CutLines > 0 {
			who = append(who, a.Name)
		}
	}
	if len(who) > 0 {
		t.Verdict.Evidence = append(t.Verdict.Evidence, fmt.Sprintf("lines were cut at %s (byte budget or the plugin's bound): a hop not seen there may have been cut, not lost; run again with a larger --budget or a narrower --filter", strings.Join(who, ", ")))
	}
}

// FormatBytes prints a byte count for humans: "812 B", "9.8 KiB", "3.4 MiB".
func FormatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return trim1(float64(n)/(1<<10)) + " KiB"
	case n < 1<<30:
		return trim1(float64(n)/(1<<20)) + " MiB"
	}
	return trim1(float64(n)/(1<<30)) + " GiB"
}

// trim1 prints one decimal below 100 and none above: "9.8", "128".
func trim1(f float64) string {
	if f >= 100 {
		return fmt.Sprintf("%.0f", f)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0")
}
