//go:build linux

package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/termtest"
)

// evil is what a hostile agent or cluster writes into a string to act on
// the terminal of whoever reads the trace: SGR 8 (conceal), an OSC that
// retitles the window, BEL, the bidi override and isolate, the 8-bit CSI
// (U+009B), DEL, CR and a right-to-left mark.
const evil = "\x1b[8m\x1b]0;pwn\x07\u202e\u2066\u009b\x7f\r\u200f"

// evilShown is how the escaper shows evil's first sequence.
const evilShown = `\x1b[8m\x1b]0;pwn\x07\u202e\u2066\x9b\x7f\x0d\u200f`

// sgr matches a color sequence; colorerSGR holds the attributes the
// printer's colors use (fatih/color: bold 1, faint 2, red 31, green 32,
// yellow 33, magenta 35, cyan 36; resets 0, 22 for bold and faint, 39).
var (
	sgr        = regexp.MustCompile(`\x1b\[([0-9;]*)m`)
	colorerSGR = map[string]bool{"0": true, "1": true, "2": true, "22": true, "39": true, "31": true, "32": true, "33": true, "35": true, "36": true}
)

// stripOwnColors removes the color sequences the printer may write and
// leaves every other one, so that one a recording smuggled in shows.
func stripOwnColors(s string) string {
	return sgr.ReplaceAllStringFunc(s, func(m string) string {
		for _, a := range strings.Split(sgr.FindStringSubmatch(m)[1], ";") {
			if !colorerSGR[a] {
				return m
			}
		}
		return ""
	})
}

// poison appends evil to the strings of a decoded JSON value; keep names
// the keys whose strings stay as they are.
func poison(v any, keep func(key string) bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok {
				if !keep(k) {
					x[k] = s + evil
				}
				continue
			}
			x[k] = poison(e, keep)
		}
	case []any:
		for i, e := range x {
			if s, ok := e.(string); ok {
				x[i] = s + evil
				continue
			}
			x[i] = poison(e, keep)
		}
	}
	return v
}

// hostileRecording copies a recording with evil in its strings: in every
// string field but the kind, the times, the frame bytes, the file names
// and the probe's protocol (every=true), or in the names, interfaces,
// summaries, messages and overlay fields only, so that the trace still
// matches its hops (every=false). Each stream also gets an error line, a
// probe outcome and a line of a kind no build knows, all hostile.
func hostileRecording(t *testing.T, src string, every bool) string {
	t.Helper()
	structural := map[string]bool{"kind": true, "ts": true, "frame": true, "file": true, "start": true, "end": true,
		"first": true, "last": true, "deadline": true, "clock": true}
	descriptive := map[string]bool{"agent": true, "id": true, "display": true, "Name": true, "Short": true, "Node": true,
		"name": true, "node": true, "hostname": true, "netns": true, "iface": true, "dev": true, "summary": true, "msg": true,
		"reason": true, "detail": true, "Shape": true, "notes": true, "bridge": true, "warnings": true, "filter": true,
		"type": true, "outerSrc": true, "outerDst": true, "outerMac": true, "agentVersion": true, "socket": true, "Agent": true}
	keep := func(k string) bool {
		if every {
			return structural[k]
		}
		return !descriptive[k]
	}
	dst := t.TempDir()
	var h map[string]any
	b, err := os.ReadFile(filepath.Join(src, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	probe := h["session"].(map[string]any)["Probe"]
	h = poison(h, func(k string) bool { return keep(k) || k == "proto" && every }).(map[string]any)
	if p, ok := probe.(map[string]any); ok && every {
		p["proto"] = strings.TrimSuffix(p["proto"].(string), evil)
	}
	b, _ = json.Marshal(h)
	if err := os.WriteFile(filepath.Join(dst, "session.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range h["agents"].([]any) {
		a := a.(map[string]any)
		in, err := os.ReadFile(filepath.Join(src, a["file"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		for _, line := range bytes.Split(bytes.TrimSpace(in), []byte("\n")) {
			var e map[string]any
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatal(err)
			}
			l, _ := json.Marshal(poison(e, keep))
			out.Write(append(l, '\n'))
		}
		id, _ := json.Marshal(a["id"])
		for _, extra := range []string{
			`{"v":1,"seq":9001,"agent":` + string(id) + `,"kind":"error","error":{"msg":"capture failed` + jsonEvil + `"}}`,
			`{"v":1,"seq":9002,"agent":` + string(id) + `,"kind":"probe","probe":{"id":"icmp/9` + jsonEvil + `","event":"unreachable` + jsonEvil + `","detail":"no route` + jsonEvil + `"}}`,
			`{"v":1,"seq":9003,"agent":` + string(id) + `,"kind":"future` + jsonEvil + `"}`,
			"\x1b]0;noise line\x07 \u202e from the runtime",
		} {
			out.WriteString(extra + "\n")
		}
		if err := os.WriteFile(filepath.Join(dst, a["file"].(string)), out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// jsonEvil is evil as it appears inside a JSON string.
var jsonEvil = func() string { b, _ := json.Marshal(evil); return string(b[1 : len(b)-1]) }()

func runPlugin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(pluginBinary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// A recording whose every string carries terminal controls and bidi
// characters replays into a trace (text, colored text, JSON) in which
// none of them is raw: each is shown escaped, and JSON decodes back to
// the very strings of the recording.
func TestReplayOfAHostileRecordingPrintsNoRawControl(t *testing.T) {
	recs, err := filepath.Glob("../render/testdata/recordings/*")
	if err != nil || len(recs) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	for _, src := range recs {
		for _, every := range []bool{false, true} {
			name := filepath.Base(src) + map[bool]string{false: "/names", true: "/every-string"}[every]
			t.Run(name, func(t *testing.T) {
				dir := hostileRecording(t, src, every)
				for _, mode := range [][]string{{"--color", "never"}, {"--color", "always"}, {"-o", "json"}, {"--color", "always", "--explain"}, {"-o", "json", "--explain"}} {
					out, errOut, code := runPlugin(t, append([]string{"replay", dir}, mode...)...)
					if code != ExitDelivered && code != ExitLost { // a verdict, whichever
						t.Fatalf("%v: exit %d: %s", mode, code, errOut)
					}
					if r := termtest.RawUnsafe(errOut); r != "" {
						t.Errorf("%v: %q raw on standard error: %q", mode, r, errOut)
					}
					shown := stripOwnColors(out)
					if r := termtest.RawUnsafe(shown); r != "" {
						i := strings.Index(shown, r)
						t.Errorf("%v: %q raw in the trace, near %q", mode, r, shown[max(0, i-80):min(len(shown), i+40)])
					}
					if mode[0] == "-o" {
						checkJSONKeepsEvil(t, out)
						continue
					}
					// The hostile strings reached the trace, escaped: the
					// test would pass vacuously on a trace that dropped them.
					if n := strings.Count(out, evilShown); n < 5 {
						t.Errorf("%v: the escaped hostile text shows %d times; want it in at least 5 places:\n%s", mode, n, out)
					}
				}
			})
		}
	}
}

// checkJSONKeepsEvil decodes every JSON line: the strings carry evil
// again, escaped only in transit.
func checkJSONKeepsEvil(t *testing.T, out string) {
	t.Helper()
	found := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not JSON: %v: %q", err, line)
		}
		found += strings.Count(line, `\u001b[8m`)
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				if strings.Contains(x, evil) {
					found++
				}
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
	}
	if found < 5 {
		t.Errorf("the hostile strings decode out of the JSON %d times; want them in at least 5 places", found)
	}
}

// Errors printed by the plugin go through the escaper: a path holding
// terminal controls is shown escaped, on one line, and the exit code is 1.
func TestErrorsOnStandardErrorAreEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "case"+evil)
	out, errOut, code := runPlugin(t, "replay", dir)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if r := termtest.RawUnsafe(errOut); r != "" {
		t.Fatalf("%q raw on standard error: %q", r, errOut)
	}
	if !strings.Contains(errOut, "case"+evilShown) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("standard error %q; want one line naming the path escaped", errOut)
	}
}

// Damaged lines in a recording are skipped, counted and reported, and the
// trace is still shown: a kind without its payload, a line of a newer
// version, a line with the payload of another kind, and a line over the
// 4 MiB bound.
func TestReplaySkipsDamagedLinesAndSaysHowMany(t *testing.T) {
	src := "../render/testdata/recordings/bridge-delivered"
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(src, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recording: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "01-pod-a.jsonl" {
			b = append(b, []byte(`{"v":1,"seq":900,"agent":"pod-a","kind":"probe"}`+"\n"+
				`{"v":2,"seq":901,"agent":"pod-a","kind":"bye","bye":{"reason":"stopped"}}`+"\n"+
				`{"v":1,"seq":902,"agent":"pod-a","kind":"bye","bye":{"reason":"stopped"},"hello":{"role":"pod"}}`+"\n"+
				`{"v":1,"seq":903,"agent":"pod-a","kind":"error","error":{"msg":"`+strings.Repeat("x", 5<<20)+`"}}`+"\n")...)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "01-pod-a.jsonl")); err != nil {
		t.Fatalf("the recording has no stream 01-pod-a.jsonl: %v", err)
	}
	out, errOut, code := runPlugin(t, "replay", dir, "--color", "never")
	if code != ExitDelivered || !strings.Contains(out, "verdict DELIVERED") {
		t.Fatalf("exit %d: %s%s; want the trace, delivered", code, out, errOut)
	}
	if !strings.Contains(out, `pod-a: 4 invalid lines skipped (the first: a "probe" line without its "probe" payload)`) {
		t.Errorf("the trace does not say that 4 lines were skipped:\n%s", out)
	}
	out, _, _ = runPlugin(t, "replay", dir, "-o", "json")
	if !strings.Contains(out, `"invalidLines":4`) {
		t.Errorf("the JSON trace does not count 4 invalid lines:\n%s", out)
	}
}
