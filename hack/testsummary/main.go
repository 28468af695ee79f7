// Command testsummary reads `go test -json` on stdin and prints what a
// reader of a CI log needs: each package's result line, the output of
// every failed test, every skipped test with its reason, and a count. It
// fails when a test or a build failed, when the stream holds no test at
// all, and when a test was skipped that the allow list does not name (the
// list is meant to stay empty: make test runs with PODTRACE_REQUIRE_ROOT=1,
// where a missing tool or privilege fails a test instead of skipping it).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	allowFile := flag.String("allow", "", "file of allowed skips: PACKAGE TEST per line, # comments")
	verbose := flag.Bool("v", false, "print every test's output, not only failed ones")
	flag.Parse()
	allowed, err := readAllow(*allowFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !summarize(os.Stdin, os.Stdout, allowed, *verbose) {
		os.Exit(1)
	}
}

func readAllow(file string) (map[string]bool, error) {
	allowed := map[string]bool{}
	if file == "" {
		return allowed, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) >= 2 {
			allowed[f[0]+" "+f[1]] = true
		}
	}
	return allowed, nil
}

func summarize(in io.Reader, out io.Writer, allowed map[string]bool, verbose bool) bool {
	output := map[string]*strings.Builder{} // package + test → its output
	var passed, failed, skipped, badSkips int
	var failures, skips []string
	buildFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(out, "%s\n", line) // not test2json: a build error, a vet message
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output", "build-output":
			if verbose {
				fmt.Fprint(out, e.Output)
			}
			if output[key] == nil {
				output[key] = &strings.Builder{}
			}
			output[key].WriteString(e.Output)
		case "build-fail":
			buildFailed = true
		case "pass", "fail", "skip":
			if e.Test == "" { // the package's own result
				o := output[key]
				if e.Action == "fail" && !verbose && o != nil {
					fmt.Fprint(out, o.String()) // build errors, a panic outside a test, the FAIL line
				} else if o != nil {
					// the last line of a package's own output is "ok  pkg 1.2s" or similar
					fmt.Fprint(out, lastLine(o.String()))
				}
				if e.Action == "fail" && o == nil {
					fmt.Fprintf(out, "FAIL\t%s\n", e.Package)
				}
				if e.Action == "fail" {
					failures = append(failures, e.Package+" (package)")
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				failures = append(failures, e.Package+" "+e.Test)
				if !verbose && !strings.Contains(e.Test, "/") { // a subtest's output is in its parent's
					fmt.Fprint(out, output[key].String())
				}
			case "skip":
				skipped++
				why := strings.TrimSpace(reason(output[key]))
				s := fmt.Sprintf("%s %s: %s", e.Package, e.Test, why)
				if !allowed[key] {
					badSkips++
					s += "  [not in the allow list]"
				}
				skips = append(skips, s)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testsummary: reading go test -json:", err)
		return false
	}
	sort.Strings(skips)
	fmt.Fprintf(out, "\n%s tests: %d passed, %d failed, %d skipped (%d not allowed)\n", time.Now().UTC().Format("15:04:05"), passed, failed, skipped, badSkips)
	for _, s := range skips {
		fmt.Fprintf(out, "  skipped: %s\n", s)
	}
	for _, f := range failures {
		fmt.Fprintf(out, "  failed: %s\n", f)
	}
	switch {
	case passed+failed+skipped == 0:
		fmt.Fprintln(out, "testsummary: no test ran")
		return false
	case buildFailed:
		fmt.Fprintln(out, "testsummary: a build failed")
		return false
	}
	return failed == 0 && len(failures) == 0 && badSkips == 0
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s + "\n"
}

// reason is what a skipped test said: its last logged lines before
// "--- SKIP".
func reason(o *strings.Builder) string {
	if o == nil {
		return ""
	}
	var keep []string
	for _, l := range strings.Split(o.String(), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) > 2 {
		keep = keep[len(keep)-2:]
	}
	return strings.Join(keep, " / ")
}
