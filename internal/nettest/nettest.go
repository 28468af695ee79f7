// Package nettest is shared test support: real network namespaces and links on this
// machine's kernel for the kernel tests, a ping from inside a namespace (and a
// CPU-time benchmark metric).
// Namespaces are named with a unique prefix and removed when the test
// ends, pass or fail.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips the test when not running as root, unless
// PODTRACE_REQUIRE_ROOT=1 is set (as `make test` does): then it fails, so
// that kernel tests are never silently skipped where they must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("PODTRACE_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root (network namespaces, veth, AF_PACKET); run `make test` as root")
	}
	t.Skip("needs root: network namespaces, veth and AF_PACKET")
}

// RequireTool returns the path of a program a test needs on PATH. Under
// PODTRACE_REQUIRE_ROOT=1 (as `make test` runs) a missing tool fails the
// test, like a missing privilege; elsewhere the test is skipped. hint says
// how to install it.
func RequireTool(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("PODTRACE_REQUIRE_ROOT") == "1" {
		t.Fatalf("this test needs %s on PATH (%s): %v", name, hint, err)
	}
	t.Skipf("needs %s on PATH (%s)", name, hint)
	return ""
}

// Prefix returns a short unique prefix ("pt" + 4 hex digits) for names of
// namespaces and links a test creates.
func Prefix() string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "pt" + hex.EncodeToString(b)
}

// NS creates the named network namespace (/var/run/netns/NAME), brings its
// loopback up and deletes it at cleanup. It returns the name.
func NS(t testing.TB, name string) string {
	t.Helper()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Path is the file of a named network namespace.
func Path(name string) string { return "/var/run/netns/" + name }

// In runs a command inside the named namespace and fails the test on error.
func In(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Veth creates a veth pair: name in nsA, peer in nsB ("" = current
// namespace), both up. It is removed with its namespace.
func Veth(t testing.TB, nsA, name, nsB, peer string) {
	t.Helper()
	Run(t, "ip", "link", "add", name, "type", "veth", "peer", "name", peer)
	if nsA != "" {
		Run(t, "ip", "link", "set", name, "netns", nsA)
	} else {
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	}
	if nsB != "" {
		Run(t, "ip", "link", "set", peer, "netns", nsB)
	}
	Run(t, ipIn(nsA, "link", "set", name, "up")...)
	Run(t, ipIn(nsB, "link", "set", peer, "up")...)
}

func ipIn(ns string, args ...string) []string {
	if ns == "" {
		return append([]string{"ip"}, args...)
	}
	return append([]string{"ip", "-n", ns}, args...)
}

// AgentBinary returns the podtrace-agent binary for tests: the one in
// $PODTRACE_BIN (as `make test` builds it), else one built from pkgDir
// (the cmd/podtrace-agent directory, relative to the test) into a
// temporary directory. The returned cleanup removes that directory.
func AgentBinary(pkgDir string) (path string, cleanup func(), err error) {
	if dir := os.Getenv("PODTRACE_BIN"); dir != "" {
		return filepath.Join(dir, "podtrace-agent"), func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "podtrace-agent-test")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(tmp, "podtrace-agent")
	if out, err := exec.Command("go", "build", "-o", path, pkgDir).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("build podtrace-agent: %v\n%s", err, out)
	}
	return path, func() { os.RemoveAll(tmp) }, nil
}

// BuildBinary builds the command in pkgDir (relative to the test) into a
// temporary directory and returns its path; cleanup removes the directory.
func BuildBinary(pkgDir, name string) (path string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "podtrace-"+name+"-test")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(tmp, name)
	cmd := exec.Command("go", "build", "-o", path, pkgDir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("build %s: %v\n%s", name, err, out)
	}
	return path, func() { os.RemoveAll(tmp) }, nil
}

// CPUPerOp reports the process's CPU time per op (garbage collection
// included) besides ns/op, which on a shared machine counts other
// processes' time too. Use as defer nettest.CPUPerOp(b)().
func CPUPerOp(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	c0 := cpu()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpu()-c0)/float64(b.N), "cpu-ns/op")
	}
}
