// Command podtrace-agent is the capture agent of kubectl-podtrace. It runs
// in one network namespace (a pod's, through an ephemeral container, or a
// node's, through a hostNetwork pod, or any namespace on this host with
// --netns) and writes the observation stream as JSON lines to stdout.
// It exits on its own at --deadline, on SIGINT/SIGTERM/SIGHUP, and (with
// --control stdin) when told to stop or when its input closes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/agent"
	"github.com/podtrace/kubectl-podtrace/pkg/version"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// enteredEnv marks a re-executed agent that already joined --netns.
const enteredEnv = "PODTRACE_AGENT_NETNS_ENTERED"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("podtrace-agent %s (commit %s, %s)\n", version.Version, version.Commit, version.GoVersion())
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podtrace-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.NetNS != "" && os.Getenv(enteredEnv) == "" {
		return enterAndReexec(cfg.NetNS)
	}
	cfg.Stdin = os.Stdin
	cfg.Out = os.Stdout
	cfg.Watchdog = watchdog
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()
	return agent.Run(ctx, cfg)
}

// watchdog ends the process when the agent did not finish within
// agent.WatchdogGrace of its end (deadline, stop, signal): its output is
// blocked (a pipe nobody reads), and a write cannot be interrupted. The
// last word goes to stderr if stderr takes it at once.
func watchdog() {
	said := make(chan struct{})
	go func() {
		fmt.Fprintf(os.Stderr, "podtrace-agent: still writing %s after the end of its run (is its output read?): exiting without its last lines\n", agent.WatchdogGrace)
		close(said)
	}()
	select {
	case <-said:
	case <-time.After(100 * time.Millisecond):
	}
	os.Exit(1)
}

// parseArgs maps the agent's command line (the arguments launchers build
// with launch.Spec.Args, and --netns) onto an agent.Config. It returns
// flag.ErrHelp after printing the help.
func parseArgs(args []string) (agent.Config, error) {
	var (
		cfg      agent.Config
		hosts    string
		netns    string
		spec     wire.ProbeSpec
		probeArg string
		traceArg string
	)
	fs := flag.NewFlagSet("podtrace-agent", flag.ContinueOnError)
	fs.StringVar(&cfg.Role, "role", wire.RolePod, "role: pod (a pod's namespace) or node (a node's root namespace)")
	fs.StringVar(&cfg.ID, "id", "", "agent id in the stream (default: the role and hostname)")
	fs.StringVar(&cfg.Name, "name", "", "what this agent watches, for humans (e.g. default/pod-a)")
	fs.StringVar(&cfg.Node, "node", "", "node name")
	fs.StringVar(&netns, "netns", "", "network namespace to run in: a name under /var/run/netns or a path such as /proc/PID/ns/net (default: the current one)")
	fs.StringVar(&hosts, "hosts", "", "comma-separated IPs of the traced pods; the default capture filter follows their traffic")
	fs.StringVar(&cfg.Filter, "filter", "", "capture filter in tcpdump syntax: replaces the default filter; on a node agent (--role node) it is ANDed with the traffic of --hosts")
	fs.IntVar(&cfg.Snaplen, "snaplen", wire.DefaultSnaplen, "bytes the kernel copies per frame; without --payload only the headers of those leave the agent")
	fs.BoolVar(&cfg.Payload, "payload", false, "stream whole frames, transport payload included (default: headers only, up to the innermost TCP/UDP/ICMP header)")
	fs.BoolVar(&cfg.KernelDrops, "kernel-drops", false, "report the kernel's reason and place for each of the probe's packets it drops (an eBPF program on skb:kfree_skb, IPv4, Linux 5.17+; needs CAP_BPF and CAP_PERFMON)")
	fs.BoolVar(&cfg.Unprivileged, "unprivileged", false, "run without privilege (a non-root uid, no capability): capture nothing, only send the probe (ICMP through an unprivileged ping socket) and report its outcome")
	fs.BoolVar(&cfg.Promisc, "promisc", true, "hold bridges in promiscuous mode while capturing, to see bridged unicast (reverted by the kernel on exit)")
	fs.Int64Var(&cfg.Budget, "budget", wire.DefaultBudget, "bytes per second of packet and change lines streamed; lines over it are cut and counted in the stats line (0: no limit)")
	fs.DurationVar(&cfg.Deadline, "deadline", 60*time.Second, "exit after this long, whatever happens")
	fs.DurationVar(&cfg.Linger, "linger", 0, "with --control stdin: after a run, close the capture and wait this long for another start line (a rerun, whose line may carry its own probe), then exit; 0: serve one run")
	fs.DurationVar(&cfg.Lifetime, "lifetime", 0, "with --linger: exit this long after starting, whatever the runs (default: --deadline plus --linger)")
	fs.StringVar(&cfg.WarmKey, "warm-key", "", "with --linger: what this agent watches, as the plugin names it to find it again (read from the container's arguments)")
	fs.StringVar(&cfg.Control, "control", "none", "none: probe right after hello; stdin: write nothing until a first line (\"start\"), then read \"probe\"/\"stop\" lines; stop at end of input")
	fs.StringVar(&probeArg, "probe", "", "send probes: icmp, tcp or udp (empty: observe only)")
	fs.StringVar(&traceArg, "trace-probe", "", "capture only the frames of a probe another agent sends (icmp, tcp or udp; identified by --probe-id, --count, --port) from the first to the second of --hosts, and their address resolution")
	fs.StringVar(&spec.Dst, "dst", "", "probe destination IP")
	fs.IntVar(&spec.Port, "port", 0, "probe destination port (tcp, udp)")
	fs.IntVar(&spec.Count, "count", 1, "number of probes")
	fs.DurationVar(&spec.Interval, "interval", 200*time.Millisecond, "time between probes")
	fs.DurationVar(&spec.Timeout, "probe-timeout", time.Second, "how long to wait for each probe's reply")
	fs.IntVar(&spec.ID, "probe-id", 0, "ICMP echo id, or first TCP/UDP source port")
	fs.BoolVar(&spec.NAT, "nat", false, "the probe's destination may be translated on the way (a Service's virtual IP): capture the probe's frames to and from any address, and (node role) report its conntrack translations")
	fs.BoolVar(&cfg.NFTrace, "nftrace", false, "node role, active trace: trace the probe's packets (only them) through the namespace's nf_tables rule sets (nftables, iptables-nft) and report the rules that decided their fate; the tracing table belongs to the agent's netlink socket and the kernel removes it when the agent exits, however it exits (needs NET_ADMIN)")
	fs.IntVar(&cfg.SummarizeAbove, "summarize-above", 0, "above this many captured frames per second (sustained for a second), write per-flow summaries instead of one line per frame, until exit; 0: never (kubectl podtrace --passive gives 500)")
	fs.DurationVar(&cfg.SummaryInterval, "summary-interval", wire.DefaultSummaryInterval, "how often to write a summary once summarizing")
	fs.IntVar(&cfg.SummaryRecords, "summary-records", wire.DefaultSummaryRecords, "flow records per summary (the busiest; the rest are summed in one \"other\" record)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if netns != "" && os.Getenv(enteredEnv) == "" {
		// The re-executed agent parses and checks the same arguments.
		return agent.Config{NetNS: netns}, nil
	}
	if cfg.Role != wire.RolePod && cfg.Role != wire.RoleNode {
		return cfg, fmt.Errorf("--role %q: want pod or node", cfg.Role)
	}
	switch {
	case cfg.Budget < 0:
		return cfg, fmt.Errorf("--budget %d: want bytes per second, or 0 for no limit", cfg.Budget)
	case cfg.Budget == 0:
		cfg.Budget = -1 // no limit
	}
	if cfg.Payload {
		cfg.Snaplen = wire.PayloadSnaplen
	}
	if cfg.Linger < 0 || cfg.Lifetime < 0 {
		return cfg, fmt.Errorf("--linger %s, --lifetime %s: want durations >= 0", cfg.Linger, cfg.Lifetime)
	}
	if cfg.Linger > 0 && cfg.Control != "stdin" {
		return cfg, errors.New("--linger needs --control stdin: a lingering agent starts each run on a start line")
	}
	if cfg.SummarizeAbove < 0 || cfg.SummaryRecords < 1 || cfg.SummaryInterval < 10*time.Millisecond {
		return cfg, fmt.Errorf("--summarize-above %d, --summary-records %d, --summary-interval %s: want >= 0, >= 1 and >= 10ms",
			cfg.SummarizeAbove, cfg.SummaryRecords, cfg.SummaryInterval)
	}
	if hosts != "" {
		cfg.Hosts = strings.Split(hosts, ",")
	}
	if probeArg != "" && traceArg != "" {
		return cfg, errors.New("--probe and --trace-probe exclude each other: the agent that sends a probe traces it")
	}
	if cfg.Unprivileged && (cfg.Role != wire.RolePod || traceArg != "" || cfg.Filter != "") {
		return cfg, errors.New("--unprivileged captures nothing: it runs in a pod (--role pod) and only sends the probe (--probe), without --trace-probe or --filter")
	}
	if traceArg != "" {
		if len(cfg.Hosts) < 2 {
			return cfg, errors.New("--trace-probe needs --hosts SRC,DST (then any address the probe may be translated to)")
		}
		if spec.ID == 0 {
			return cfg, errors.New("--trace-probe needs --probe-id")
		}
		if (traceArg == "tcp" || traceArg == "udp") && spec.Port == 0 {
			return cfg, fmt.Errorf("--trace-probe %s needs --port", traceArg)
		}
		m := spec
		m.Proto, m.Dst = traceArg, cfg.Hosts[1]
		cfg.Match = &m
	}
	if probeArg != "" {
		spec.Proto = probeArg
		if spec.Dst == "" {
			return cfg, errors.New("--probe needs --dst")
		}
		if (spec.Proto == "tcp" || spec.Proto == "udp") && spec.Port == 0 {
			return cfg, fmt.Errorf("--probe %s needs --port", spec.Proto)
		}
		if spec.ID == 0 {
			spec.ID = 33000 + os.Getpid()%20000
		}
		cfg.Probe = &spec
	}
	if cfg.ID == "" {
		h, _ := os.Hostname()
		cfg.ID = cfg.Role + "/" + h
	}
	cfg.NetNS = netns
	return cfg, nil
}

// enterAndReexec joins the network namespace and re-executes the agent, so
// that every thread of the new process lives in it (a Go process cannot
// move all its threads with setns).
func enterAndReexec(ns string) error {
	path := ns
	if !strings.Contains(ns, "/") {
		path = "/var/run/netns/" + ns
	}
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %q: %w", path, err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter network namespace %q: %w (needs CAP_SYS_ADMIN: run as root)", path, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), enteredEnv+"="+path)
	return syscall.Exec(exe, os.Args, env)
}
