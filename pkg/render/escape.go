package render

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The terminal escaper. Every string that comes from a packet, an agent
// or the cluster reaches the user through it, at the sink: the text and
// JSON printers and the writer of standard error (SafeWriter). What it
// escapes could move the cursor, retitle or clear the window, hide or
// reorder text: C0 and C1 control characters (ESC, CR, BEL, backspace
// …), DEL, Unicode format characters (the bidi embeddings, overrides and
// isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E, U+200F and
// U+061C, zero-width characters, the BOM), the line and paragraph
// separators, and bytes that are not UTF-8. Printable text, backslashes
// included, is left as it is, so escaping twice changes nothing.

// unsafeRune reports whether r must not reach a terminal as it is.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// appendEscaped appends s to b with every unsafe rune escaped: \xNN for
// a control character below U+0100 or a byte that is not UTF-8, \uNNNN
// for the others. keep reports the runes to leave (newline on a
// writer's stream); nil keeps none.
func appendEscaped(b []byte, s string, keep func(rune) bool) []byte {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		case keep != nil && keep(r):
			b = append(b, s[i:i+n]...)
		case unsafeRune(r) && r < 0x100:
			b = fmt.Appendf(b, `\x%02x`, r)
		case unsafeRune(r):
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// clean reports whether s holds nothing to escape.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			goto slow
		}
	}
	return true
slow:
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			return false
		}
	}
	return true
}

// Safe makes a string from a packet, an agent or the cluster safe for a
// terminal: what could act on the terminal is shown escaped, never
// interpreted.
func Safe(s string) string {
	if clean(s) {
		return s
	}
	return string(appendEscaped(nil, s, nil))
}

// safeText is the last step of the text printer: every line of out goes
// through the escaper, newlines kept and, when colored, the color
// sequences (SGR, ESC [ params m) the colorer wrote. The fields were
// escaped already (an SGR sequence in a field is escaped there); this
// catches what no field escape did.
func safeText(out string, colored bool) string {
	if clean(strings.ReplaceAll(out, "\n", "")) {
		return out
	}
	b := make([]byte, 0, len(out)+64)
	for len(out) > 0 {
		i := strings.IndexAny(out, "\n\x1b")
		if i < 0 {
			i = len(out)
		}
		b = appendEscaped(b, out[:i], nil)
		out = out[i:]
		if out == "" {
			break
		}
		if out[0] == '\n' {
			b, out = append(b, '\n'), out[1:]
			continue
		}
		if n := sgrLen(out); colored && n > 0 {
			b, out = append(b, out[:n]...), out[n:]
			continue
		}
		b, out = append(b, `\x1b`...), out[1:]
	}
	return string(b)
}

// sgrLen is the length of the SGR sequence (ESC [ digits and ; m) that s
// starts with, or 0.
func sgrLen(s string) int {
	if !strings.HasPrefix(s, "\x1b[") {
		return 0
	}
	for i := 2; i < len(s) && i < 64; i++ {
		switch c := s[i]; {
		case c == 'm':
			return i + 1
		case c == ';' || c >= '0' && c <= '9':
		default:
			return 0
		}
	}
	return 0
}

// safeJSON rewrites one encoded JSON text so that it holds no unsafe
// rune: encoding/json leaves C1 controls, DEL and the format characters
// as they are (it escapes C0, U+2028 and U+2029 itself). Outside strings
// an encoder writes ASCII only, so every rune rewritten is inside a
// string, where \uNNNN means the same rune to every JSON reader.
func safeJSON(b []byte) []byte {
	if clean(string(b)) {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = append(out, `\ufffd`...) // not UTF-8: what encoding/json writes for it
		case r >= 0x80 && unsafeRune(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		case r == 0x7f:
			out = append(out, `\u007f`...)
		default:
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

// SafeWriter is a writer for standard error: whatever is written goes
// out escaped, newlines and tabs kept. A rune split across two writes is
// held until its end arrives. Safe for concurrent use.
type SafeWriter struct {
	mu   sync.Mutex
	w    io.Writer
	part []byte // the start of a rune split across writes
	buf  []byte
}

// NewSafeWriter returns a SafeWriter that writes to w.
func NewSafeWriter(w io.Writer) *SafeWriter { return &SafeWriter{w: w} }

func keepLines(r rune) bool { return r == '\n' || r == '\t' }

// Write escapes p and writes it out; it reports len(p) when all of it
// was written.
func (s *SafeWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := append(s.part, p...)
	s.part = nil
	// A rune that may still be completed by the next write waits for it.
	if k := partialRuneAt(in); k < len(in) {
		s.part = append([]byte(nil), in[k:]...)
		in = in[:k]
	}
	s.buf = appendEscaped(s.buf[:0], string(in), keepLines)
	if _, err := s.w.Write(s.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// partialRuneAt returns where an incomplete (but so far valid) UTF-8
// sequence at the end of b starts, or len(b).
func partialRuneAt(b []byte) int {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		c := b[len(b)-k]
		if !utf8.RuneStart(c) {
			continue
		}
		if c >= 0xc0 && !utf8.FullRune(b[len(b)-k:]) {
			return len(b) - k
		}
		break
	}
	return len(b)
}

// Flush writes out a held partial rune (escaped: it never completed).
func (s *SafeWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.part) == 0 {
		return nil
	}
	b := appendEscaped(nil, string(s.part), nil)
	s.part = nil
	_, err := s.w.Write(b)
	return err
}
