// Package local launches agents as processes inside network namespaces of
// this host: the lab, `kubectl podtrace local`, and the integration tests.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// AgentBinaryName is the agent executable's name.
const AgentBinaryName = "podtrace-agent"

// FindAgent locates the agent binary: the explicit path if given, else
// next to the running executable (links resolved: krew puts a link to the
// plugin in its bin directory, and the agent stays in the plugin's own
// directory beside it), else on PATH.
func FindAgent(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("--agent-binary %q: %w", explicit, err)
		}
		return explicit, nil
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		p := filepath.Join(filepath.Dir(exe), AgentBinaryName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(AgentBinaryName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("agent binary %q not found next to this executable or on PATH: it ships beside the plugin in the Linux release archives (krew installs it there); build it with `make build`, or pass --agent-binary", AgentBinaryName)
}

// Launcher starts agents as local processes.
type Launcher struct {
	Binary string
}

// Start runs the agent in the network namespace s.Target (a name under
// /var/run/netns or a path; "" = this process's namespace).
func (l *Launcher) Start(ctx context.Context, s launch.Spec) (launch.Agent, error) {
	args := s.Args()
	if s.Target != "" {
		args = append([]string{"--netns", s.Target}, args...)
	}
	cmd := exec.Command(l.Binary, args...)
	// Own process group: a Ctrl-C on the terminal reaches the plugin,
	// which then stops its agents in order. No Pdeathsig: it fires when the
	// forking *thread* exits, and Go retires threads (any goroutine that
	// locks one for a namespace and ends takes it along), which killed
	// healthy agents. If the plugin dies, the agent's stdin closes and it
	// stops; its deadline bounds it in any case.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.Unprivileged {
		// As a pod's unprivileged agent runs: uid and gid
		// wire.UnprivilegedUID, no supplementary group, no capability
		// (setuid away from root clears them), in the namespace it
		// cannot enter itself.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: wire.UnprivilegedUID, Gid: wire.UnprivilegedUID}
		cmd.Args = append([]string{l.Binary}, s.Args()...)
	}
	a := &agent{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &a.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe, not StdoutPipe: Wait must not close the read end
	// while the stream is still being read.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	a.stdin, a.stdout = stdin, pr
	if s.Unprivileged && s.Target != "" {
		err = startIn(cmd, s.Target)
	} else {
		err = cmd.Start()
	}
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start agent %s: %w", s.ID, err)
	}
	go func() { a.waitErr = cmd.Wait(); close(a.done) }()
	return a, nil
}

// startIn starts cmd inside a network namespace (a name under
// /var/run/netns or a path): forked from a thread that entered it, so the
// child is born there and needs no privilege to get in. The thread is
// never handed back (its namespace changed): it ends with its goroutine.
func startIn(cmd *exec.Cmd, ns string) error {
	path := ns
	if !strings.Contains(ns, "/") {
		path = "/var/run/netns/" + ns
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %q: %w", path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %q: %w", path, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

type agent struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  io.Reader
	stderr  launch.TailBuffer
	mu      sync.Mutex
	done    chan struct{}
	waitErr error
}

func (a *agent) Stream() io.Reader { return a.stdout }

func (a *agent) Send(cmd string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := io.WriteString(a.stdin, cmd+"\n")
	return err
}

// Stop closes the agent's input (it stops and says bye), then sends
// SIGTERM, then SIGKILL, each after a grace period bounded by ctx.
func (a *agent) Stop(ctx context.Context) error {
	a.mu.Lock()
	_ = a.stdin.Close()
	a.mu.Unlock()
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 && a.cmd.Process != nil {
			_ = a.cmd.Process.Signal(sig)
		}
		select {
		case <-a.done:
			return nil
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			_ = a.cmd.Process.Kill()
			<-a.done
			return ctx.Err()
		}
	}
	<-a.done
	return errors.New("agent did not exit")
}

func (a *agent) Diagnostics() string {
	s := strings.TrimSpace(a.stderr.String())
	select {
	case <-a.done:
		if a.waitErr != nil {
			s = strings.TrimSpace(s + " (" + a.waitErr.Error() + ")")
		}
	default:
	}
	return s
}
