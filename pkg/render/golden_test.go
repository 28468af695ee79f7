package render

import (
	"bytes"
	"path/filepath"
	"testing"

	goldenfile "github.com/podtrace/kubectl-podtrace/internal/golden"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
)

// Recordings of real runs (testdata/recordings/NAME: the raw observation
// streams a run saved with --save) replay through merge and render into
// exactly the golden text (plain and colored) and JSON lines.
func TestGoldenTraces(t *testing.T) {
	dirs, err := filepath.Glob("testdata/recordings/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			s, streams, armed, notes, err := session.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			tr := merge.Merge(s, streams)
			h := Header{Armed: armed, Notes: notes}
			var plain, colored, js bytes.Buffer
			if err := Text(&plain, tr, h, false); err != nil {
				t.Fatal(err)
			}
			if err := Text(&colored, tr, h, true); err != nil {
				t.Fatal(err)
			}
			if err := JSON(&js, tr, h); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(plain.Bytes(), []byte("\x1b[")) || !bytes.Contains(colored.Bytes(), []byte("\x1b[")) {
				t.Errorf("plain output must have no escape codes and colored output some")
			}
			if !bytes.Equal(stripANSI(colored.Bytes()), plain.Bytes()) {
				t.Errorf("without its colors, the colored trace must read exactly like the plain one")
			}
			golden(t, filepath.Join("testdata", "golden", name+".txt"), plain.Bytes())
			golden(t, filepath.Join("testdata", "golden", name+".color.txt"), colored.Bytes())
			golden(t, filepath.Join("testdata", "golden", name+".jsonl"), js.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	goldenfile.Check(t, path, got)
}

func stripANSI(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '[' {
			j := i + 2
			for j < len(b) && (b[j] < '@' || b[j] > '~') {
				j++
			}
			i = j
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func TestSafeEscapesControlCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"pod-a":             "pod-a",
		"evil\x1b[31mred":   `evil\x1b[31mred`,
		"line\nbreak\x07":   `line\x0abreak\x07`,
		"ünïcode · fine ─▶": "ünïcode · fine ─▶",
	} {
		if got := Safe(in); got != want {
			t.Errorf("Safe(%q) = %q; want %q", in, got, want)
		}
	}
}
