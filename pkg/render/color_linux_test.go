package render

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal and returns its terminal end: a writer
// that is a TTY, as a user's shell gives the plugin.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestUseColorDecidesOnce: --color always/never win over everything; auto
// colors a terminal, and only a terminal, unless NO_COLOR is set to a
// non-empty value (no-color.org) or TERM is dumb. Each case starts from the same environment
// (TERM=xterm-256color, NO_COLOR unset), so that a case can only pass for
// its own reason.
func TestUseColorDecidesOnce(t *testing.T) {
	tty := openPTY(t)
	var buf bytes.Buffer
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	unset := "\x00unset"
	for _, c := range []struct {
		mode      string
		to        string
		noColor   string
		term      string
		want      bool
		becauseOf string
	}{
		{"auto", "tty", unset, "xterm-256color", true, "a terminal"},
		{"", "tty", unset, "xterm-256color", true, "a terminal (auto is the default)"},
		{"auto", "tty", "1", "xterm-256color", false, "NO_COLOR"},
		{"auto", "tty", "", "xterm-256color", true, "NO_COLOR empty counts as unset (no-color.org)"},
		{"auto", "tty", unset, "dumb", false, "TERM=dumb"},
		{"auto", "buffer", unset, "xterm-256color", false, "not a file"},
		{"auto", "file", unset, "xterm-256color", false, "a file that is not a terminal"},
		{"always", "buffer", unset, "xterm-256color", true, "always"},
		{"always", "tty", "1", "dumb", true, "always, whatever the environment"},
		{"never", "tty", unset, "xterm-256color", false, "never, even on a terminal"},
	} {
		if c.noColor == unset {
			t.Setenv("NO_COLOR", "") // restored at the end of the test
			os.Unsetenv("NO_COLOR")
		} else {
			t.Setenv("NO_COLOR", c.noColor)
		}
		t.Setenv("TERM", c.term)
		var w interface{ Write([]byte) (int, error) } = &buf
		switch c.to {
		case "tty":
			w = tty
		case "file":
			w = devNull
		}
		got, err := UseColor(c.mode, w)
		if err != nil || got != c.want {
			t.Errorf("UseColor(%q) to a %s, NO_COLOR %q, TERM %q = %v, %v; want %v (%s)", c.mode, c.to, c.noColor, c.term, got, err, c.want, c.becauseOf)
		}
	}
	if _, err := UseColor("sometimes", &buf); err == nil {
		t.Error("an unknown --color value must be an error")
	}
}
