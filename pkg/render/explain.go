package render

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/podtrace/kubectl-podtrace/pkg/trace/explain"
)

// writeExplain prints the narrative after the verdict: one sentence a
// line, behind the numbers of the trace lines it rests on ("3–6", "path",
// "verdict").
func writeExplain(b *strings.Builder, n *explain.Narrative, c *colorer) {
	if len(n.Sentences) == 0 {
		return
	}
	b.WriteString("\n" + c.head.Sprint("explain") + "\n")
	refs := make([]string, len(n.Sentences))
	w := 0
	for i, s := range n.Sentences {
		refs[i] = RefText(s)
		w = max(w, utf8.RuneCountInString(refs[i]))
	}
	for i, s := range n.Sentences {
		text := Safe(s.Text)
		if s.Topic == "loss" {
			text = c.bad.Sprint(text)
		}
		fmt.Fprintf(b, "  %s%s  %s\n", c.dim.Sprint(refs[i]), strings.Repeat(" ", w-utf8.RuneCountInString(refs[i])), text)
	}
}

// RefText is how the text output cites a sentence's lines: numbers, runs
// of consecutive ones as a range, then the lines below the trace's body
// it rests on: "1, 3–5", "17, path", "verdict".
func RefText(s explain.Sentence) string {
	nums := s.Lines()
	sort.Ints(nums)
	var parts []string
	for i := 0; i < len(nums); {
		k := i
		for k+1 < len(nums) && nums[k+1] <= nums[k]+1 {
			k++
		}
		if nums[k] == nums[i] {
			parts = append(parts, fmt.Sprint(nums[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d–%d", nums[i], nums[k]))
		}
		i = k + 1
	}
	seen := map[string]bool{}
	for _, r := range s.Refs {
		if r.Line == 0 && !seen[r.Kind] {
			seen[r.Kind] = true
			parts = append(parts, Safe(r.Kind))
		}
	}
	return strings.Join(parts, ", ")
}

// jsonExplain is the narrative as a JSON line, before the verdict.
type jsonExplain struct {
	Kind string `json:"kind"` // "explain"
	*explain.Narrative
}
