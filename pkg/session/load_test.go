package session

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// recording writes a small recording into a new directory: one agent
// whose stream is a hello and a bye.
func recording(t *testing.T, header map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	stream := `{"v":1,"seq":1,"agent":"a","kind":"hello","hello":{"role":"pod","name":"pod-a"}}` + "\n" +
		`{"v":1,"seq":2,"agent":"a","kind":"bye","bye":{"reason":"stopped"}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "01-a.jsonl"), []byte(stream), 0o600); err != nil {
		t.Fatal(err)
	}
	h := map[string]any{
		"session": map[string]any{"Src": map[string]any{"Name": "pod-a", "Agent": "a"}, "Dst": map[string]any{"Name": "pod-b"},
			"Probe": map[string]any{"proto": "icmp", "dst": "10.0.0.2", "count": 1, "id": 7}},
		"agents": []any{map[string]any{"id": "a", "display": "pod-a", "file": "01-a.jsonl"}},
	}
	for k, v := range header {
		h[k] = v
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "session.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadErr runs Load with a bound on its time: a recording that makes it
// wait forever fails the test instead of hanging it.
func loadErr(t *testing.T, dir string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, _, _, err := Load(dir)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("Load(%s) did not return", dir)
		return nil
	}
}

func TestLoadReadsAWellFormedRecording(t *testing.T) {
	dir := recording(t, nil)
	s, streams, _, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Src.Name != "pod-a" || len(streams) != 1 || len(streams[0].Lines) != 2 {
		t.Fatalf("session %+v, %d streams; want pod-a and one stream of 2 lines", s.Src, len(streams))
	}
}

// A recording is what someone sent: a FIFO, a device or a directory in
// the place of a file is refused at once with a line that says what it
// is, never read or waited on.
func TestLoadOpensRegularFilesOnly(t *testing.T) {
	cases := []struct {
		name, file, want string
		make             func(path string) error
	}{
		{"fifo header", "session.json", "is not a regular file (a FIFO)", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"fifo stream", "01-a.jsonl", "is not a regular file (a FIFO)", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"device stream", "01-a.jsonl", "is not a regular file (a character device)", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"directory header", "session.json", "is not a regular file (a directory)", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"directory stream", "01-a.jsonl", "is not a regular file (a directory)", func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := recording(t, nil)
			p := filepath.Join(dir, c.file)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := c.make(p); err != nil {
				t.Fatal(err)
			}
			err := loadErr(t, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Load: %v; want one line saying %q", err, c.want)
			}
		})
	}
	if err := loadErr(t, filepath.Join(recording(t, nil), "session.json")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Load of a file: %v; want: not a directory", err)
	}
}

func TestLoadBoundsTheCountsItReads(t *testing.T) {
	many := make([]any, maxAgents+1)
	for i := range many {
		many[i] = map[string]any{"id": "a", "file": "01-a.jsonl"}
	}
	probe := func(count int, proto string, port int) map[string]any {
		return map[string]any{"session": map[string]any{"Probe": map[string]any{"proto": proto, "count": count, "port": port}}}
	}
	cases := []struct {
		name   string
		header map[string]any
		want   string
	}{
		{"agents", map[string]any{"agents": many}, "257 agents: a recording holds at most 256"},
		{"notes", map[string]any{"notes": make([]string, 65)}, "65 notes: a recording holds at most 64"},
		{"probe count", probe(1<<62, "icmp", 0), "probe count 4611686018427387904: want 1 to 1000"},
		{"no probes", probe(0, "icmp", 0), "probe count 0: want 1 to 1000"},
		{"probe protocol", probe(1, "sctp\x1b[2J", 0), `probe protocol "sctp\x1b[2J": want icmp, tcp or udp`},
		{"probe port", probe(1, "tcp", 70000), "probe port 70000: want 0 to 65535"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := loadErr(t, recording(t, c.header))
			if err == nil || !strings.HasSuffix(err.Error(), c.want) {
				t.Fatalf("Load: %v; want an error ending %q", err, c.want)
			}
		})
	}
}

func TestLoadRefusesAStreamFileBeyondWhatARecordingHolds(t *testing.T) {
	dir := recording(t, nil)
	p := filepath.Join(dir, "01-a.jsonl")
	// A sparse file: its size is what counts, not its blocks.
	if err := os.Truncate(p, maxStreamBytes+1); err != nil {
		t.Fatal(err)
	}
	err := loadErr(t, dir)
	if err == nil || !strings.Contains(err.Error(), "a recording's file holds at most") {
		t.Fatalf("Load: %v; want the size refused", err)
	}
}

// A file is read within the size checked when it was opened: one that
// grows after the check fails the read instead of being read whole.
func TestOpenedFileThatGrowsIsReadOnlyToItsBound(t *testing.T) {
	name := filepath.Join(t.TempDir(), "grows")
	if err := os.WriteFile(name, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openRegular(name, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("grown after the check"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := io.ReadAll(f)
	if err == nil || !strings.Contains(err.Error(), "grew beyond") {
		t.Fatalf("read %d bytes of a file grown past its bound, err %v; want an error", len(b), err)
	}
	if len(b) > 11 {
		t.Fatalf("read %d bytes past a bound of 10", len(b))
	}

	// A file of exactly its bound reads whole.
	if err := os.WriteFile(name, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := openRegular(name, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if b, err := io.ReadAll(g); err != nil || string(b) != "0123456789" {
		t.Fatalf("read %q, %v; want the whole file", b, err)
	}
}

// A recording's session.json names its fields as the rest of the
// recording does (lower camel case), and one written before, with Go's
// names (as recording above), still loads.
func TestSaveNamesTheSessionsFieldsAndLoadReadsThemBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	want := trace.Session{Src: trace.Endpoint{Name: "e2e/pod-a", Short: "pod-a", IP: "10.0.0.1", Node: "n1", Agent: "pod-a"},
		Dst: trace.Endpoint{Name: "e2e/pod-b", Short: "pod-b", IP: "10.0.0.2", Node: "n1", Agent: "pod-b"}, Shape: "bridge cni0",
		Mode: &trace.Mode{Name: "ephemeral", Why: "test"}}
	if err := Save(dir, want, &Result{}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Session map[string]json.RawMessage `json:"session"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"src", "dst", "shape", "mode"} {
		if _, ok := raw.Session[k]; !ok {
			t.Errorf("session.json has no %q in its session: %s", k, b)
		}
	}
	if strings.Contains(string(b), `"Src"`) || !strings.Contains(string(b), `"short": "pod-a"`) {
		t.Errorf("session.json names fields as Go does:\n%s", b)
	}
	got, _, _, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Src != want.Src || got.Dst != want.Dst || got.Shape != want.Shape || got.Mode == nil || *got.Mode != *want.Mode {
		t.Fatalf("loaded %+v; saved %+v", got, want)
	}
}
