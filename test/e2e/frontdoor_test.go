//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/jsonkeys"
)

// An output file that cannot be written is refused before anything is
// created in the cluster: as the limited user, the pods keep their
// ephemeral containers (none added) and no node agent pod appears; the
// error is one line naming the path, and nothing is written beside it.
func TestBadOutputPathCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "trace.pcapng")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	beforeA, beforeB := ephemeralCount(t, "e2e", "pod-a"), ephemeralCount(t, "e2e", "pod-b")
	if p := nodePods(t); len(p) != 0 {
		t.Fatalf("node agent pods before the test: %v", p)
	}
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--pcap", filepath.Join(file, "t.pcapng")}, "t.pcapng: not a directory"},
		{[]string{"--pcap", link}, link + " is a symbolic link"},
		{[]string{"--save", file}, file + " is not a directory"},
		{[]string{"--save", filepath.Join(dir, "rec"), "--pcap", link}, link + " is a symbolic link"},
	} {
		r := kubectl(t, userConfig, podtraceArgs(append([]string{"e2e/pod-a", "e2e/pod-b"}, c.flags...)...)...)
		msg := strings.TrimSpace(r.stderr)
		if r.err == nil || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || r.stdout != "" {
			t.Errorf("%v: want one error line with %q:\n%s", c.flags, c.want, r)
		}
	}
	if a, b := ephemeralCount(t, "e2e", "pod-a"), ephemeralCount(t, "e2e", "pod-b"); a != beforeA || b != beforeB {
		t.Errorf("ephemeral containers added: pod-a %d → %d, pod-b %d → %d", beforeA, a, beforeB, b)
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("node agent pods created: %v", p)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("written beside the refused paths: %v", entries)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
}

// A flag typo is reported as the typo at once, whatever the API server:
// here one nobody answers at.
func TestFlagTypoWithAnUnreachableServerIsTheTypo(t *testing.T) {
	r := kubectl(t, userConfig, "podtrace", "pod-a", "pod-b", "--proto", "tcpp", "--server", "https://10.255.255.1:6443")
	if r.err == nil || strings.TrimSpace(r.stderr) != `error: --proto "tcpp": want icmp, tcp or udp` {
		t.Errorf("want the typo:\n%s", r)
	}
}

// --dry-run=client prints the objects with no access review and no
// server-side dry run; --dry-run=server is bare --dry-run. Neither
// creates anything.
func TestDryRunClientAndServer(t *testing.T) {
	before := ephemeralCount(t, "e2e", "pod-a")
	client := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--dry-run=client")...)
	server := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--dry-run=server")...)
	for name, r := range map[string]result{"client": client, "server": server} {
		if r.err != nil || !strings.Contains(r.stdout, "ephemeralContainers") || !strings.Contains(r.stdout, "hostNetwork: true") {
			t.Errorf("--dry-run=%s:\n%s", name, r)
		}
	}
	if !strings.Contains(client.stdout, "client dry run") || strings.Contains(server.stdout, "client dry run") {
		t.Errorf("only the client dry run says it sent no dry run:\nclient:\n%s\nserver:\n%s", client.stdout, server.stdout)
	}
	if after := ephemeralCount(t, "e2e", "pod-a"); after != before {
		t.Errorf("a dry run added an ephemeral container: %d → %d", before, after)
	}
	if p := nodePods(t); len(p) != 0 {
		t.Errorf("a dry run created node pods: %v", p)
	}
}

// Every key of a real cluster trace's -o json (the NetworkPolicy model in
// its verdict included) is one docs/trace-json.md lists.
func TestClusterTraceJSONKeysAreDocumented(t *testing.T) {
	doc, err := jsonkeys.Load(jsonkeys.DocPath())
	if err != nil {
		t.Fatal(err)
	}
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("trace failed: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], `"src":{"name":"e2e/pod-a","short":"pod-a"`) {
		t.Fatalf("trace line:\n%s", lines[0])
	}
	for _, l := range lines {
		bad, err := doc.Undocumented([]byte(l))
		if err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		for _, k := range bad {
			t.Errorf("key %s is not in docs/trace-json.md:\n%.300s", k, l)
		}
	}
	noNodePodsEventually(t)
}
