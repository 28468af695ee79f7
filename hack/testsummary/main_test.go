package main

import (
	"strings"
	"testing"
)

const (
	pass = `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
`
	skip = `{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: tcpdump not installed\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB","Elapsed":0}
`
	fail = `{"Action":"run","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: boom\n"}
{"Action":"fail","Package":"p","Test":"TestC","Elapsed":0}
`
	pkgOK   = `{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n" + `{"Action":"pass","Package":"p","Elapsed":0.1}` + "\n"
	pkgFail = `{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}` + "\n" + `{"Action":"fail","Package":"p","Elapsed":0.1}` + "\n"
)

func TestSummaryFailsOnSkipsFailuresAndEmptyRuns(t *testing.T) {
	for _, c := range []struct {
		name    string
		stream  string
		allowed map[string]bool
		ok      bool
		says    string
	}{
		{"all passed", pass + pkgOK, nil, true, "1 passed, 0 failed, 0 skipped"},
		{"a skip", pass + skip + pkgOK, nil, false, "skipped: p TestB: b_test.go:9: tcpdump not installed  [not in the allow list]"},
		{"an allowed skip", pass + skip + pkgOK, map[string]bool{"p TestB": true}, true, "1 skipped (0 not allowed)"},
		{"a failure", pass + fail + pkgFail, nil, false, "c_test.go:3: boom"},
		{"nothing ran", pkgOK, nil, false, "no test ran"},
		{"a build failure", `{"Action":"build-fail","ImportPath":"p"}` + "\n" + pass + pkgOK, nil, false, "a build failed"},
	} {
		var out strings.Builder
		if got := summarize(strings.NewReader(c.stream), &out, c.allowed, false); got != c.ok || !strings.Contains(out.String(), c.says) {
			t.Errorf("%s: ok %v, want %v; output lacks %q:\n%s", c.name, got, c.ok, c.says, out.String())
		}
	}
}
