package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
)

// connRecorder is a TCP listener on loopback that stands for an API
// server: it records every connection made to it and closes it at once.
type connRecorder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	first chan struct{} // closed at the first connection
}

func newConnRecorder(t *testing.T) *connRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &connRecorder{ln: ln, first: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			if r.conns == 1 {
				close(r.first)
			}
			r.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *connRecorder) URL() string { return "https://" + r.ln.Addr().String() }

func (r *connRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// kubeconfigFor writes a kubeconfig whose current context's server is url.
func kubeconfigFor(t *testing.T, url string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: x
  context: {cluster: c, user: u, namespace: shop}
current-context: x
`, url)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A mistake in the flags or arguments is reported as that mistake, before
// any API call: the kubeconfig's server and the --server given both record
// every connection, and neither sees one. The same command line with the
// mistake mended does reach --server (the recorder would have seen a
// connection). Every command checks its flags first: trace, cleanup,
// lab, local and replay (which have no API server, but a typo must not be
// hidden behind "run as root" or a missing recording).
func TestFlagMistakesAreReportedBeforeAnyAPICall(t *testing.T) {
	inKubeconfig, atServer := newConnRecorder(t), newConnRecorder(t)
	kc := kubeconfigFor(t, inKubeconfig.URL())
	conn := []string{"--kubeconfig", kc, "--server", atServer.URL(), "--request-timeout", "30s"}

	root := t.TempDir()
	notDir := filepath.Join(root, "a-file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.pcapng")
	if err := os.Symlink(notDir, link); err != nil {
		t.Fatal(err)
	}
	recording, err := filepath.Abs("../render/testdata/recordings/bridge-delivered")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string // in the one-line error
	}{
		{"proto typo", []string{"pod-a", "pod-b", "--proto", "tcpp"}, `--proto "tcpp": want icmp, tcp or udp`},
		{"tcp without a port", []string{"pod-a", "pod-b", "--proto", "tcp"}, "--proto tcp needs --port between 1 and 65535"},
		{"port out of range", []string{"pod-a", "pod-b", "--proto", "udp", "--port", "70000"}, "--port between 1 and 65535"},
		{"port with icmp", []string{"pod-a", "pod-b", "--port", "80"}, "--port applies to --proto tcp or udp"},
		{"output typo", []string{"pod-a", "pod-b", "-o", "yaml"}, `--output "yaml": want text or json`},
		{"color typo", []string{"pod-a", "pod-b", "--color", "sometimes"}, `--color "sometimes"`},
		{"dry-run typo", []string{"pod-a", "pod-b", "--dry-run=serve"}, `--dry-run "serve": want server, client or none`},
		{"dry-run value after a space", []string{"pod-a", "pod-b", "--dry-run", "client"}, `write --dry-run=client`},
		{"mode typo", []string{"pod-a", "pod-b", "--mode", "nodes"}, `--mode "nodes": want auto, ephemeral, unprivileged or node`},
		{"mode node without passive", []string{"pod-a", "pod-b", "--mode", "node"}, "add --passive"},
		{"pull policy typo", []string{"pod-a", "pod-b", "--image-pull-policy", "always"}, `--image-pull-policy "always"`},
		{"count", []string{"pod-a", "pod-b", "--count", "0"}, "--count 0: want 1 to 1000"},
		{"budget", []string{"pod-a", "pod-b", "--budget", "12"}, `--budget "12" is below`},
		{"filter syntax", []string{"pod-a", "pod-b", "--filter", "tcp prot 80"}, "prot"},
		{"timeout", []string{"pod-a", "pod-b", "--timeout", "0s"}, "--timeout must be positive"},
		{"pcap in a file", []string{"pod-a", "pod-b", "--pcap", filepath.Join(notDir, "t.pcapng")}, "t.pcapng: not a directory"},
		{"pcap a symbolic link", []string{"pod-a", "pod-b", "--pcap", link}, link + " is a symbolic link"},
		{"save a file", []string{"pod-a", "pod-b", "--save", notDir}, notDir + " is not a directory"},
		{"same pod", []string{"pod-a", "shop/pod-a"}, "same pod shop/pod-a"},
		{"one argument", []string{"pod-a"}, "want a source and a destination pod, got 1"},
		{"pod name", []string{"pod-a", "Pod_B"}, "Pod_B"},
		{"passive to a Service", []string{"pod-a", "svc/web", "--passive"}, "--passive observes traffic between two pods"},
		{"proto typo to a Service", []string{"pod-a", "svc/web", "--proto", "sctp"}, `--proto "sctp"`},
		{"cleanup session", []string{"cleanup", "--session", "no/such"}, `--session "no/such": not a session id`},
		{"lab proto typo", []string{"lab", "--proto", "tcpp"}, `--proto "tcpp"`},
		{"lab topology typo", []string{"lab", "--topology", "vxlna"}, `--topology "vxlna"`},
		{"local proto typo", []string{"local", "--from", "no-such-ns", "--to", "10.0.0.1", "--proto", "tcpp"}, `--proto "tcpp"`},
		{"local via", []string{"local", "--from", "no-such-ns", "--to", "10.0.0.1", "--via", "10.96.0.300"}, `--via "10.96.0.300" is not an IP address`},
		{"replay output typo", []string{"replay", recording, "-o", "yml"}, `--output "yml"`},
		{"replay pcap in a file", []string{"replay", recording, "--pcap", filepath.Join(notDir, "t.pcapng")}, "t.pcapng: not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{}, c.args...), conn...)
			if c.args[0] == "lab" || c.args[0] == "local" || c.args[0] == "replay" {
				args = c.args // no Kubernetes flags
			}
			out, errOut, err := runCLI(t, args...)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v; want one line with %q (stdout %q, stderr %q)", err, c.want, out, errOut)
			}
			if n, m := inKubeconfig.count(), atServer.count(); n+m != 0 {
				t.Errorf("the API server was contacted before the mistake was reported: %d connection(s) to the kubeconfig's server, %d to --server", n, m)
			}
			if out != "" {
				t.Errorf("printed on stdout: %q", out)
			}
		})
	}
	if entries, _ := os.ReadDir(root); len(entries) != 2 {
		t.Errorf("files appeared beside the bad output paths: %v", entries)
	}

	// The control: mended, the same command line goes to --server.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var out, errOut strings.Builder
		cmd := NewCmdPodtrace(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		cmd.SetArgs(append([]string{"pod-a", "pod-b", "--proto", "tcp", "--port", "80"}, conn...))
		done <- cmd.ExecuteContext(ctx)
	}()
	select {
	case <-atServer.first:
	case err := <-done:
		if atServer.count() == 0 {
			t.Fatalf("the mended command ended (%v) without contacting --server: the recorder proves nothing", err)
		}
	case <-time.After(2 * time.Minute): // a bound against a hang, not a measurement
		t.Fatal("the mended command never contacted --server")
	}
	cancel()
	<-done
	if inKubeconfig.count() != 0 {
		t.Errorf("--server did not override the kubeconfig's server: %d connection(s) there", inKubeconfig.count())
	}
}

// A --pcap file that cannot be put in place when the trace is done (a
// symbolic link planted at its name meanwhile) costs that file only: the
// whole trace is printed, and the error says the frames were not written.
func TestAPcapThatCannotBeWrittenStillPrintsTheTrace(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "trace.pcapng")
	var out, errOut strings.Builder
	o := &TraceOptions{Output: "text", Color: "never", Pcap: target}
	o.Out, o.ErrOut = &out, &errOut
	unsaved, err := o.openOutputs()
	if err != nil {
		t.Fatal(err)
	}
	defer unsaved()
	if err := os.Symlink(victim, target); err != nil {
		t.Fatal(err)
	}
	s, streams, armed, notes, err := session.Load("../render/testdata/recordings/bridge-delivered")
	if err != nil {
		t.Fatal(err)
	}
	err = o.Show(merge.Merge(s, streams), render.Header{Armed: armed, Notes: notes})
	var ec *ExitCodeError
	if err == nil || errors.As(err, &ec) || !strings.Contains(err.Error(), "--pcap "+target+": the frames were not written") {
		t.Errorf("error %v; want one saying the pcap was not written", err)
	}
	if !strings.Contains(out.String(), "verdict DELIVERED") {
		t.Errorf("the trace was not printed:\n%s", out.String())
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("written through the link: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("left in the directory: %v; want only the victim and the link", entries)
	}
}

// A --save directory whose recording cannot be completed when the trace
// ends (a symbolic link planted at session.json) costs the recording
// only: the lab's whole trace is printed, and the error says the
// recording was not written; the link's target is untouched.
func TestASaveThatCannotBeWrittenStillPrintsTheTrace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "case")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "session.json")); err != nil {
		t.Fatal(err)
	}
	r := podtrace(t, "lab", "--save", dir, "--color", "never")
	if r.code != ExitError || !strings.Contains(r.stderr, "--save "+dir+": the recording was not written") {
		t.Errorf("exit %d; want 1 and the recording named as not written:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "verdict DELIVERED") {
		t.Errorf("the trace was not printed:\n%s", r.stdout)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("written through the link: %q", b)
	}
}
