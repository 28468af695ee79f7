package render

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/jsonkeys"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
)

// jsonKinds are the Go types of the JSON lines, by kind.
var jsonKinds = map[string]any{
	"trace": jsonTrace{}, "hop": jsonHop{}, "nat": jsonNAT{}, "change": jsonChange{}, "summarized": jsonSummarized{},
	"flow": jsonFlow{}, "path": jsonPath{}, "warning": jsonWarning{}, "verdict": jsonVerdict{},
}

// typeKeys lists every key path encoding/json can write for t: "a",
// "a.b", "a[].c" (an array of objects), following json tags, embedded
// structs, pointers and slices.
func typeKeys(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
		typeKeys(t.Elem(), prefix+"[]", out)
		return
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Time{}) {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			typeKeys(f.Type, prefix, out)
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out[p] = true
		typeKeys(f.Type, p, out)
	}
}

func sortedKeys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// The JSON lines' keys are exactly those docs/trace-json.md lists (its
// ```keys block): the key list and the Go types of the lines agree both
// ways, and every key of the real output of every recording (what -o json
// and replay -o json print) is listed for its kind.
func TestJSONKeysAreTheDocumentedOnes(t *testing.T) {
	doc, err := jsonkeys.Load(jsonkeys.DocPath())
	if err != nil {
		t.Fatal(err)
	}
	for kind, v := range jsonKinds {
		code := map[string]bool{}
		typeKeys(reflect.TypeOf(v), "", code)
		code["kind"] = true
		// a hop's packet is the observation without its frame bytes
		if kind == "hop" {
			delete(code, "packet.frame")
		}
		for _, k := range sortedKeys(code) {
			if !doc[kind][strings.TrimSuffix(k, "[]")] {
				t.Errorf("%s line: key %s is written by the code but not listed in docs/trace-json.md", kind, k)
			}
		}
		for _, k := range sortedKeys(doc[kind]) {
			if !code[k] {
				t.Errorf("%s line: key %s is listed in docs/trace-json.md but the code has no such key", kind, k)
			}
		}
	}
	for kind := range doc {
		if jsonKinds[kind] == nil {
			t.Errorf("docs/trace-json.md lists keys of kind %q, which the code does not write", kind)
		}
	}

	dirs, _ := filepath.Glob("../*/testdata/recordings/*")
	more, _ := filepath.Glob("../trace/*/testdata/recordings/*")
	dirs = append(dirs, more...)
	if len(dirs) < 6 {
		t.Fatalf("found %d recordings; want the render and verdict recordings", len(dirs))
	}
	seen := map[string]bool{}
	for _, dir := range dirs {
		s, streams, armed, notes, err := session.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := JSON(&out, merge.Merge(s, streams), Header{Armed: armed, Notes: notes}); err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
			bad, err := doc.Undocumented(line)
			if err != nil {
				t.Fatalf("%s: %v\n%s", dir, err, line)
			}
			for _, k := range bad {
				t.Errorf("%s: key %s is not documented:\n%.300s", dir, k, line)
			}
			var obj map[string]any
			_ = json.Unmarshal(line, &obj)
			seen[obj["kind"].(string)] = true
		}
	}
	for _, kind := range []string{"trace", "hop", "change", "summarized", "flow", "path", "verdict"} {
		if !seen[kind] {
			t.Errorf("no recording printed a %s line: the output check covered less than it says", kind)
		}
	}
}
