// Package termtest is shared test support for what may reach a terminal:
// an oracle, written out from the standards rather than taken from the
// escaper it checks.
package termtest

import (
	"strings"
	"unicode/utf8"
)

// RawUnsafe returns the first rune of s that must not reach a terminal
// as it is (newlines aside), or "": the C0 and C1 controls and DEL
// (ECMA-48), the bidi controls of UAX #9, zero-width and invisible format
// characters, the BOM, the line and paragraph separators, and bytes that
// are not UTF-8.
func RawUnsafe(s string) string {
	for i, r := range s {
		switch {
		case r == '\n':
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd"),
			r < 0x20, r >= 0x7f && r <= 0x9f,
			r == 0x061c, r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e,
			r >= 0x2060 && r <= 0x2069, r == 0xfeff, r == 0x2028, r == 0x2029:
			return string(r)
		}
	}
	return ""
}
