// Package render prints a merged trace: a colorized hop view for humans,
// JSON lines for machines. Colors carry meaning only (place, ARP, changes,
// verdict); the same text without color reads just as well.
package render

import (
	"fmt"
	"io"
	"os"

	"github.com/fatih/color"
	"golang.org/x/term"
)

// UseColor decides once whether output to w is colored: mode "always" or
// "never" wins; "auto" colors a terminal unless NO_COLOR is set to a
// non-empty value or TERM is "dumb".
func UseColor(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto", "":
	default:
		return false, fmt.Errorf("--color %q: want auto, always or never", mode)
	}
	if os.Getenv("NO_COLOR") != "" { // no-color.org: set and not empty
		return false, nil
	}
	if os.Getenv("TERM") == "dumb" {
		return false, nil
	}
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd())), nil
}

// colorer has one method per meaning; a printer owns one, and the global
// color.NoColor is never touched.
type colorer struct {
	place, arp, change, ok, bad, dim, warn, head *color.Color
}

func newColorer(on bool) *colorer {
	mk := func(a ...color.Attribute) *color.Color {
		c := color.New(a...)
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
		return c
	}
	return &colorer{
		place:  mk(color.FgCyan),
		arp:    mk(color.FgYellow),
		change: mk(color.FgMagenta),
		ok:     mk(color.FgGreen, color.Bold),
		bad:    mk(color.FgRed, color.Bold),
		dim:    mk(color.Faint),
		warn:   mk(color.FgYellow, color.Bold),
		head:   mk(color.Bold),
	}
}
