package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/agent"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// TestWatchdogEndsAnAgentWhoseOutputIsNotRead: the agent's stdout is a
// pipe (of the smallest size the kernel allows, one page) that nobody reads
// while the agent streams UDP traffic between the pods: its writes block.
// It still exits on its own after its deadline, within agent.WatchdogGrace
// (only a hang fails the test: how long after the deadline it exited is a
// figure, logged), with exit code 1 and one line on stderr; what it wrote
// before it blocked is intact, without the bye it could not write.
func TestWatchdogEndsAnAgentWhoseOutputIsNotRead(t *testing.T) {
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	const deadline = 3 * time.Second
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize())
	if err != nil {
		t.Fatalf("set the pipe's size: %v", err)
	}
	cmd := exec.Command(agentBin, "--netns", b.NetNS, "--role", "pod", "--id", "pod-b", "--hosts", a.IP+","+b.IP,
		"--deadline", deadline.String(), "--control", "none")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // the agent holds the only write end
	done := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	// 100 datagrams, 20 ms apart: each becomes a packet line of several
	// hundred bytes, far more than the pipe holds.
	sendUDP(t, a.NetNS, net.JoinHostPort(b.IP, "40321"), 100, 200)
	select {
	case <-done:
	case <-time.After(hang):
		t.Fatalf("agent still running %v after it started with a deadline of %v: the watchdog did not end it\nstderr: %s", time.Since(started).Round(time.Millisecond), deadline, stderr.String())
	}
	exited := time.Now()
	late := exited.Sub(started) - deadline
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v; want exit code 1", werr)
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "podtrace-agent: ") || !strings.Contains(msg, "exiting") {
		t.Errorf("stderr %q; want one line saying why it exits", msg)
	}
	if late < agent.WatchdogGrace {
		t.Errorf("exited %v after its deadline: before the grace of %v (was its output blocked?)", late, agent.WatchdogGrace)
	}
	// What the pipe holds: whole lines from hello on, and no bye.
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(bytes.NewReader(out))
	var kinds []string
	for {
		e, err := rd.Next()
		if err != nil {
			break
		}
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) == 0 || kinds[0] != wire.KindHello || strings.Contains(strings.Join(kinds, " "), wire.KindBye) {
		t.Errorf("the pipe holds %s; want hello first and no bye", strings.Join(kinds, " "))
	}
	t.Logf("pipe of %d bytes held %d bytes (%d lines); the agent exited %v after its %v deadline (watchdog grace %v): %s",
		size, len(out), len(kinds), late.Round(time.Millisecond), deadline, agent.WatchdogGrace, msg)
}
