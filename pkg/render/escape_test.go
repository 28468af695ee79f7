package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/termtest"
)

// hostile holds what a terminal acts on: C0 controls (ESC and a CSI that
// clears the screen, an OSC that retitles the window, BEL, CR, BS), DEL,
// C1 controls (the 8-bit CSI U+009B), the bidi overrides, embeddings,
// isolates and marks of Unicode (UAX #9), zero-width characters, the BOM,
// the line separator, and a byte that is not UTF-8.
var hostile = []struct{ in, want string }{
	{"\x1b[2J", `\x1b[2J`},
	{"\x1b]0;owned\x07", `\x1b]0;owned\x07`},
	{"a\rb\bc\x00", `a\x0db\x08c\x00`},
	{"del\x7f", `del\x7f`},
	{"csi\u009b31m", `csi\x9b31m`},
	{"\u202eevil\u202c", `\u202eevil\u202c`},
	{"\u202a\u202b\u202d", `\u202a\u202b\u202d`},
	{"\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
	{"\u200e\u200f\u061c", `\u200e\u200f\u061c`},
	{"zero\u200bwidth\u2060\ufeff", `zero\u200bwidth\u2060\ufeff`},
	{"line\u2028sep\u2029", `line\u2028sep\u2029`},
	{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
}

func TestSafeEscapesWhatATerminalActsOn(t *testing.T) {
	for _, c := range hostile {
		if got := Safe(c.in); got != c.want {
			t.Errorf("Safe(%q) = %q; want %q", c.in, got, c.want)
		}
		if got := Safe(Safe(c.in)); got != c.want {
			t.Errorf("Safe twice of %q = %q; escaping again must change nothing", c.in, got)
		}
	}
	for _, s := range []string{"pod-a", `back\slash`, "ünïcode · fine ─▶ ≈+3 µs", "日本語", "emoji 🙂"} {
		if got := Safe(s); got != s {
			t.Errorf("Safe(%q) = %q; printable text must pass as it is", s, got)
		}
	}
}

func TestSafeTextKeepsNewlinesAndTheColorerSequencesOnly(t *testing.T) {
	c := newColorer(true)
	in := c.bad.Sprint("LOST") + " x\x1b[2Jy\n" + c.place.Sprint("pod-a") + "\u202e\x1b]0;t\x07\n"
	want := c.bad.Sprint("LOST") + ` x\x1b[2Jy` + "\n" + c.place.Sprint("pod-a") + `\u202e\x1b]0;t\x07` + "\n"
	if got := safeText(in, true); got != want {
		t.Errorf("colored: got %q; want %q", got, want)
	}
	// Without color, no escape sequence is ours: all are shown escaped.
	if got := safeText("a\x1b[31mb\n", false); got != `a\x1b[31mb`+"\n" {
		t.Errorf("plain: got %q", got)
	}
}

func TestSafeJSONDecodesToTheSameStringsWithNothingRaw(t *testing.T) {
	for _, c := range hostile {
		var buf bytes.Buffer
		enc := json.NewEncoder(safeJSONWriter{&buf})
		if err := enc.Encode(map[string]string{"k": c.in}); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if raw := termtest.RawUnsafe(out); raw != "" {
			t.Errorf("JSON of %q holds %q raw: %s", c.in, raw, out)
		}
		var back map[string]string
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatalf("JSON of %q does not decode: %v: %s", c.in, err, out)
		}
		// encoding/json writes a byte that is not UTF-8 as U+FFFD.
		want := strings.ToValidUTF8(c.in, "\ufffd")
		if back["k"] != want {
			t.Errorf("JSON of %q decodes to %q; want %q", c.in, back["k"], want)
		}
	}
}

func TestSafeWriterEscapesAcrossWritesAndKeepsRunesWhole(t *testing.T) {
	var out bytes.Buffer
	w := NewSafeWriter(&out)
	// "é" and "─" split across writes, an ESC sequence and a bidi override
	// too; a newline and a tab are kept.
	in := "error: pod é\x1b[2J\n\t─\u202eend"
	for i := 0; i < len(in); i++ {
		if _, err := w.Write([]byte{in[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "error: pod é\\x1b[2J\n\t─\\u202eend"
	if out.String() != want {
		t.Fatalf("got %q; want %q", out.String(), want)
	}
	out.Reset()
	_, _ = w.Write([]byte("cut \xe2\x94"))
	_ = w.Flush()
	if out.String() != `cut \xe2\x94` {
		t.Fatalf("an unfinished rune at the end: got %q", out.String())
	}
}
