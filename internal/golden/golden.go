// Package golden compares test output with golden files under testdata.
//
// Without flags a test fails when its output differs from the file. With
// -update it rewrites the file from the output and still fails on every
// difference, showing it, so that a regenerated file is never accepted
// unseen; -update -accept rewrites and passes, once the diff was read.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	update = flag.Bool("update", false, "rewrite the golden files from the current output (the test still fails on every difference unless -accept)")
	accept = flag.Bool("accept", false, "with -update: accept the differences (read them first)")
)

// Check compares got with the golden file at path.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	want, err := os.ReadFile(path)
	missing := os.IsNotExist(err)
	if err != nil && !missing {
		t.Fatal(err)
	}
	diff := cmp.Diff(string(want), string(got))
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case diff == "":
	case *update && *accept:
		t.Logf("%s rewritten, differences accepted (-want +got):\n%s", path, diff)
	case *update && missing:
		t.Errorf("%s created; read it, then run again with -update -accept to accept it", path)
	case *update:
		t.Errorf("%s rewritten; it differs from the previous version (-want +got):\n%s\nIf that is intended, run again with -update -accept.", path, diff)
	case missing:
		t.Errorf("%s does not exist: run the test with -update, read the file, then -update -accept", path)
	default:
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}
