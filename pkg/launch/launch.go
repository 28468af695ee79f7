// Package launch defines how agents are started and reached: a Launcher
// starts the agent binary somewhere (a network namespace of this host, a
// pod's ephemeral container, a node pod) and hands back its observation
// stream and a control channel. Everything after that is shared.
package launch

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Spec is one agent to start.
type Spec struct {
	ID       string // unique within the session, e.g. "pod-a", "node-1"
	Role     string // wire.RolePod or wire.RoleNode
	Name     string // what it watches, for humans
	Node     string // node it runs on
	Target   string // where: a netns name or path (local), a pod or node (Kubernetes)
	Hosts    []string
	Filter   string
	Snaplen  int
	Payload  bool
	Deadline time.Duration
	Probe    *wire.ProbeSpec // set on the agent that sends the probe
	// Match scopes the capture to the probe that Hosts[0] sends to
	// Hosts[1]: set on the other agents of an active trace.
	Match *wire.ProbeSpec
	// SummarizeAbove (frames per second; 0: never) and SummaryInterval:
	// when and how often the agent writes per-flow summaries instead of
	// packet lines (passive traces).
	SummarizeAbove  int
	SummaryInterval time.Duration
	// Budget is the bytes per second the agent streams (packet and change
	// lines): 0 leaves the agent's default (wire.DefaultBudget), negative
	// means no limit.
	Budget int64
	// NFTrace asks a node agent of an active trace to trace the probe
	// through the node's nf_tables rule sets (agent --nftrace).
	NFTrace bool
	// KernelDrops loads the kernel drop reasons program in the agent
	// (node agents of an active trace; it needs CAP_BPF and CAP_PERFMON).
	KernelDrops bool
	// Unprivileged runs the agent without privilege: it captures
	// nothing and only sends Probe (a pod agent).
	Unprivileged bool
}

// Args is the agent command line for a spec (without the binary and
// without anything launcher-specific such as --netns). Every launcher runs
// the agent with these arguments; the agent's tests parse them back for
// every field (cmd/podtrace-agent, TestAgentParsesTheArgumentsLaunchersBuild).
func (s Spec) Args() []string {
	a := []string{"--role", s.Role, "--id", s.ID, "--control", "stdin",
		"--deadline", s.Deadline.Round(time.Second).String()}
	if s.Unprivileged {
		a = append(a, "--unprivileged")
	}
	if s.Name != "" {
		a = append(a, "--name", s.Name)
	}
	if s.Node != "" {
		a = append(a, "--node", s.Node)
	}
	if len(s.Hosts) > 0 {
		a = append(a, "--hosts", strings.Join(s.Hosts, ","))
	}
	if s.Filter != "" {
		a = append(a, "--filter", s.Filter)
	}
	if s.Payload {
		a = append(a, "--payload")
	} else if s.Snaplen > 0 {
		a = append(a, "--snaplen", strconv.Itoa(s.Snaplen))
	}
	if m := s.Match; m != nil && s.Probe == nil {
		a = append(a, "--trace-probe", m.Proto, "--count", strconv.Itoa(m.Count), "--probe-id", strconv.Itoa(m.ID))
		if m.Port != 0 {
			a = append(a, "--port", strconv.Itoa(m.Port))
		}
		if m.NAT {
			a = append(a, "--nat")
		}
	}
	if s.NFTrace && s.Role == wire.RoleNode && (s.Match != nil || s.Probe != nil) {
		a = append(a, "--nftrace")
	}
	if s.SummarizeAbove > 0 {
		a = append(a, "--summarize-above", strconv.Itoa(s.SummarizeAbove))
		if s.SummaryInterval > 0 {
			a = append(a, "--summary-interval", s.SummaryInterval.String())
		}
	}
	switch {
	case s.Budget > 0:
		a = append(a, "--budget", strconv.FormatInt(s.Budget, 10))
	case s.Budget < 0:
		a = append(a, "--budget", "0")
	}
	if s.KernelDrops {
		a = append(a, "--kernel-drops")
	}
	if p := s.Probe; p != nil {
		a = append(a, "--probe", p.Proto, "--dst", p.Dst, "--count", strconv.Itoa(p.Count),
			"--interval", p.Interval.String(), "--probe-timeout", p.Timeout.String(), "--probe-id", strconv.Itoa(p.ID))
		if p.Port != 0 {
			a = append(a, "--port", strconv.Itoa(p.Port))
		}
		if p.NAT {
			a = append(a, "--nat")
		}
	}
	return a
}

// Agent is a started agent.
type Agent interface {
	// Stream is the agent's observation stream; it ends when the agent
	// exits.
	Stream() io.Reader
	// Send writes one control line (wire.CmdStart, CmdProbe, CmdStop) to
	// the agent.
	Send(cmd string) error
	// Stop makes sure the agent is gone: it asks, then insists.
	Stop(ctx context.Context) error
	// Diagnostics is what the agent or its runtime said outside the
	// stream (stderr, a pod's status), for error messages.
	Diagnostics() string
}

// Launcher starts agents.
type Launcher interface {
	Start(ctx context.Context, s Spec) (Agent, error)
}

// TailBuffer keeps what an agent or its runtime wrote outside the stream
// (stderr) for error messages: safe for concurrent use, at most 64 KiB.
type TailBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.b.Len() > 64<<10 {
		return len(p), nil
	}
	return t.b.Write(p)
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
