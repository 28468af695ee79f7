package cli

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// replay --explain on recordings saved before the explanation existed:
// the trace's body lines are numbered 1…N in order, the narrative follows
// the verdict and cites only numbers of that body; -o json adds one
// explain line, just before the verdict.
func TestReplayExplainsAnOlderRecording(t *testing.T) {
	for rec, wantCode := range map[string]int{
		"../render/testdata/recordings/bridge-lost":           ExitLost,
		"../trace/verdict/testdata/recordings/bridge-hairpin": ExitDelivered,
	} {
		t.Run(rec, func(t *testing.T) {
			out, errOut, code := runPlugin(t, "replay", rec, "--explain", "--color", "never")
			if code != wantCode {
				t.Fatalf("exit %d (%s); want %d", code, errOut, wantCode)
			}
			head, story, ok := strings.Cut(out, "\nexplain\n")
			if !ok || !strings.Contains(head, "\nverdict ") {
				t.Fatalf("no explain section after the verdict:\n%s", out)
			}
			num := regexp.MustCompile(`^ *(\d+) +[-+]?[0-9.]+ (µs|ms|s)  `)
			n := 0
			for _, l := range strings.Split(head, "\n") {
				if m := num.FindStringSubmatch(l); m != nil {
					n++
					if m[1] != strconv.Itoa(n) {
						t.Fatalf("body line %q numbered %s; want %d", l, m[1], n)
					}
				}
			}
			if n == 0 {
				t.Fatalf("no numbered line:\n%s", head)
			}
			cite := regexp.MustCompile(`^  ([0-9–, a-z]+?) {2,}\S`)
			lines := strings.Split(strings.TrimSpace(story), "\n")
			for _, l := range lines {
				m := cite.FindStringSubmatch("  " + strings.TrimLeft(l, " "))
				if m == nil {
					t.Fatalf("sentence %q cites nothing", l)
				}
				for _, k := range regexp.MustCompile(`\d+`).FindAllString(m[1], -1) {
					if i, _ := strconv.Atoi(k); i < 1 || i > n {
						t.Errorf("%q cites line %s; the body has %d", l, k, n)
					}
				}
			}
			js, _, code := runPlugin(t, "replay", rec, "--explain", "-o", "json")
			if code != wantCode {
				t.Fatalf("-o json: exit %d", code)
			}
			jl := strings.Split(strings.TrimSpace(js), "\n")
			var ex struct {
				Kind      string
				Sentences []struct{ Text string }
			}
			if err := json.Unmarshal([]byte(jl[len(jl)-2]), &ex); err != nil || ex.Kind != "explain" || len(ex.Sentences) != len(lines) {
				t.Errorf("the line before the verdict %q (%v); want the explain line with the %d sentences of the text", jl[len(jl)-2], err, len(lines))
			}
		})
	}
}
