// Package agent is the capture agent: it watches the network namespace it
// runs in — every interface through one AF_PACKET ring with a kernel BPF
// filter, plus netlink snapshots and live neighbour/FDB changes — and writes
// the observation stream (package wire) to its output. The source-side
// agent also sends the probe. The agent never changes the network state it
// observes (promiscuous mode on bridges is held by the capture socket and
// reverted by the kernel when it closes), and it exits on its own at its
// deadline.
package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/capture"
	"github.com/podtrace/kubectl-podtrace/pkg/decode"
	"github.com/podtrace/kubectl-podtrace/pkg/filter"
	"github.com/podtrace/kubectl-podtrace/pkg/netsnap"
	"github.com/podtrace/kubectl-podtrace/pkg/probe"
	"github.com/podtrace/kubectl-podtrace/pkg/scope"
	"github.com/podtrace/kubectl-podtrace/pkg/version"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// maxHeld bounds the lines kept in memory until the plugin attaches.
const maxHeld = 16 << 20

// Config is what the agent is asked to do. The command line maps onto it
// one to one (cmd/podtrace-agent).
type Config struct {
	ID      string   // agent id in the stream (e.g. "pod-a", "node-1")
	Role    string   // wire.RolePod or wire.RoleNode
	Name    string   // what it watches, for humans ("default/pod-a", "node-1")
	Node    string   // node name
	NetNS   string   // the namespace it was started in, for humans
	Hosts   []string // IPs of the traced pods: the default capture filter
	Filter  string   // tcpdump expression; replaces the default filter (a node agent's is ANDed with Hosts)
	Snaplen int
	// Payload keeps whole frames in the stream (up to Snaplen). Without
	// it the agent keeps only the headers of each frame: the transport
	// payload never leaves it (decode.Decoder.HeadersOnly).
	Payload  bool
	Promisc  bool          // put bridges in promiscuous mode to see bridged unicast
	Deadline time.Duration // hard limit on the run
	// Probe is the probe this agent sends (the source pod's agent).
	Probe *wire.ProbeSpec
	// Match scopes the kernel filter to a probe that Hosts[0] sends to
	// Hosts[1] (package scope): every agent of an active trace has it.
	// Without it the agent that sends the probe scopes to its own probe.
	Match *wire.ProbeSpec
	// Control "stdin" reads commands from Stdin and writes nothing until
	// the first line arrives ("start"): "probe" starts the probe, "stop"
	// or end of input stops the agent. "none" starts the probe (if
	// any) right after hello and runs until the deadline or a signal.
	Control string
	Stdin   io.Reader
	Out     io.Writer
	// SummarizeAbove is the capture rate, in frames per second sustained
	// for a second, above which the agent stops writing packet lines and
	// writes per-flow summaries every SummaryInterval, of at most
	// SummaryRecords records; 0 never summarizes.
	SummarizeAbove  int
	SummaryInterval time.Duration
	SummaryRecords  int
	// Budget is the bytes per second of packet and change lines the agent
	// streams (wire.DefaultBudget when zero, no limit when negative);
	// lines over it are cut and counted in the stats line.
	Budget int64
	// NFTrace traces the probe's packets through the namespace's nf_tables
	// rule sets and reports the verdicts they meet (node agents of an
	// active trace; package nftrace).
	NFTrace bool
	// KernelDrops loads the kernel drop reasons program (package kdrop)
	// for the probe: drop lines name the kernel's reason for each of the
	// probe's packets it dropped. It needs CAP_BPF and CAP_PERFMON.
	KernelDrops bool
	// Unprivileged runs the agent without privilege (no capability, a
	// non-root uid, as PodSecurity baseline and restricted admit it): it
	// captures nothing and opens no netlink socket; it sends the probe
	// (ICMP through an unprivileged ping socket) and reports its outcome.
	Unprivileged bool
	// Linger, when positive, keeps the agent for more runs (--linger): after
	// a run it closes its capture and waits this long for the next start
	// line on Stdin, which may carry the run's own probe (wire.Start); each
	// run's stream starts afresh with hello. It needs Control "stdin".
	Linger time.Duration
	// Lifetime bounds a lingering agent's whole life from its start,
	// whatever its runs (Deadline + Linger when zero).
	Lifetime time.Duration
	// WarmKey names what a lingering agent watches, for the plugin that
	// looks for it (in its container's arguments); the agent only echoes
	// it in hello.
	WarmKey string
	// Watchdog, when set, is called if Run has not returned
	// WatchdogGrace after its run ended (deadline, stop or signal): a
	// write to an output nobody reads blocks forever, and the process
	// must end anyway (cmd/podtrace-agent exits).
	Watchdog func()
}

// WatchdogGrace is how long the agent may take, once its run ended, to
// drain its ring and write its last lines (stats, topology, bye): a
// fraction of a second unless its output is blocked, a few seconds when a
// backlog goes out through a slow API server stream (the plugin waits 10 s
// for the bye).
const WatchdogGrace = 5 * time.Second

// Why the agent stopped.
var (
	errStopped = errors.New("stopped")
)

// Run runs the agent until its deadline, a stop command, or ctx is done;
// with Linger, it serves runs one after another (serve).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Deadline <= 0 {
		return errors.New("agent: a deadline is required")
	}
	if cfg.Snaplen <= 0 {
		cfg.Snaplen = wire.DefaultSnaplen
	}
	for _, h := range cfg.Hosts {
		if net.ParseIP(h) == nil {
			return fmt.Errorf("agent: %q is not an IP address", h)
		}
	}
	if cfg.Linger > 0 {
		return serve(ctx, cfg)
	}
	var in *controlIn
	if cfg.Control == "stdin" && cfg.Stdin != nil {
		in = readControl(cfg.Stdin)
	}
	_, err := runOnce(ctx, cfg, in, nil)
	return err
}

// lingerCap is the end of a lingering agent's life (its context's
// deadline, set by serve), or zero.
func lingerCap(ctx context.Context, cfg Config) time.Time {
	if cfg.Linger <= 0 {
		return time.Time{}
	}
	d, _ := ctx.Value(lifeKey{}).(time.Time)
	return d
}

type lifeKey struct{}

// serve runs the agent's runs one after another (Config.Linger): the
// first armed from its arguments, each later one after its start line,
// with that line's probe. Between runs it holds no capture and waits up
// to Linger for the next start line; it exits then, on an exit line, at
// the end of its input, on a signal, and at the end of its Lifetime
// whatever it is doing.
func serve(ctx context.Context, cfg Config) error {
	if cfg.Control != "stdin" || cfg.Stdin == nil {
		return errors.New("agent: --linger needs --control stdin: runs after the first start on a control line")
	}
	life := cfg.Lifetime
	if life <= 0 {
		life = cfg.Deadline + cfg.Linger
	}
	end := time.Now().Add(life)
	ctx, cancel := context.WithDeadlineCause(ctx, end, context.DeadlineExceeded)
	defer cancel()
	ctx = context.WithValue(ctx, lifeKey{}, end)
	in := readControl(cfg.Stdin)
	var pre *wire.Start
	for {
		rcfg := cfg
		if pre != nil {
			var err error
			if rcfg, err = withStart(cfg, *pre); err != nil {
				w := wire.NewWriter(cfg.Out, cfg.ID)
				w.SetRun(pre.Run)
				_ = w.Emit(&wire.Error{Msg: err.Error(), Fatal: true})
				_ = w.Emit(&wire.Bye{Reason: wire.ByeError})
				rcfg = cfg
				pre = nil
				goto idle
			}
		}
		{
			out, err := runOnce(ctx, rcfg, in, pre)
			if err != nil && pre == nil {
				return err // the first run could not arm: as an agent that serves one run
			}
			if out.exit || out.eof || ctx.Err() != nil {
				return nil
			}
		}
	idle:
		pre = nil
		ictx, icancel := context.WithTimeout(ctx, cfg.Linger)
		for pre == nil {
			line, ok, err := in.next(ictx)
			if err != nil || !ok {
				icancel()
				return nil // lingered long enough, lifetime over, signal, or input gone
			}
			cl, perr := wire.ParseControl(line)
			switch {
			case perr != nil:
			case cl.Cmd == wire.CmdExit:
				icancel()
				return nil
			case cl.Cmd == wire.CmdStart:
				st := cl.Start
				pre = &st
			}
		}
		icancel()
	}
}

// withStart is the configuration of a later run: the start line's probe
// (this agent sends it) or match (another agent sends it) and deadline
// instead of the arguments'.
func withStart(cfg Config, st wire.Start) (Config, error) {
	if st.Probe != nil && st.Match != nil {
		return cfg, errors.New("start line: probe and match exclude each other")
	}
	for _, p := range []*wire.ProbeSpec{st.Probe, st.Match} {
		if p == nil {
			continue
		}
		if p.Proto != "icmp" && p.Proto != "tcp" && p.Proto != "udp" {
			return cfg, fmt.Errorf("start line: probe protocol %q: want icmp, tcp or udp", p.Proto)
		}
		if p == st.Probe && net.ParseIP(p.Dst) == nil {
			return cfg, fmt.Errorf("start line: probe destination %q is not an IP address", p.Dst)
		}
		if p.Count < 1 || p.Count > 1000 || p.ID <= 0 || p.ID > 65535 || (p.Proto != "icmp" && (p.Port <= 0 || p.Port > 65535)) {
			return cfg, fmt.Errorf("start line: probe count %d, id %d, port %d: out of range", p.Count, p.ID, p.Port)
		}
	}
	switch {
	case st.Probe != nil && (cfg.Role != wire.RolePod || cfg.Match != nil):
		return cfg, errors.New("start line: a probe for an agent that does not send the probe")
	case st.Match != nil && (cfg.Unprivileged || cfg.Probe != nil):
		return cfg, errors.New("start line: a match for the agent that sends the probe")
	}
	if st.Probe != nil {
		cfg.Probe = st.Probe
	}
	if st.Match != nil {
		if len(cfg.Hosts) < 2 {
			return cfg, errors.New("start line: a match needs the agent's --hosts")
		}
		m := *st.Match
		m.Dst = cfg.Hosts[1]
		cfg.Match = &m
	}
	if st.Deadline > 0 {
		cfg.Deadline = st.Deadline
	}
	return cfg, nil
}

// runEnd is how a run ended, for a lingering agent: told to exit, or its
// input ended (nobody can start another run).
type runEnd struct{ exit, eof bool }

// runOnce is one run: arm, hello, probe and capture until stopped, bye.
// With control lines (in), it writes nothing until the start line (or,
// when pre is set, the start line read already: a lingering agent's next
// run), and tags every line with the start line's run token.
func runOnce(ctx context.Context, cfg Config, in *controlIn, pre *wire.Start) (runEnd, error) {
	var end runEnd
	err := runWith(ctx, cfg, in, pre, &end)
	return end, err
}

func runWith(ctx context.Context, cfg Config, in *controlIn, pre *wire.Start, end *runEnd) error {
	deadline := time.Now().Add(cfg.Deadline)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d // a lingering agent's lifetime
	}
	ctx, cancel := context.WithDeadlineCause(ctx, deadline, context.DeadlineExceeded)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if cfg.Watchdog != nil {
		returned := make(chan struct{})
		defer close(returned)
		context.AfterFunc(ctx, func() {
			t := time.NewTimer(WatchdogGrace)
			defer t.Stop()
			select {
			case <-t.C:
				cfg.Watchdog()
			case <-returned:
			}
		})
	}

	w := wire.NewWriter(cfg.Out, cfg.ID)
	switch {
	case cfg.Budget == 0:
		w.SetBudget(wire.DefaultBudget)
	case cfg.Budget > 0:
		w.SetBudget(cfg.Budget)
	}
	if in != nil {
		// The reader may attach after the agent started (a container's
		// stdout through the API server): keep everything until it says
		// it is there with its first line.
		w.Hold(maxHeld)
	}
	ctl := &runControl{in: in, end: end, linger: cfg.Linger > 0, done: make(chan struct{})}
	defer func() {
		if ctl.reading {
			<-ctl.done // the next run reads the lines after this one's
		}
	}()
	if pre != nil {
		ctl.token = pre.Run
		w.SetRun(pre.Run)
		_ = w.Release()
		ctl.started = true
	}
	fatal := func(err error) error {
		_ = w.Emit(&wire.Error{Msg: err.Error(), Fatal: true})
		_ = w.Emit(&wire.Bye{Reason: wire.ByeError})
		return err
	}
	if cfg.Unprivileged {
		return runUnprivileged(ctx, stop, cfg, w, deadline, ctl)
	}

	links, err := netsnap.Links()
	if err != nil {
		return fatal(fmt.Errorf("list links: %w", err))
	}
	expr, scopeWarning, err := captureFilter(cfg)
	if err != nil {
		return fatal(err)
	}
	prog, err := filter.Assemble(expr, cfg.Snaplen)
	if err != nil {
		return fatal(err)
	}
	var promisc []int
	var promiscNames []string
	var promiscWarning string
	if _, src, _, nat := natSpec(cfg); nat && cfg.Promisc && bridgedDNAT(src.Is6()) {
		// Measured: with br_netfilter, a frame that a DNAT sends back out
		// of the bridge it came in on is bridged to the endpoint and, on
		// a promiscuous bridge, also passed up and routed: the endpoint
		// receives it twice. A probe that may be translated must not
		// change what it observes.
		cfg.Promisc = false
		promiscWarning = "bridges are not held in promiscuous mode (with br_netfilter and NAT rules here, a promiscuous bridge delivers a DNATed frame twice): frames a bridge forwards between its ports are seen at the ports only"
	}
	if cfg.Promisc {
		if what := bridgedQueue(); what != "" {
			// Measured: a promiscuous bridge clones each frame it
			// forwards (one copy passed up, one forwarded), and the
			// clones share the connection's conntrack entry, unconfirmed
			// until the packet leaves; the kernel drops such a packet
			// when a rule queues it to userspace (nf_ct_drop_unconfirmed
			// in nfnetlink_queue), before the program reading the queue
			// sees it. With a policy engine that queues new connections
			// (kube-network-policies), the trace would drop the probe
			// the engine admits.
			cfg.Promisc = false
			promiscWarning = "bridges are not held in promiscuous mode (" + what +
				": a promiscuous bridge clones the frames it forwards, and the kernel drops a queued packet whose new connection a clone shares): frames a bridge forwards between its ports are seen at the ports only"
		}
	}
	if cfg.Promisc {
		for _, l := range links {
			if l.Kind == "bridge" {
				promisc = append(promisc, l.Index)
				promiscNames = append(promiscNames, l.Name)
			}
		}
	}

	// Live neighbour / FDB / link changes, armed before capture so that
	// nothing the probe triggers is missed.
	var names ifNames
	names.set(links)
	// Hello is the first line of the stream: what comes before it (live
	// changes, the "before" snapshot) is held back until it is out.
	var early heldLines
	ready, err := netsnap.Watch(ctx, func(c wire.Change) {
		if c.Link != nil {
			names.add(c.Link.Index, c.Link.Name)
		}
		early.emit(w, &c)
	})
	if err != nil {
		return fatal(fmt.Errorf("watch neighbour and FDB changes: %w", err))
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return fatal(errors.New("netlink subscription did not become ready"))
	}

	// Conntrack events of the probe's connections, followed from before
	// the probe leaves (node agents of a probe that may be translated).
	var ctw *netsnap.ConntrackWatch
	var ctWarning string
	if _, src, _, ok := natSpec(cfg); ok {
		if ctw, err = netsnap.WatchConntrack(ctx, src); err != nil {
			ctWarning = err.Error() + ": translations are looked up at the end of the run, and one the kernel dropped already is missed"
		} else {
			defer ctw.Close()
		}
	}

	// Netfilter tracing of the probe, armed before hello like the capture.
	nft, nftStatus := startNFTrace(cfg)
	if nft != nil {
		defer nft.Close()
	}

	h, err := capture.Open(capture.Config{Filter: prog, Snaplen: cfg.Snaplen, Promisc: promisc})
	if err != nil {
		return fatal(err)
	}
	defer h.Close()

	if topo, err := netsnap.Take("before"); err != nil {
		early.emit(w, &wire.Error{Msg: "topology snapshot: " + err.Error()})
	} else {
		early.emit(w, topo)
	}

	for i := range links {
		links[i].Captured = links[i].State != "down" || links[i].Kind == "bridge"
	}
	inode, _ := netsnap.NetNSInode()
	host, _ := os.Hostname()
	hello := &wire.Hello{
		Role: cfg.Role, Node: cfg.Node, Name: cfg.Name, NetNS: cfg.NetNS, NetNSID: inode,
		Hostname: host, Version: version.Version, PID: os.Getpid(),
		Filter: expr, Snaplen: cfg.Snaplen, Promisc: promiscNames, Deadline: deadline,
		Links: links, Caps: effectiveCaps(), Probe: cfg.Probe, Clock: "realtime", NFTrace: nftStatus,
	}
	if scopeWarning != "" {
		hello.Warnings = append(hello.Warnings, scopeWarning)
	}
	if promiscWarning != "" {
		hello.Warnings = append(hello.Warnings, promiscWarning)
	}
	if ctWarning != "" {
		hello.Warnings = append(hello.Warnings, ctWarning)
	}
	var kd *kernelDrops
	if cfg.KernelDrops {
		kd, hello.KernelDrops = armKernelDrops(cfg, func(p any) { early.emit(w, p) })
		defer kd.close() // an early return; after a run it is closed already
	}
	sum := newSummarizer(cfg.SummarizeAbove, cfg.SummaryInterval, cfg.SummaryRecords, &names, h.Stats)
	if sum != nil {
		hello.SummarizeAbove, hello.SummaryInterval = sum.above, sum.every
	}
	for _, l := range links {
		for _, a := range l.Addrs {
			hello.Addresses = append(hello.Addresses, wire.Address{Index: l.Index, CIDR: a})
		}
	}
	if !ctl.awaitStart(ctx, stop, w) {
		hello.Warnings = append(hello.Warnings, "stopped before a start line") // held: never written
	}
	hello.Linger, hello.LingerCap = cfg.Linger, lingerCap(ctx, cfg)
	if err := early.release(w, hello); err != nil {
		return err // nobody is listening
	}

	// Capture loop.
	var capWG sync.WaitGroup
	var emitted, unreported, cutPackets uint64
	// Once told to stop, the agent reports what the kernel captured before
	// the stop, and nothing after it (see drain).
	var dr drain
	stopDrainTimer := context.AfterFunc(ctx, func() {
		dr.stop(time.Now())
		h.Wake() // a read waiting for a block sees the stop at once
	})
	defer stopDrainTimer()
	var before int // frames of the current read captured before the stop
	capWG.Add(1)
	go func() {
		defer capWG.Done()
		dec := decode.New()
		// Each packet is written out before the next is decoded, and
		// before its ring block goes back to the kernel: decode in place.
		dec.Reuse = true
		dec.HeadersOnly = !cfg.Payload
		fn := func(f capture.Frame) {
			if !dr.report(f.TS) {
				unreported++
				return
			}
			before++
			if sum != nil && sum.take(f) {
				return // counted in a summary
			}
			p := dec.Decode(decode.Input{TS: f.TS, Ifindex: f.Ifindex, Iface: names.get(f.Ifindex),
				PktType: f.PktType, Len: f.Len, VLAN: f.VLAN, Data: f.Data})
			switch err := w.Emit(p); {
			case err == nil:
				emitted++
			case errors.Is(err, wire.ErrOverBudget):
				cutPackets++
			}
		}
		lastFlush := time.Now()
		for {
			before = 0
			n, err := h.Read(20*time.Millisecond, fn)
			if err != nil {
				if !errors.Is(err, capture.ErrClosed) {
					_ = w.Emit(&wire.Error{Msg: "capture: " + err.Error()})
				}
				return
			}
			if n == 0 || time.Since(lastFlush) > 50*time.Millisecond {
				_ = w.Flush()
				lastFlush = time.Now()
			}
			if sum != nil {
				sum.tick(time.Now(), w)
			}
			// Drained (every frame up to the stop read), caught up with
			// the stop under steady traffic, or out of drain time.
			if dr.done(n, before, h.DrainedBy) {
				return
			}
		}
	}()

	// Probe and control.
	ctl.control(ctx, stop, cfg, w)

	<-ctx.Done()
	reason := byeReason(ctx)
	// The "after" snapshot is taken while the ring drains and the trace
	// events are collected, not after: on a node with many pods its dumps
	// take a while, and the plugin waits for the bye before its verdict.
	after := make(chan *wire.Topology, 1)
	go func() {
		topo, err := netsnap.Take("after")
		if err != nil {
			topo = nil
		}
		after <- topo
	}()
	// The trace events wait in their socket: collect them while the ring
	// drains.
	nftEvents := collectNFTrace(nft)
	// Let the ring retire its last partly filled block, then stop reading.
	capWG.Wait()
	var summarized, summarizedBytes uint64
	if sum != nil {
		sum.flush(time.Now(), w) // the last, partial interval
		summarized, summarizedBytes = sum.packets, sum.bytes
	}
	reportNAT(cfg, w, ctw)
	nftStats := reportNFTrace(cfg, w, nftEvents, &names)
	dropCounts := kd.close()
	// The capture sockets close after the bye (deferred): closing a ring
	// waits for the kernel's RCU grace period, which the plugin, waiting
	// for the bye, need not.
	st, err := h.Stats()
	if err == nil {
		cutLines, cutBytes := w.Cut()
		_ = w.Emit(&wire.Stats{Socket: "all", Packets: st.Packets, Drops: st.Drops, Freezes: st.Freezes, Emitted: emitted, Filtered: unreported,
			Summarized: summarized, SummarizedBytes: summarizedBytes, Budget: w.Budget(), CutLines: cutLines, CutBytes: cutBytes, CutPackets: cutPackets,
			NFTraceEvents: nftStats.Events, NFTraceOther: nftStats.Other, NFTraceCut: nftStats.Cut, NFTraceOverrun: nftStats.Overrun,
			KernelDrops: dropCounts})
	}
	if topo := <-after; topo != nil {
		_ = w.Emit(topo)
	}
	_ = w.Emit(&wire.Bye{Reason: reason})
	return nil
}

// controlIn is the agent's input of control lines, read by one goroutine
// for the agent's life; runs take lines from it one after another.
type controlIn struct {
	lines chan string // closed at the end of input
	mu    sync.Mutex
	back  []string // lines a run that ended left for the next reader
}

func readControl(r io.Reader) *controlIn {
	c := &controlIn{lines: make(chan string, 16)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c
}

// next returns the next line; ok is false at the end of input; err is
// ctx's when it ended first.
func (c *controlIn) next(ctx context.Context) (line string, ok bool, err error) {
	c.mu.Lock()
	if len(c.back) > 0 {
		line, c.back = c.back[0], c.back[1:]
		c.mu.Unlock()
		return line, true, nil
	}
	c.mu.Unlock()
	select {
	case line, ok := <-c.lines:
		return line, ok, nil
	case <-ctx.Done():
		return "", true, ctx.Err()
	}
}

// unread gives a line back, for the next reader.
func (c *controlIn) unread(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.back = append([]string{line}, c.back...)
}

// runControl is one run's side of the control lines.
type runControl struct {
	in      *controlIn
	end     *runEnd
	linger  bool
	token   string // the run's token (start line)
	started bool
	reading bool          // control's goroutine runs
	done    chan struct{} // closed when it stopped reading lines
}

// awaitStart waits for the start line (the reader attached): the run's
// token and the release of the held lines. Empty lines are passed over
// (a plugin writes one to learn that its attach is up). Any other first
// line counts as the start too and is then read as itself, except stop
// and exit, and the end of input: those stop the run before it started
// (nothing is written). It reports whether the run started.
func (c *runControl) awaitStart(ctx context.Context, stop context.CancelCauseFunc, w *wire.Writer) bool {
	if c.in == nil || c.started {
		return true
	}
	for {
		line, ok, err := c.in.next(ctx)
		switch {
		case err != nil:
			return false
		case !ok:
			c.end.eof = true
			stop(errStopped)
			return false
		}
		if strings.TrimSpace(line) == "" {
			continue // the plugin learning that its attach is up: not the start
		}
		cl, perr := wire.ParseControl(line)
		if perr != nil {
			continue // not a start line: still waiting for one
		}
		switch cl.Cmd {
		case wire.CmdStop, wire.CmdExit:
			c.end.exit = cl.Cmd == wire.CmdExit
			stop(errStopped)
			return false
		case wire.CmdStart:
			c.token = cl.Start.Run
		default:
			c.in.unread(line)
		}
		c.started = true
		w.SetRun(c.token)
		_ = w.Release()
		return true
	}
}

// control starts the probe (if any) right away, or reads the plugin's
// control lines: "probe" starts it, "stop" or the end of input stops the
// run, "exit" stops it and ends a lingering agent; a lingering agent
// refuses another run's "start" (wire.Busy). Probe and stop lines that
// name another run are not for this one.
func (c *runControl) control(ctx context.Context, stop context.CancelCauseFunc, cfg Config, w *wire.Writer) {
	var probeOnce sync.Once
	startProbe := func() {
		if cfg.Probe == nil {
			return
		}
		probeOnce.Do(func() {
			go func() {
				err := probe.RunWith(ctx, cfg.Probe, probe.Options{Unprivileged: cfg.Unprivileged}, func(p *wire.Probe) { _ = w.Emit(p) })
				if err != nil && ctx.Err() == nil {
					_ = w.Emit(&wire.Error{Msg: "probe: " + err.Error()})
					_ = w.Emit(&wire.Probe{ID: "error", Event: "error", TS: time.Now(), Detail: err.Error(), Done: true})
				}
			}()
		})
	}
	if c.in == nil {
		startProbe()
		return
	}
	c.reading = true
	go func() {
		defer close(c.done)
		mine := func(run string) bool { return run == "" || run == c.token }
		for {
			line, ok, err := c.in.next(ctx)
			if err != nil {
				return // the run ended
			}
			if !ok {
				c.end.eof = true
				stop(errStopped) // the plugin went away
				return
			}
			if ctx.Err() != nil {
				c.in.unread(line) // the next run's, or the idle agent's
				return
			}
			cl, perr := wire.ParseControl(line)
			if perr != nil {
				_ = w.Emit(&wire.Error{Msg: perr.Error()})
				continue
			}
			switch cl.Cmd {
			case wire.CmdProbe:
				if mine(cl.Run) {
					startProbe()
				}
			case wire.CmdStop:
				if mine(cl.Run) {
					stop(errStopped)
					return
				}
			case wire.CmdExit:
				c.end.exit = true
				stop(errStopped)
				return
			case wire.CmdStart:
				if c.linger && cl.Run != c.token {
					_ = w.EmitFor(cl.Run, &wire.Error{Msg: wire.Busy + strconv.Quote(c.token), Fatal: true})
					_ = w.EmitFor(cl.Run, &wire.Bye{Reason: wire.ByeBusy})
				}
			}
		}
	}()
}

func byeReason(ctx context.Context) string {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errStopped):
		return wire.ByeStopped
	case errors.Is(cause, context.DeadlineExceeded):
		return wire.ByeDeadline
	}
	return wire.ByeSignal
}

// runUnprivileged is the agent without privilege: hello (no links, no
// filter: it captures nothing), the probe's lines, bye. It opens no
// AF_PACKET and no netlink socket, and changes nothing.
func runUnprivileged(ctx context.Context, stop context.CancelCauseFunc, cfg Config, w *wire.Writer, deadline time.Time, ctl *runControl) error {
	inode, _ := netsnap.NetNSInode()
	host, _ := os.Hostname()
	hello := &wire.Hello{
		Role: cfg.Role, Node: cfg.Node, Name: cfg.Name, NetNS: cfg.NetNS, NetNSID: inode,
		Hostname: host, Version: version.Version, PID: os.Getpid(), Deadline: deadline,
		Links: []wire.Link{}, Caps: effectiveCaps(), Probe: cfg.Probe, Clock: "realtime", Unprivileged: true,
	}
	ctl.awaitStart(ctx, stop, w)
	hello.Linger, hello.LingerCap = cfg.Linger, lingerCap(ctx, cfg)
	if err := w.Emit(hello); err != nil {
		return err // nobody is listening
	}
	ctl.control(ctx, stop, cfg, w)
	<-ctx.Done()
	_ = w.Emit(&wire.Bye{Reason: byeReason(ctx)})
	return nil
}

// captureFilter is the agent's capture filter: the one given, else the
// probe's scope when the agent knows the probe and the two endpoints, else
// the traffic between the hosts. A warning says what the scope could not
// include.
//
// A node agent sees the whole node's traffic: whatever it is given, it
// captures only what concerns the traced hosts (scope.Hosts), so that no
// filter turns it into a node-wide sniffer, and without hosts it does not
// start.
func captureFilter(cfg Config) (expr, warning string, err error) {
	if cfg.Role == wire.RoleNode && len(cfg.Hosts) == 0 {
		if cfg.Filter != "" {
			return "", "", fmt.Errorf("--filter %q on a node agent needs --hosts: a node agent captures only the traced endpoints' traffic", cfg.Filter)
		}
		return "", "", errors.New("a node agent needs --hosts: it captures only the traced endpoints' traffic")
	}
	if cfg.Filter != "" {
		if cfg.Role == wire.RoleNode {
			// The user's expression on its own first: an error names it,
			// not the combination.
			if _, err := filter.Compile(cfg.Filter, cfg.Snaplen); err != nil {
				return "", "", err
			}
			return "(" + cfg.Filter + ") and (" + scope.Hosts(cfg.Hosts) + ")", "", nil
		}
		return cfg.Filter, "", nil
	}
	m := cfg.Match
	if m == nil {
		m = cfg.Probe
	}
	if m == nil || len(cfg.Hosts) < 2 {
		return scope.Hosts(cfg.Hosts), "", nil
	}
	// Hosts beyond the two ends (a Service's endpoint after a DNAT) are
	// on the path too: their address resolution is in the scope.
	resolved, perr := netsnap.PathAddrs(cfg.Hosts)
	resolved = append(resolved, cfg.Hosts[2:]...)
	if perr != nil {
		warning = "the path's gateways and tunnel endpoints are not in the capture filter: " + perr.Error()
	}
	expr, err = scope.Probe(cfg.Hosts[0], cfg.Hosts[1], m, resolved)
	if err != nil {
		return "", "", err
	}
	return expr, warning, nil
}

// natSpec is the probe whose translations this agent reports: a node
// agent's, of a probe that may be translated on the way (ProbeSpec.NAT).
func natSpec(cfg Config) (*wire.ProbeSpec, netip.Addr, netip.Addr, bool) {
	m := cfg.Match
	if m == nil {
		m = cfg.Probe
	}
	if cfg.Role != wire.RoleNode || m == nil || !m.NAT || len(cfg.Hosts) < 2 {
		return nil, netip.Addr{}, netip.Addr{}, false
	}
	src, err1 := netip.ParseAddr(cfg.Hosts[0])
	dst, err2 := netip.ParseAddr(cfg.Hosts[1])
	if err1 != nil || err2 != nil {
		return nil, netip.Addr{}, netip.Addr{}, false
	}
	return m, src.Unmap(), dst.Unmap(), true
}

// reportNAT writes a nat line for each probe whose conntrack entry in
// this namespace was translated. The entry is taken from the conntrack
// events the agent followed (ctw: an entry the kernel drops at once, such
// as a SYN's answered by a reset, is only seen there), else looked up by
// its tuple at the end of the run (conntrack keeps an unanswered UDP or
// ICMP entry 30 s, a TCP one in SYN_SENT 120 s). ICMP probes of a run
// share one echo id, so one entry.
func reportNAT(cfg Config, w *wire.Writer, ctw *netsnap.ConntrackWatch) {
	m, src, dst, ok := natSpec(cfg)
	if !ok {
		return
	}
	var events []netsnap.ConntrackEvent
	if ctw != nil {
		var overrun int
		events, overrun = ctw.Events()
		if overrun > 0 {
			_ = w.Emit(&wire.Error{Msg: fmt.Sprintf("conntrack events: the receive buffer overran %d times: some translations may be missing", overrun)})
		}
	}
	count := max(m.Count, 1)
	if m.Proto == "icmp" {
		count = 1
	}
	var rules []string
	rulesRead := false
	for seq := 1; seq <= count && seq <= maxNATLookups; seq++ {
		f := netsnap.Flow{Proto: m.Proto, Src: src, Dst: dst}
		if m.Proto == "icmp" {
			f.ICMPID = m.ID & 0xffff
		} else {
			f.SrcPort, f.DstPort = wire.SourcePort(m, seq), m.Port
		}
		n, seen, alive := fromEvents(events, f)
		if alive {
			// Still in the table: its status now (a reply seen since
			// it was created).
			if cur, err := netsnap.LookupConntrack(f); err == nil {
				n.SeenReply, n.State = n.SeenReply || cur.SeenReply, cur.State
			}
		}
		if n == nil {
			var err error
			n, err = netsnap.LookupConntrack(f)
			if errors.Is(err, netsnap.ErrNoEntry) {
				continue
			}
			if err != nil {
				_ = w.Emit(&wire.Error{Msg: "probe " + wire.ProbeID(m, seq) + ": " + err.Error()})
				return
			}
			seen = time.Now()
		}
		if !translated(n) {
			continue
		}
		if !rulesRead {
			rulesRead = true
			var err error
			if rules, err = netsnap.NATRuleSets(src.Is6()); err != nil {
				_ = w.Emit(&wire.Error{Msg: "nat rule sets: " + err.Error()})
			}
		}
		n.TS, n.Probe, n.Rules = seen, wire.ProbeID(m, seq), rules
		_ = w.Emit(n)
	}
}

// fromEvents is the entry of flow f as the events showed it: the
// translation from its creation, the status from its destruction when it
// is gone; when the agent learned of it; and whether it is still in the
// table (no destroy event yet).
func fromEvents(events []netsnap.ConntrackEvent, f netsnap.Flow) (n *wire.NAT, seen time.Time, alive bool) {
	src, dst := f.Src.String(), f.Dst.String()
	proto := f.Proto
	if proto == "icmp" && f.Src.Is6() {
		proto = "icmp6" // a probe spec says icmp for both families, conntrack's entry icmp6 for IPv6
	}
	for _, e := range events {
		o := e.Entry.Orig
		if o.Src != src || o.Dst != dst || e.Entry.Proto != proto ||
			o.SrcPort != f.SrcPort || o.DstPort != f.DstPort || o.ICMPID != f.ICMPID {
			continue
		}
		replied := n != nil && n.SeenReply
		if n == nil {
			seen = e.Seen
		}
		cp := *e.Entry
		n, alive = &cp, e.Type != "destroy"
		// A reply seen once stays seen (a destroy event carries no
		// status bits; the kernel may have replaced the entry since).
		n.SeenReply = n.SeenReply || replied
	}
	return n, seen, alive
}

func translated(n *wire.NAT) bool {
	return n.DNAT || n.SNAT || n.Reply.Src != n.Orig.Dst || n.Reply.Dst != n.Orig.Src ||
		n.Reply.SrcPort != n.Orig.DstPort || n.Reply.DstPort != n.Orig.SrcPort
}

// maxNATLookups bounds the conntrack lookups of one run.
const maxNATLookups = 100

// bridgedDNAT tells whether bridged frames of the namespace pass its IP
// hooks (br_netfilter: net.bridge.bridge-nf-call-iptables, or ip6tables
// for IPv6) and a NAT rule set is there to translate them.
func bridgedDNAT(v6 bool) bool {
	key := "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if v6 {
		key = "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
	}
	b, err := os.ReadFile(key)
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return false
	}
	rules, err := netsnap.NATRuleSets(v6)
	return err != nil || len(rules) > 0 // unknown: keep out of the way
}

// bridgedQueue says which rule sets here queue packets to userspace ("" when
// none does): br_netfilter hands bridged frames to the ip, ip6 and inet
// hooks, and the bridge family's are met anyway. Rules that cannot be listed
// count as such: keep out of the way.
func bridgedQueue() string {
	rs, err := netsnap.QueueRuleSets()
	switch {
	case err != nil:
		return "the nftables rules, which may queue packets to userspace, cannot be listed: " + err.Error()
	case len(rs) == 0:
		return ""
	}
	return strings.Join(rs, ", ") + " queue packets to userspace"
}

// heldLines holds the lines emitted before hello and writes them right
// after it, in order.
type heldLines struct {
	mu   sync.Mutex
	held []any
	open bool
}

func (h *heldLines) emit(w *wire.Writer, p any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.open {
		h.held = append(h.held, p)
		return
	}
	_ = w.Emit(p)
}

// release writes hello, then the held lines, and lets later lines through.
func (h *heldLines) release(w *wire.Writer, hello *wire.Hello) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := w.Emit(hello); err != nil {
		return err
	}
	for _, p := range h.held {
		_ = w.Emit(p)
	}
	h.held, h.open = nil, true
	return nil
}

// ifNames maps ifindex to name, updated from link changes.
type ifNames struct {
	mu sync.RWMutex
	m  map[int]string
}

func (n *ifNames) set(links []wire.Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m = make(map[int]string, len(links))
	for _, l := range links {
		n.m[l.Index] = l.Name
	}
}

func (n *ifNames) add(i int, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[i] = name
}

func (n *ifNames) get(i int) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if s, ok := n.m[i]; ok {
		return s
	}
	return "if" + strconv.Itoa(i)
}

// effectiveCaps lists the network-relevant capabilities the agent has.
func effectiveCaps() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil
			}
			var out []string
			for _, c := range []struct {
				bit  uint
				name string
			}{{12, "NET_ADMIN"}, {13, "NET_RAW"}, {21, "SYS_ADMIN"}, {38, "PERFMON"}, {39, "BPF"}} {
				if mask&(1<<c.bit) != 0 {
					out = append(out, c.name)
				}
			}
			return out
		}
	}
	return nil
}
