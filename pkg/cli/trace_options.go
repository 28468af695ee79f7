package cli

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podtrace/kubectl-podtrace/pkg/filter"
	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/outfile"
	"github.com/podtrace/kubectl-podtrace/pkg/pcapng"
	"github.com/podtrace/kubectl-podtrace/pkg/render"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/explain"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Exit codes.
const (
	ExitDelivered = 0
	ExitError     = 1
	ExitLost      = 3 // the probe was not delivered (lost, partial, ARP unanswered)
)

// ExitError carries a process exit code through cobra.
type ExitCodeError struct {
	Code int
	Msg  string
}

func (e *ExitCodeError) Error() string { return e.Msg }

// TraceOptions are the probe and output flags every trace command shares.
type TraceOptions struct {
	Proto    string
	Port     int
	Count    int
	Interval time.Duration
	Wait     time.Duration
	Passive  bool
	Duration time.Duration
	Filter   string
	Payload  bool
	Snaplen  int
	Output   string
	Color    string
	Pcap     string
	Timeout  time.Duration
	Save     string
	// Explain adds a narrative of what happened to the packet after the
	// trace, each sentence citing the trace lines it rests on.
	Explain bool
	// SummarizeAbove and SummaryInterval: with --passive, an agent whose
	// capture goes over this many frames per second writes per-flow
	// summaries every interval instead of packet lines.
	SummarizeAbove  int
	SummaryInterval time.Duration
	// Budget is the bytes per second each agent may stream, as a quantity
	// ("128Ki", "1Mi"; "0": no limit).
	Budget string
	// NFTrace has the node agents trace the probe through the nodes'
	// nf_tables rule sets, to name the rule that dropped it.
	NFTrace bool
	// KernelDrops has the node agents load an eBPF program that reports
	// the kernel's reason for each of the probe's packets it drops (in a
	// cluster their pods then get CAP_BPF and CAP_PERFMON).
	KernelDrops bool
	// Watch probes again, round after round (watch.go).
	Watch WatchOptions
	// Timing prints, on stderr, when each step of the run happened.
	Timing bool

	genericiooptions.IOStreams

	// protoByDst: the destination chooses the probe's protocol and port
	// (a Service's port): --proto and --port are checked against it
	// once it is resolved, here only for their own values.
	protoByDst bool

	probe  *wire.ProbeSpec
	budget int64         // Budget in bytes per second; -1: no limit
	pcap   *outfile.File // --pcap, opened before any agent starts
	// timeline records the run's steps from the command's start (--timing
	// prints it).
	timeline *launch.Timeline
	// annotate adds evidence gathered beside the trace (the NetworkPolicy
	// model in cluster mode) before it is shown.
	annotate func(*trace.Trace)
	// lingered is told what became of the lingering agents once the run
	// stopped them (session.Options.Lingered).
	lingered func([]session.Lingering)
}

// AddFlags registers the shared flags.
func (o *TraceOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Proto, "proto", "icmp", "probe protocol: icmp (echo), tcp (a SYN: connect) or udp (one datagram)")
	f.IntVar(&o.Port, "port", 0, "destination port of a tcp or udp probe")
	f.IntVar(&o.Count, "count", 1, "number of probes")
	f.DurationVar(&o.Interval, "interval", 200*time.Millisecond, "time between probes")
	f.DurationVar(&o.Wait, "wait", time.Second, "how long to wait for each probe's answer")
	f.BoolVar(&o.Passive, "passive", false, "observe existing traffic instead of probing (see --duration, --filter)")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to observe with --passive")
	f.StringVar(&o.Filter, "filter", "", "capture filter `EXPR` in tcpdump syntax (host, net, port, portrange, tcp/udp/icmp/arp, and/or/not, parentheses); replaces the default: the probe's own frames and their address resolution, or with --passive the traffic between the two endpoints and their ARP/ICMP; on the nodes it is ANDed with the endpoints' traffic, so it never widens to other pods")
	f.BoolVar(&o.Payload, "payload", false, "keep whole frames, application payload included, in --pcap, --save and the stream (default: headers only, each frame cut after its innermost TCP/UDP/ICMP header)")
	f.IntVar(&o.Snaplen, "snaplen", 0, fmt.Sprintf("bytes the kernel copies per frame (default %d); without --payload only their headers leave the agents", wire.DefaultSnaplen))
	f.StringVarP(&o.Output, "output", "o", "text", "output format: text or json (JSON lines, the last one the verdict)")
	f.StringVar(&o.Color, "color", "auto", "color the text output: auto, always or never (auto honours NO_COLOR and TERM=dumb)")
	f.StringVar(&o.Pcap, "pcap", "", "also write every observed frame to the pcapng file `FILE` (one interface per hop; opens in Wireshark); created 0600, checked before anything is created in the cluster")
	f.DurationVar(&o.Timeout, "timeout", 60*time.Second, "give up after this long; agents exit on their own shortly after")
	f.IntVar(&o.SummarizeAbove, "summarize-above", wire.DefaultSummarizeAbove, "with --passive: an agent capturing more than this many frames per second (for a second) switches to per-flow, per-hop summaries every --summary-interval instead of one line per frame; 0: never (every frame is streamed, and may be dropped)")
	f.DurationVar(&o.SummaryInterval, "summary-interval", wire.DefaultSummaryInterval, "with --passive: how often a summarizing agent reports its per-flow counts")
	f.StringVar(&o.Budget, "budget", resource.NewQuantity(wire.DefaultBudget, resource.BinarySI).String(),
		"`BYTES` per second each agent may stream through the API server (e.g. 64Ki, 1Mi; 0: no limit); packet lines over it are cut, and the trace says how many")
	f.BoolVar(&o.NFTrace, "nftrace", true, "on the nodes, trace the probe's packets (only them) through netfilter's nf_tables rule sets (nftables, iptables-nft) to name the rule that dropped it; the tracing table is the node agent's own and goes with it (--nftrace=false: capture only)")
	f.BoolVar(&o.KernelDrops, "kernel-drops", false, "node agents report the kernel's reason and function for each of the probe's packets it drops (an eBPF program on skb:kfree_skb, IPv4, Linux 5.17+); in a cluster the node pods then get CAP_BPF and CAP_PERFMON, which the agent namespace's admission policy must allow (deploy/README.md)")
	addExplainFlag(cmd, &o.Explain)
	f.BoolVar(&o.Timing, "timing", false, "print on stderr when each step of the run happened: resolving, the preflight checks, each agent's start, attach and arm, the probe, the verdict and the teardown")
	f.StringVar(&o.Save, "save", "", "also save the run's raw observation streams in the directory `DIR` (created 0700); kubectl podtrace replay DIR shows the trace again anywhere")
	o.addCompletions(cmd)
	o.Watch.addFlags(cmd)
}

// addCompletions completes the values of the output flags and --proto.
func (o *TraceOptions) addCompletions(cmd *cobra.Command) {
	completeValues(cmd, "proto", "icmp\tICMP echo request", "tcp\tTCP SYN to --port", "udp\tone UDP datagram to --port")
	o.addOutputCompletions(cmd)
}

func (o *TraceOptions) addOutputCompletions(cmd *cobra.Command) {
	completeValues(cmd, "output", "text\tthe trace for people", "json\tJSON lines, the last one the verdict")
	completeValues(cmd, "color", "auto\tcolor on a terminal, unless NO_COLOR or TERM=dumb", "always", "never")
}

// addExplainFlag registers --explain (every trace command and replay).
func addExplainFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "explain", false, "after the trace, tell in plain words what happened to the packet, each sentence citing the numbered trace lines it rests on (-o json: a \"kind\":\"explain\" line before the verdict)")
}

// Validate checks the shared flags.
func (o *TraceOptions) Validate() error {
	if err := o.validateProbe(); err != nil {
		return err
	}
	if o.Count < 1 || o.Count > 1000 {
		return fmt.Errorf("--count %d: want 1 to 1000", o.Count)
	}
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.Passive && o.Duration <= 0 {
		return errors.New("--passive needs a positive --duration")
	}
	if o.Filter != "" {
		if _, err := filter.Compile(o.Filter, wire.DefaultSnaplen); err != nil {
			return err
		}
	}
	if err := o.parseBudget(); err != nil {
		return err
	}
	if o.KernelDrops && o.Passive {
		return errors.New("--kernel-drops follows a probe's packets: it does not apply to --passive")
	}
	// Early, creating nothing; RunPlan creates them before any agent.
	if o.Pcap != "" {
		if err := outfile.Check(o.Pcap); err != nil {
			return fmt.Errorf("--pcap: %w", err)
		}
	}
	if o.Save != "" {
		if err := outfile.CheckDir(o.Save); err != nil {
			return fmt.Errorf("--save: %w", err)
		}
	}
	if o.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if o.SummarizeAbove < 0 {
		return fmt.Errorf("--summarize-above %d: want 0 (never) or more", o.SummarizeAbove)
	}
	if o.SummaryInterval == 0 {
		o.SummaryInterval = wire.DefaultSummaryInterval
	}
	if o.SummaryInterval < 100*time.Millisecond {
		return fmt.Errorf("--summary-interval %s: want at least 100ms", o.SummaryInterval)
	}
	if o.Passive && o.Duration+10*time.Second > o.Timeout {
		o.Timeout = o.Duration + 30*time.Second
	}
	return o.validateWatch()
}

func (o *TraceOptions) validateProbe() error {
	switch o.Proto {
	case "icmp":
		if o.Port != 0 && !o.protoByDst {
			return errors.New("--port applies to --proto tcp or udp, not icmp")
		}
	case "tcp", "udp":
		if (o.Port <= 0 && !o.protoByDst) || o.Port > 65535 {
			return fmt.Errorf("--proto %s needs --port between 1 and 65535", o.Proto)
		}
	default:
		return fmt.Errorf("--proto %q: want icmp, tcp or udp", o.Proto)
	}
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("--port %d: want 1 to 65535", o.Port)
	}
	return nil
}

// minBudget is the smallest budget accepted: below it not even the lines
// of one probe's hops would pass.
const minBudget = 4 << 10

func (o *TraceOptions) parseBudget() error {
	if o.Budget == "" {
		o.budget = wire.DefaultBudget
		return nil
	}
	q, err := resource.ParseQuantity(o.Budget)
	if err != nil {
		return fmt.Errorf("--budget %q: want bytes per second such as 128Ki or 1Mi, or 0 for no limit", o.Budget)
	}
	n, ok := q.AsInt64()
	switch {
	case !ok || n < 0:
		return fmt.Errorf("--budget %q: want bytes per second such as 128Ki or 1Mi, or 0 for no limit", o.Budget)
	case n == 0:
		o.budget = -1
	case n < minBudget:
		return fmt.Errorf("--budget %q is below %d bytes per second, too little for one probe's hops: raise it, or 0 for no limit", o.Budget, minBudget)
	default:
		o.budget = n
	}
	return nil
}

func (o *TraceOptions) validateOutput() error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("--output %q: want text or json", o.Output)
	}
	_, err := render.UseColor(o.Color, o.Out)
	return err
}

// ProbeSpec is the probe to send to dst, nil when passive. It is chosen
// once per run: every plan of the run names the same probe.
func (o *TraceOptions) ProbeSpec(dst string) *wire.ProbeSpec {
	if o.Passive {
		return nil
	}
	if o.probe != nil && o.probe.Dst == dst {
		return o.probe
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	// Source ports / ICMP ids from 33000 up: recognisable, clear of the
	// usual ephemeral range's busiest part.
	id := 33000 + int(binary.BigEndian.Uint16(b[:]))%20000
	o.probe = &wire.ProbeSpec{Proto: o.Proto, Dst: dst, Port: o.Port, Count: o.Count, Interval: o.Interval, Timeout: o.Wait, ID: id}
	return o.probe
}

// AgentDeadline is how long agents live: the run's timeout plus a margin,
// so that they outlive a slow plugin but never a dead one for long.
func (o *TraceOptions) AgentDeadline() time.Duration { return o.Timeout + 15*time.Second }

// Apply copies capture options into an agent spec. In an active trace
// every agent's capture is scoped to the run's probe (see ProbeSpec, which
// a plan calls before it adds agents), unless --filter replaces it.
func (o *TraceOptions) Apply(s *launch.Spec) {
	s.Filter, s.Payload, s.Snaplen, s.Deadline = o.Filter, o.Payload, o.Snaplen, o.AgentDeadline()
	if !o.Passive && o.probe != nil {
		s.Match = o.probe
	}
	// Only a passive trace summarizes: an active one needs every frame of
	// its probe (its filter keeps the rest out).
	if o.Passive {
		s.SummarizeAbove, s.SummaryInterval = o.SummarizeAbove, o.SummaryInterval
	}
	if o.budget == 0 {
		_ = o.parseBudget() // options not validated (tests): the flag's default
	}
	s.Budget = o.budget
	s.NFTrace = o.NFTrace && !o.Passive
	s.KernelDrops = o.KernelDrops && !o.Passive && s.Role == wire.RoleNode
}

// RunPlan runs a plan and prints the result; the error carries the exit
// code.
func (o *TraceOptions) RunPlan(ctx context.Context, l launch.Launcher, p session.Plan, notes []string) error {
	if o.Watch.On {
		return o.runWatch(ctx, l, p, notes)
	}
	// The output files first: a path that cannot be written must not cost
	// a trace, nor leave agents in pods for nothing.
	unsaved, err := o.openOutputs()
	if err != nil {
		return err
	}
	defer o.pcap.Abort() // nothing when written
	saved := false
	defer func() {
		if !saved {
			unsaved()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p.Passive, p.Duration = o.Passive, o.Duration
	// The trace is shown as soon as every stream ended, before the agents'
	// pods are deleted: the teardown runs with the verdict on screen.
	var saveErr error
	shown := false
	show := func(res *session.Result) error {
		shown = true
		// A file that cannot be written now costs that file, not the
		// trace: the trace is still shown, then the error says what was
		// not written.
		if o.Save != "" {
			if err := session.Save(o.Save, p.Session, res, notes); err != nil {
				saveErr = fmt.Errorf("--save %s: the recording was not written: %w", o.Save, err)
			} else {
				saved = true
				fmt.Fprintf(o.ErrOut, "podtrace: saved the observation streams in %s (replay with `kubectl podtrace replay %s`)\n", o.Save, o.Save)
			}
		}
		if o.annotate != nil {
			o.annotate(res.Trace)
		}
		return o.Show(res.Trace, render.Header{Armed: res.Armed, Notes: notes})
	}
	_, err = session.Run(ctx, l, p, session.Options{Progress: o.ErrOut, Timeline: o.timeline, Show: show, Lingered: o.lingered})
	if !shown {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("gave up after --timeout %s: %w", o.Timeout, err)
		}
		return err
	}
	if saveErr == nil {
		return err
	}
	var ec *ExitCodeError
	if err != nil && !errors.As(err, &ec) {
		return fmt.Errorf("%w; %w", saveErr, err)
	}
	return saveErr
}

// startTimeline starts the run's timeline: the command's start.
func (o *TraceOptions) startTimeline() { o.timeline = launch.NewTimeline() }

// printTiming prints the timeline with --timing.
func (o *TraceOptions) printTiming() {
	if o.Timing {
		o.timeline.Write(o.ErrOut)
	}
}

// openOutputs checks --save and opens --pcap, before anything is started:
// the --save directory is created (0700) when missing, and unsaved
// removes it again if the run saved nothing into it; the pcapng file is
// written beside its name and put in place when complete (package
// outfile).
func (o *TraceOptions) openOutputs() (unsaved func(), err error) {
	unsaved = func() {}
	if o.Save != "" {
		created, err := outfile.Dir(o.Save)
		if err != nil {
			return unsaved, fmt.Errorf("--save: %w", err)
		}
		if created {
			dir := o.Save
			unsaved = func() { _ = os.Remove(dir) } // removes it only while empty
		}
	}
	if o.Pcap != "" && o.pcap == nil {
		f, err := outfile.Create(o.Pcap)
		if err != nil {
			unsaved()
			return func() {}, fmt.Errorf("--pcap: %w", err)
		}
		o.pcap = f
	}
	return unsaved, nil
}

// Show writes the trace in the chosen formats; the error carries the exit
// code. The trace is printed first: a --pcap file that cannot be written
// is reported after it, as the run's error.
func (o *TraceOptions) Show(t *trace.Trace, h render.Header) error {
	if o.Explain {
		h.Explain = explain.Build(t)
	}
	var err error
	if o.Output == "json" {
		err = render.JSON(o.Out, t, h)
	} else {
		on, _ := render.UseColor(o.Color, o.Out)
		err = render.Text(o.Out, t, h, on)
	}
	if perr := o.writePcap(t); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	switch t.Verdict.Result {
	case "delivered", "observed":
		return nil
	}
	return &ExitCodeError{Code: ExitLost, Msg: "probe not delivered: " + t.Verdict.Result}
}

// writePcap writes --pcap, into the file opened before the run when there
// is one.
func (o *TraceOptions) writePcap(t *trace.Trace) error {
	if o.Pcap == "" {
		return nil
	}
	notWritten := func(err error) error {
		return fmt.Errorf("--pcap %s: the frames were not written (the trace above is complete): %w", o.Pcap, err)
	}
	if o.pcap == nil {
		f, err := outfile.Create(o.Pcap)
		if err != nil {
			return notWritten(err)
		}
		o.pcap = f
	}
	f := o.pcap
	o.pcap = nil
	n, werr := pcapng.Write(f, t)
	if werr == nil {
		werr = f.Commit()
	} else {
		f.Abort()
	}
	if werr != nil {
		return notWritten(werr)
	}
	fmt.Fprintf(o.ErrOut, "podtrace: wrote %d frames to %s\n", n, o.Pcap)
	if len(t.Summarized) > 0 {
		var frames uint64
		for _, sm := range t.Summarized {
			frames += sm.Packets
		}
		fmt.Fprintf(o.ErrOut, "podtrace: %d more frames were summarized by the agents (counts per flow, not frames): a pcapng file cannot hold them; they are in the trace's flows\n", frames)
	}
	return nil
}
