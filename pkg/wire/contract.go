package wire

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file holds what the agent and the plugin agree on besides the
// stream's lines: the control lines the plugin writes to an agent, how a
// probe is named and recognised, the reasons of a bye line, and the
// defaults both sides assume.

// Control lines the plugin writes to an agent started with --control
// stdin, one a line: a command word, then (start) a Start object as JSON
// or (probe, stop) the run token the line is meant for.
const (
	CmdStart = "start" // the reader is attached: write the stream (of a new run, with --linger)
	CmdProbe = "probe" // send the probe now
	CmdStop  = "stop"  // stop capturing, write the last lines; exit, or with --linger wait for the next run
	CmdExit  = "exit"  // end the run in progress, if any, and exit (--linger)
)

// Start is what a start line may carry. Run is echoed in every line of the
// run (Envelope.Run). Probe, Match and Deadline are the run's own (a warm
// rerun's fresh probe identity): an agent that arms after the start line
// (every run of a lingering agent but its first) captures and probes with
// them instead of its arguments'; the first run was armed from its
// arguments before the plugin attached, and keeps them.
type Start struct {
	Run      string        `json:"run,omitempty"`
	Probe    *ProbeSpec    `json:"probe,omitempty"`
	Match    *ProbeSpec    `json:"match,omitempty"`
	Deadline time.Duration `json:"deadline,omitempty"` // ns
}

// Line is the start line, without its newline.
func (s Start) Line() string {
	b, _ := json.Marshal(s)
	if string(b) == "{}" {
		return CmdStart
	}
	return CmdStart + " " + string(b)
}

// Control is one control line read by an agent.
type Control struct {
	Cmd   string // CmdStart, CmdProbe, CmdStop, CmdExit, or an unknown word
	Run   string // the run token the line names (probe, stop), or Start.Run
	Start Start  // a start line's object
}

// ParseControl reads one control line. A start line with an object that
// does not parse is an error; unknown words are returned as they are.
func ParseControl(line string) (Control, error) {
	line = strings.TrimSpace(line)
	cmd, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	c := Control{Cmd: cmd}
	switch {
	case cmd == CmdStart && rest != "":
		if err := json.Unmarshal([]byte(rest), &c.Start); err != nil {
			return c, fmt.Errorf("start line: %w", err)
		}
		if c.Start.Deadline < 0 {
			return c, fmt.Errorf("start line: negative deadline %s", c.Start.Deadline)
		}
		c.Run = c.Start.Run
	case cmd == CmdProbe || cmd == CmdStop:
		c.Run = rest
	}
	return c, nil
}

// Busy starts the error line an agent that serves runs in sequence
// (--linger) writes, under the refused run's token (Writer.EmitFor) and
// followed by a bye with reason ByeBusy, when a start line arrives while
// another run is in progress.
const Busy = "busy: serving run "

// Reasons an agent gives in its bye line (Bye.Reason).
const (
	ByeDeadline = "deadline" // its own time limit (--deadline)
	ByeSignal   = "signal"   // SIGINT, SIGTERM or SIGHUP
	ByeStopped  = "stopped"  // told to stop, or its input closed
	ByeError    = "error"    // a fatal error, written just before
	ByeBusy     = "busy"     // a start refused: another run is in progress (see Busy)
)

// ByeReasons lists every bye reason, in the order the stream's
// documentation lists them (a test holds the two together).
var ByeReasons = []string{ByeDeadline, ByeSignal, ByeStopped, ByeError, ByeBusy}

// Kinds lists every kind of line, in the order the stream's
// documentation lists them.
var Kinds = []string{KindHello, KindTopology, KindPacket, KindChange, KindProbe, KindSummary, KindNAT, KindNFTrace, KindDrop, KindStats, KindError, KindBye}

// ProbeID names the probe with the given sequence number (1-based) of a
// spec: the agent that sends it reports it under this name (Probe.ID,
// Packet.ProbeID) and the merge looks it up by the same name.
func ProbeID(spec *ProbeSpec, seq int) string {
	return spec.Proto + "/" + strconv.Itoa(seq)
}

// SourcePort is the TCP/UDP source port of probe seq of a spec: probes
// take consecutive ports from spec.ID on.
func SourcePort(spec *ProbeSpec, seq int) int { return spec.ID + seq - 1 }

// Snaplen defaults: what the kernel copies of each frame. 192 bytes hold
// Ethernet + IPv4 + TCP with options + 8 payload bytes even under VXLAN or
// Geneve outer headers; the agent hashes those 8 bytes into the
// fingerprint and, unless the payload is asked for (--payload, which
// copies whole frames), streams only the headers.
const (
	DefaultSnaplen = 192
	PayloadSnaplen = 65535
)

// Summary defaults. An agent summarizes only when told a threshold
// (--summarize-above): DefaultSummarizeAbove is the rate, in frames per
// second at one agent, above which a passive trace's agents summarize
// (agents started by hand never do unless told). At 500 a second an agent
// streams about 350 KB/s of packet lines; above it nobody reads the
// frames one by one, and the summaries cost a few KB a second whatever the
// rate. Once summarizing, an agent writes per-flow counts every
// DefaultSummaryInterval, at most DefaultSummaryRecords records each
// (about 20 KB), unless told otherwise.
const (
	DefaultSummarizeAbove  = 500
	DefaultSummaryInterval = time.Second
	DefaultSummaryRecords  = 64
)

// MaxDrops bounds the drop lines an agent writes in a run: a probe's few
// packets are dropped once each.
const MaxDrops = 64

// UnprivilegedUID is the user and group an unprivileged agent runs as
// (--unprivileged): "nobody". Numeric, because the agent image has no
// /etc/passwd and a kubelet checks runAsNonRoot against a number.
const UnprivilegedUID = 65534
