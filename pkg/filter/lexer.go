package filter

import (
	"fmt"
	"strings"
)

// tokKind classifies a lexical token of a filter expression.
type tokKind int

const (
	tokEOF  tokKind = iota
	tokWord         // keyword, number, address, name; see token.escaped
	tokOp           // punctuation or operator, in token.text
)

// token is one lexical element together with its byte offset in the
// expression, which error messages report.
type token struct {
	kind    tokKind
	text    string
	off     int
	escaped bool // written with a leading backslash: never a keyword
}

func (t token) String() string {
	if t.kind == tokEOF {
		return "end of expression"
	}
	return fmt.Sprintf("%q", t.text)
}

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isWordChar(c byte) bool {
	return isWordStart(c) || c == '.'
}

// lex splits expr into tokens. Words follow libpcap's scanner closely
// enough for the supported syntax: letters, digits, '_', '.', and '-'
// between word characters (so "tcp-syn" and "1000-2000" are single words).
// Outside brackets ':' is part of a word (MAC and IPv6 addresses) and so
// is '/' followed by digits after an address (CIDR prefixes); inside
// brackets ':' separates offset and size.
func lex(expr string) ([]token, error) {
	var toks []token
	depth := 0
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '\\' && i+1 < len(expr) && isWordStart(expr[i+1]):
			j := scanWord(expr, i+1, depth)
			toks = append(toks, token{kind: tokWord, text: expr[i+1 : j], off: i, escaped: true})
			i = j
			continue
		case isWordStart(c) || (c == ':' && depth == 0 && i+1 < len(expr) && expr[i+1] == ':'):
			j := scanWord(expr, i, depth)
			toks = append(toks, token{kind: tokWord, text: expr[i:j], off: i})
			i = j
			continue
		}
		op := ""
		for _, two := range []string{"&&", "||", "==", "!=", "<=", ">=", "<<", ">>"} {
			if strings.HasPrefix(expr[i:], two) {
				op = two
				break
			}
		}
		if op == "" {
			if !strings.ContainsRune("()[]!&|^+-*/%=<>:", rune(c)) {
				if c >= 0x80 || c < 0x20 {
					return nil, &posError{off: i, msg: fmt.Sprintf("unexpected byte 0x%02x", c)}
				}
				return nil, &posError{off: i, msg: fmt.Sprintf("unexpected character %q", string(c))}
			}
			op = string(c)
		}
		switch op {
		case "[":
			depth++
		case "]":
			if depth > 0 {
				depth--
			}
		}
		toks = append(toks, token{kind: tokOp, text: op, off: i})
		i += len(op)
	}
	toks = append(toks, token{kind: tokEOF, off: len(expr)})
	return toks, nil
}

// scanWord returns the end of the word starting at i.
func scanWord(expr string, i, depth int) int {
	j := i
	for j < len(expr) {
		c := expr[j]
		switch {
		case isWordChar(c):
			j++
		case c == ':' && depth == 0:
			j++
		case c == '-' && j > i && j+1 < len(expr) && isWordStart(expr[j+1]):
			j++
		case c == '/' && depth == 0 && j+1 < len(expr) && expr[j+1] >= '0' && expr[j+1] <= '9' &&
			strings.ContainsAny(expr[i:j], ".:"):
			j++
		default:
			return j
		}
	}
	return j
}
