package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// withHelloWarnings copies a recording and adds warnings to the hello
// lines of the agents named, as an agent writes them.
func withHelloWarnings(t *testing.T, src string, warnings map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f.Name(), ".jsonl") {
			lines := bytes.SplitN(b, []byte("\n"), 2)
			var hello map[string]any
			if err := json.Unmarshal(lines[0], &hello); err != nil || hello["kind"] != "hello" {
				t.Fatalf("%s: the first line is not a hello: %v", f.Name(), err)
			}
			h := hello["hello"].(map[string]any)
			if w, ok := warnings[h["name"].(string)]; ok {
				h["warnings"] = w
				first, err := json.Marshal(hello)
				if err != nil {
					t.Fatal(err)
				}
				b = append(append(first, '\n'), lines[1]...)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// An agent's hello says what it could not observe as asked (here the
// node's bridge not held promiscuous because a policy engine queues
// packets, the agent's own words): the text trace shows each of its
// warnings once, after the agent's name, with the other warnings above
// the verdict, escaped and bounded like every string an agent sends; the
// JSON trace has them as warning lines.
func TestAgentsHelloWarningsAreShownOnceEachEscaped(t *testing.T) {
	promisc := "bridges are not held in promiscuous mode (nftables inet kube-network-policies queue packets to userspace: " +
		"a promiscuous bridge clones the frames it forwards, and the kernel drops a queued packet whose new connection a clone shares): " +
		"frames a bridge forwards between its ports are seen at the ports only"
	scope := "the path's gateways and tunnel endpoints are not in the capture filter: no route to 10.244.1.3"
	hostile := "conntrack \x1b]0;owned\x07 \u202eevil"
	long := strings.Repeat("x", wire.MaxText+100)
	dir := withHelloWarnings(t, "testdata/recordings/bridge-delivered", map[string][]string{
		"node1": {promisc, hostile, promisc, long},
		"pod-a": {scope},
	})
	s, streams, armed, notes, err := session.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := merge.Merge(s, streams)
	h := Header{Armed: armed, Notes: notes}
	checkRendered(t, tr, h)

	var plain bytes.Buffer
	if err := Text(&plain, tr, h, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(plain.String(), "\n"), "\n")
	count := func(want string) int {
		n := 0
		for _, l := range lines {
			if l == want {
				n++
			}
		}
		return n
	}
	for _, want := range []string{
		"warning node1: " + promisc,
		`warning node1: conntrack \x1b]0;owned\x07 \u202eevil`,
		"warning pod-a: " + scope,
	} {
		if n := count(want); n != 1 {
			t.Errorf("%q is %d times in the text trace; want once:\n%s", want, n, plain.String())
		}
	}
	var cut string
	for _, l := range lines {
		if strings.HasPrefix(l, "warning node1: xxx") {
			cut = l
		}
	}
	if cut == "" || len(cut) > len("warning node1: ")+wire.MaxText || !strings.HasSuffix(cut, "…") {
		t.Errorf("the over-long warning is %d bytes; want it cut to %d, marked …", len(cut), len("warning node1: ")+wire.MaxText)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "verdict DELIVERED") || !strings.HasPrefix(lines[len(lines)-2], "warning ") {
		t.Errorf("want the warnings right above the verdict:\n%s", plain.String())
	}

	var js bytes.Buffer
	if err := JSON(&js, tr, h); err != nil {
		t.Fatal(err)
	}
	msgs := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var w struct{ Kind, Msg string }
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			t.Fatal(err)
		}
		if w.Kind == "warning" {
			msgs[w.Msg]++
		}
	}
	for _, want := range []string{"node1: " + promisc, "node1: " + hostile, "pod-a: " + scope} {
		if msgs[want] != 1 {
			t.Errorf("JSON warning %q %d times; want once (warnings %v)", want, msgs[want], msgs)
		}
	}
}
