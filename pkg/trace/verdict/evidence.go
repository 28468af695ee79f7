package verdict

import (
	"fmt"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// cutEvidence qualifies a verdict other than delivered when lines were cut
// at an agent: "not seen" there may mean "cut".
func cutEvidence(t *trace.Trace) {
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
