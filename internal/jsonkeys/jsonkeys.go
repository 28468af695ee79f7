// Package jsonkeys reads the key list of docs/trace-json.md (its ```keys
// block) and checks JSON lines against it: tests use it so that the
// documentation, the code and the output name the same keys.
package jsonkeys

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Doc is the documented keys of each kind: every path and every prefix of
// one ("src" for "src.name").
type Doc map[string]map[string]bool

// DocPath is docs/trace-json.md in this module.
func DocPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "trace-json.md")
}

// Load parses the ```keys block of the document at path: lines
// "kind: path path …", where a path may end in one "{a,b,c}" group.
func Load(path string) (Doc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc := Doc{}
	in, found := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "```keys":
			in, found = true, true
			continue
		case in && line == "```":
			in = false
			continue
		case !in:
			continue
		}
		kind, paths, ok := strings.Cut(line, ":")
		if !ok || kind == "" || strings.ContainsAny(kind, " .{}[]") {
			return nil, fmt.Errorf("%s:%d: want \"kind: path …\", got %q", path, n, line)
		}
		if doc[kind] == nil {
			doc[kind] = map[string]bool{}
		}
		for _, p := range strings.Fields(paths) {
			expanded, err := expand(p)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			for _, e := range expanded {
				for q := e; q != ""; q = parent(q) {
					doc[kind][q] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found || len(doc) == 0 {
		return nil, fmt.Errorf("%s: no ```keys block", path)
	}
	return doc, nil
}

// expand turns "a.{b,c}" into "a.b", "a.c".
func expand(p string) ([]string, error) {
	i := strings.IndexByte(p, '{')
	if i < 0 {
		if strings.ContainsAny(p, "{},") {
			return nil, fmt.Errorf("path %q: unbalanced group", p)
		}
		return []string{p}, nil
	}
	if !strings.HasSuffix(p, "}") || strings.Count(p, "{") != 1 {
		return nil, fmt.Errorf("path %q: a group must close the path", p)
	}
	var out []string
	for _, k := range strings.Split(p[i+1:len(p)-1], ",") {
		if k == "" {
			return nil, fmt.Errorf("path %q: empty key in group", p)
		}
		out = append(out, p[:i]+k)
	}
	return out, nil
}

// parent is "a.b" for "a.b.c", "a" for "a[].b" and "a[]"; "" at the top.
func parent(p string) string {
	p = strings.TrimSuffix(p, "[]")
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return strings.TrimSuffix(p[:i], "[]")
	}
	return ""
}

// Paths lists every key path of a decoded JSON value: "a", "a.b",
// "a[].c" (objects in array a).
func Paths(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			Paths(e, p, out)
		}
	case []any:
		for _, e := range x {
			Paths(e, prefix+"[]", out)
		}
	}
}

// Undocumented returns the keys of one JSON line that the document does
// not list for its kind (or its unknown kind), sorted.
func (d Doc) Undocumented(line []byte) ([]string, error) {
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, err
	}
	kind, _ := obj["kind"].(string)
	keys, ok := d[kind]
	if !ok {
		return []string{fmt.Sprintf("kind %q", kind)}, nil
	}
	got := map[string]bool{}
	Paths(obj, "", got)
	var out []string
	for p := range got {
		if !keys[strings.TrimSuffix(p, "[]")] {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}
