// Package launch defines how agents are started and reached: a Launcher
// starts the agent binary somewhere (a network namespace of this host, a
// pod's ephemeral container, a node pod) and hands back its observation
// stream and a control channel. Everything after that is shared.
package launch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	// Linger keeps the agent for reruns this long after each run (agent
	// --linger), within Lifetime from its start (agent --lifetime);
	// WarmKey (Key) names it for the reruns that look for it.
	Linger   time.Duration
	Lifetime time.Duration
	WarmKey  string
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
	if s.Linger > 0 {
		a = append(a, "--linger", s.Linger.String())
		if s.Lifetime > 0 {
			a = append(a, "--lifetime", s.Lifetime.Round(time.Second).String())
		}
		if s.WarmKey != "" {
			a = append(a, "--warm-key", s.WarmKey)
		}
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

// Key names what an agent of this spec watches, whatever its probe:
// the agent's version, its image and how it runs (extra, e.g. the
// capabilities its container adds), and every argument but the probe's
// identity (--probe, --trace-probe and theirs), the deadline and the
// linger time. An agent that lingers after a run serves a rerun of the
// same key; a rerun gives each run its own probe (wire.Start). The key is
// "<version>.<hash>", at most 63 characters (a label value).
func (s Spec) Key(version string, extra ...string) string {
	k := s
	k.Probe, k.Match, k.Deadline, k.Linger, k.Lifetime, k.WarmKey = nil, nil, 0, 0, 0, ""
	h := sha256.New()
	for _, p := range append(append([]string{version}, extra...), k.Args()...) {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	// Who probes (a probe spec or a match), NAT and nftrace change what
	// the agent is; the probe's identity does not.
	fmt.Fprintf(h, "probe=%t match=%t nftrace=%t nat=%t",
		s.Probe != nil, s.Match != nil, s.NFTrace, (s.Probe != nil && s.Probe.NAT) || (s.Match != nil && s.Match.NAT))
	v := labelSafe(version)
	if len(v) > 40 {
		v = v[:40]
	}
	return v + "." + hex.EncodeToString(h.Sum(nil))[:16]
}

// KeyVersion is the version part of a warm key.
func KeyVersion(key string) string {
	v, _, _ := strings.Cut(key, ".")
	return v
}

func labelSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	out := strings.Trim(string(b), "-_")
	if out == "" {
		return "v"
	}
	return out
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
