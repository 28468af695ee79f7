package cli

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stubbornAgent is an agent that says hello and then ignores its input
// closing, SIGINT, SIGTERM and SIGHUP: stopping it takes the local
// launcher's whole escalation (seconds) before SIGKILL. It writes its PID
// to $PODTRACE_TEST_PIDS, so that the test can end it.
const stubbornAgent = `#!/bin/sh
trap '' INT TERM HUP
echo $$ >> "$PODTRACE_TEST_PIDS"
id=agent
while [ $# -gt 0 ]; do [ "$1" = --id ] && id=$2; shift; done
printf '{"v":1,"seq":1,"agent":"%s","kind":"hello","ts":"2026-01-01T00:00:00Z","hello":{"role":"pod","name":"%s","clock":"realtime"}}\n' "$id" "$id"
while :; do sleep 1; done
`

// TestSecondInterruptExitsAtOnce: the plugin is interrupted while it
// observes; it says it is tearing down, and stopping its agents takes
// seconds (they ignore being told). A second interrupt ends it at once,
// with exit code 130 and a line saying what may be left and how it goes
// away — its agents still running, as the line says. How long after the
// second interrupt it exited is a figure, logged.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	l := buildLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	dir := t.TempDir()
	agentPath, pids := filepath.Join(dir, "podtrace-agent"), filepath.Join(dir, "pids")
	if err := os.WriteFile(agentPath, []byte(stubbornAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the stubborn agents, by the PIDs they wrote
		b, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				for end := time.Now().Add(time.Minute); syscall.Kill(pid, 0) == nil && time.Now().Before(end); {
					time.Sleep(10 * time.Millisecond) // until init reaped it
				}
			}
		}
	})
	cmd := exec.Command(pluginBinary(t), "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", l.Nodes[0].NetNS,
		"--agent-binary", agentPath, "--passive", "--duration", "5m", "--timeout", "10m")
	cmd.Env = append(os.Environ(), "PODTRACE_TEST_PIDS="+pids)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	said := make(chan string, 64)
	var all []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			said <- sc.Text()
		}
		close(said)
	}()
	// waitFor reads stderr until a line holds want; "" reads to the end.
	waitFor := func(want string) string {
		t.Helper()
		timeout := time.After(2 * time.Minute)
		for {
			select {
			case l, ok := <-said:
				if !ok {
					if want == "" {
						return ""
					}
					t.Fatalf("the plugin ended without saying %q:\n%s", want, strings.Join(all, "\n"))
				}
				all = append(all, l)
				if want != "" && strings.Contains(l, want) {
					return l
				}
			case <-timeout:
				t.Fatalf("the plugin did not say %q within 2 minutes:\n%s", want, strings.Join(all, "\n"))
			}
		}
	}
	waitFor("observing for")
	_ = cmd.Process.Signal(syscall.SIGINT)
	waitFor("podtrace: interrupted: ")
	second := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	waitFor("")
	werr := cmd.Wait()
	took := time.Since(second)
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 130 {
		t.Errorf("exit: %v; want exit code 130", werr)
	}
	last := all[len(all)-1]
	if !strings.Contains(last, "interrupted again") || !strings.Contains(last, "agent processes of this run may be left") {
		t.Errorf("last line %q; want what may be left and how it goes away", last)
	}
	// The teardown ends with the launcher's SIGKILL of each stubborn
	// agent (2 s after its input closed, 2 s after SIGTERM): a plugin that
	// waited for its teardown leaves none of them alive.
	written, _ := os.ReadFile(pids)
	agents := strings.Fields(string(written))
	alive := 0
	for _, f := range agents {
		if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, 0) == nil {
			alive++
		}
	}
	if len(agents) != 3 || alive != len(agents) {
		t.Errorf("%d of %d agents alive when the plugin exited; want all 3 (it must not wait for the teardown)", alive, len(agents))
	}
	t.Logf("exited %v after the second interrupt:\n%s", took.Round(time.Millisecond), strings.Join(all, "\n"))
}
