package jsonkeys

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The key block is read as written: groups expanded, prefixes implied,
// arrays marked; text outside the block is ignored.
func TestLoadExpandsGroupsAndPrefixes(t *testing.T) {
	doc, err := Load(write(t, "# x\n`a: b` is prose\n```keys\ntrace: kind src.{name,ip}\ntrace: agents[].stats[].{socket,drops}\nwarning: kind msg\n```\ntrace: not.this\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"trace":   "agents agents[].stats agents[].stats[].drops agents[].stats[].socket kind src src.ip src.name",
		"warning": "kind msg",
	}
	for kind, keys := range want {
		var got []string
		for k := range doc[kind] {
			got = append(got, k)
		}
		if g := strings.Join(sortedCopy(got), " "); g != keys {
			t.Errorf("%s: %s; want %s", kind, g, keys)
		}
	}
	if len(doc) != 2 {
		t.Errorf("kinds %v; want trace and warning", doc)
	}
	for line, want := range map[string]string{
		`{"kind":"trace","src":{"name":"a","ip":"b"},"agents":[{"stats":[{"socket":"all","drops":0}]}]}`: "",
		`{"kind":"trace","src":{"Name":"a"}}`:               "src.Name",
		`{"kind":"trace","agents":[{"stats":[{"cut":1}]}]}`: "agents[].stats[].cut",
		`{"kind":"round","n":1}`:                            `kind "round"`,
	} {
		bad, err := doc.Undocumented([]byte(line))
		if err != nil || strings.Join(bad, " ") != want {
			t.Errorf("%s: undocumented %q (%v); want %q", line, bad, err, want)
		}
	}
}

func TestLoadRefusesAMalformedBlock(t *testing.T) {
	for _, body := range []string{
		"no block here\n",
		"```keys\nno colon\n```\n",
		"```keys\ntrace: a.{b,c\n```\n",
		"```keys\ntrace: a.{b,}\n```\n",
		"```keys\ntrace: a.{b}.c\n```\n",
	} {
		if _, err := Load(write(t, body)); err == nil {
			t.Errorf("accepted %q", body)
		}
	}
}
