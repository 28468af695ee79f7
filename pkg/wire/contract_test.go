package wire

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docWords reads docs/observation-stream.md and returns the backquoted
// words of the text that follows start, up to the end of its paragraph
// (a blank line) or, when stop is not empty, up to stop.
func docWords(t *testing.T, start, stop string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/observation-stream.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, start)
	if i < 0 {
		t.Fatalf("docs/observation-stream.md has no %q", start)
	}
	text := doc[i+len(start):]
	if j := strings.Index(text, "\n\n"); j >= 0 {
		text = text[:j]
	}
	if stop != "" {
		j := strings.Index(text, stop)
		if j < 0 {
			t.Fatalf("docs/observation-stream.md: no %q after %q", stop, start)
		}
		text = text[:j]
	}
	var words []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(text, -1) {
		words = append(words, m[1])
	}
	return words
}

func TestDocListsEveryByeReason(t *testing.T) {
	got := docWords(t, "`bye`: `reason` —", "after its `error` line")
	if !slices.Equal(got, ByeReasons) {
		t.Errorf("bye reasons in docs/observation-stream.md: %q, in the code (ByeReasons): %q", got, ByeReasons)
	}
}

func TestDocListsEveryKind(t *testing.T) {
	got := docWords(t, "| `kind`  | string  |", "\n")
	if !slices.Equal(got, Kinds) {
		t.Errorf("kinds in docs/observation-stream.md: %q, in the code (Kinds): %q", got, Kinds)
	}
}

func TestDocListsEveryControlLine(t *testing.T) {
	got := docWords(t, "With `--control stdin` the agent reads lines on stdin:", "")
	want := []string{CmdStart, CmdProbe, CmdStop, CmdExit}
	var lines []string
	for _, w := range got {
		if slices.Contains(want, w) {
			lines = append(lines, w)
		}
	}
	if !slices.Equal(lines, want) {
		t.Errorf("control lines in docs/observation-stream.md: %q, in the code: %q", lines, want)
	}
}

func TestProbeIdentity(t *testing.T) {
	// The documented names: protocol and 1-based sequence; TCP/UDP probe
	// seq leaves from source port id + seq − 1.
	s := &ProbeSpec{Proto: "tcp", ID: 40000}
	if got := ProbeID(s, 2); got != "tcp/2" {
		t.Errorf("ProbeID(tcp, 2) = %q, want tcp/2", got)
	}
	if got := SourcePort(s, 3); got != 40002 {
		t.Errorf("SourcePort(id 40000, 3) = %d, want 40002", got)
	}
}
