package cli

// The rule that dropped the probe, named from the node's own netfilter
// trace: iptables-nft and nftables rule sets in the node namespace of a
// routed lab, a busy flow that the same rule drops beside the probe, and
// the tracing table gone after the run and after the agent is killed.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// nftRules is `nft -a list ruleset` of a namespace: each rule's text by
// "family table chain handle", as nft lists it with the counters' values
// left out.
func nftRules(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := nettest.In(t, ns, "nft", "-a", "list", "ruleset")
	t.Logf("nft -a list ruleset in %s:\n%s", ns, out)
	rules := map[string]string{}
	tableRe := regexp.MustCompile(`^table (\S+) (\S+) \{`)
	chainRe := regexp.MustCompile(`^\s*chain (\S+) \{`)
	ruleRe := regexp.MustCompile(`^\s*(.*\S)\s+# handle (\d+)$`)
	counterRe := regexp.MustCompile(`counter packets \d+ bytes \d+`)
	var table, chain string
	for _, l := range strings.Split(out, "\n") {
		if m := tableRe.FindStringSubmatch(l); m != nil {
			table = m[1] + " " + m[2]
		} else if m := chainRe.FindStringSubmatch(l); m != nil {
			chain = m[1]
		} else if m := ruleRe.FindStringSubmatch(l); m != nil && !strings.HasPrefix(strings.TrimSpace(l), "type ") {
			rules[table+" "+chain+" "+m[2]] = strings.Join(strings.Fields(counterRe.ReplaceAllString(m[1], "counter")), " ")
		}
	}
	return rules
}

// busyConnects opens TCP connections from pod-a to dst:port, one after
// another from source ports the probe does not use, until stopped: other
// traffic that the dropping rule drops too. It returns how many it tried.
func busyConnects(t *testing.T, nsPath, dst string) (stop func() int) {
	t.Helper()
	var n atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			t.Errorf("open %s: %v", nsPath, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Errorf("enter %s: %v", nsPath, err)
			return
		}
		for port := 20000; ; port++ {
			select {
			case <-done:
				return
			default:
			}
			d := net.Dialer{Timeout: 50 * time.Millisecond, LocalAddr: &net.TCPAddr{Port: port}}
			if c, err := d.DialContext(context.Background(), "tcp", dst); err == nil {
				c.Close()
			}
			n.Add(1)
		}
	}()
	return func() int { close(done); wg.Wait(); return int(n.Load()) }
}

type dropLine struct {
	Result string `json:"result"`
	Reason string `json:"reason"`
	Drop   *struct {
		By, Agent, Backend, Family, Table, Chain, Rule, Verdict, Text string
		Handle                                                        uint64
		Unavailable                                                   bool
	} `json:"drop"`
}

type statsLine struct {
	Agents []struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		Stats []struct {
			NFTraceEvents int `json:"nftraceEvents"`
			NFTraceOther  int `json:"nftraceOther"`
			NFTraceCut    int `json:"nftraceCut"`
		} `json:"stats"`
	} `json:"agents"`
}

func TestDroppingNetfilterRuleIsNamed(t *testing.T) {
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	nettest.RequireTool(t, "iptables-nft", "apt-get install iptables")
	for _, c := range []struct {
		name string
		// setup writes the dropping rule into the node namespace and
		// returns the key of the rule as nftRules lists it.
		setup   func(t *testing.T, node string) string
		backend string
		words   string // how the verdict names the place
	}{{
		name: "iptables-nft custom chain",
		setup: func(t *testing.T, node string) string {
			nettest.In(t, node, "iptables-nft", "-N", "PTCUSTOM")
			nettest.In(t, node, "iptables-nft", "-A", "FORWARD", "-j", "PTCUSTOM")
			nettest.In(t, node, "iptables-nft", "-A", "PTCUSTOM", "-p", "tcp", "--dport", "8080", "-j", "DROP")
			s := nettest.In(t, node, "iptables-nft", "-S", "PTCUSTOM")
			if !strings.Contains(s, "-A PTCUSTOM -p tcp -m tcp --dport 8080 -j DROP") {
				t.Fatalf("iptables-nft -S:\n%s", s)
			}
			return "ip filter PTCUSTOM"
		},
		backend: "iptables-nft", words: "iptables-nft table filter chain PTCUSTOM rule ",
	}, {
		name: "nftables table",
		setup: func(t *testing.T, node string) string {
			nft(t, node, `table inet pt_policy {
  chain ptfwd { type filter hook forward priority 0; policy accept; ct state established accept; tcp dport 8080 drop; }
}`)
			return "inet pt_policy ptfwd"
		},
		backend: "nftables", words: "nftables inet pt_policy ptfwd rule ",
	}} {
		t.Run(c.name, func(t *testing.T) {
			l := buildLabOf(t, "routed")
			a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
			node := l.Nodes[0].NetNS
			chain := c.setup(t, node)
			// The rule that drops: the one of that chain whose text
			// nft lists with "8080" and "drop".
			var wantKey, wantRule string
			for k, r := range nftRules(t, node) {
				if strings.HasPrefix(k, chain+" ") && strings.Contains(r, "8080") && strings.HasSuffix(r, "drop") {
					wantKey, wantRule = k, r
				}
			}
			if wantRule == "" {
				t.Fatalf("no rule of %s drops tcp/8080 in nft's listing", chain)
			}
			stopBusy := busyConnects(t, a.Path, net.JoinHostPort(b.IP, "8080"))
			r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--proto", "tcp", "--port", "8080",
				"-o", "json", "--wait", "500ms")
			busy := stopBusy()
			if r.code != ExitLost {
				t.Fatalf("exit %d; want %d (lost)", r.code, ExitLost)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			var v dropLine
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
				t.Fatal(err)
			}
			if v.Result != "lost" || v.Drop == nil || v.Drop.Unavailable {
				t.Fatalf("verdict %+v; want lost with the dropping rule named", v)
			}
			d := v.Drop
			if got := d.Family + " " + d.Table + " " + d.Chain + " " + strconv.FormatUint(d.Handle, 10); got != wantKey {
				t.Errorf("drop at %q; nft lists the dropping rule at %q", got, wantKey)
			}
			if d.Rule != wantRule || d.Verdict != "drop" || d.Backend != c.backend || d.By != "netfilter" || d.Agent != node {
				t.Errorf("drop %+v; want rule %q, verdict drop, backend %s, on %s", *d, wantRule, c.backend, node)
			}
			if want := c.words + strconv.Quote(wantRule) + " on " + node; !strings.Contains(d.Text, want) {
				t.Errorf("drop text %q lacks %q", d.Text, want)
			}
			// Only the probe's packets were traced, beside the busy flow.
			var st statsLine
			if err := json.Unmarshal([]byte(lines[0]), &st); err != nil {
				t.Fatal(err)
			}
			events := -1
			for _, ag := range st.Agents {
				for _, s := range ag.Stats {
					if ag.Name == node {
						events = s.NFTraceEvents
						if s.NFTraceOther != 0 || s.NFTraceCut != 0 {
							t.Errorf("node agent counted %d trace events of other packets and cut %d: only the probe may be traced", s.NFTraceOther, s.NFTraceCut)
						}
					}
				}
			}
			t.Logf("busy flow: %d connections tried beside the probe; node agent: %d trace events", busy, events)
			if busy < 5 {
				t.Errorf("the busy flow tried only %d connections: it did not run beside the probe", busy)
			}
			// The probe's SYN (and a retransmission, if --wait lasts
			// that long), each one or two events (a jump, the drop):
			// never one per busy packet.
			if events < 1 || events > 8 {
				t.Errorf("node agent reported %d trace events; want the probe's few (the drop, and a jump before it)", events)
			}
			if tables := nettest.In(t, node, "nft", "list", "tables"); strings.Contains(tables, "podtrace_trace_") {
				t.Errorf("the tracing table is left after the run:\n%s", tables)
			}
			// The same in text: the verdict line names the rule.
			tx := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--proto", "tcp", "--port", "8080",
				"--color", "never", "--wait", "500ms")
			if !strings.Contains(tx.stdout, c.words+strconv.Quote(wantRule)) {
				t.Errorf("text verdict does not name the rule %q:\n%s", wantRule, tx.stdout)
			}
		})
	}
}

func TestNFTraceOffNamesNoRuleAndSaysWhy(t *testing.T) {
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	l := buildLabOf(t, "routed")
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	nft(t, node, `table inet pt_policy {
  chain ptfwd { type filter hook forward priority 0; policy accept; tcp dport 8080 drop; }
}`)
	r := podtrace(t, "local", "--from", a.NetNS, "--to", b.NetNS, "--node-netns", node, "--proto", "tcp", "--port", "8080",
		"-o", "json", "--wait", "500ms", "--nftrace=false")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var v dropLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatal(err)
	}
	if v.Result != "lost" || v.Drop == nil || !v.Drop.Unavailable || !strings.Contains(v.Drop.Text, node+" did not trace netfilter") {
		t.Errorf("verdict %+v; want lost, and that no rule could be named because the node did not trace", v)
	}
}

// The tracing table belongs to the agent's netlink socket: when the agent
// is killed (SIGKILL: no cleanup of its own runs) the kernel removes it.
func TestNFTraceTableGoneAfterAgentIsKilled(t *testing.T) {
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	l := buildLabOf(t, "routed")
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	node := l.Nodes[0].NetNS
	cmd := exec.Command(agentBinary, "--netns", node, "--role", "node", "--id", l.Prefix+"-killed", "--hosts", a.IP+","+b.IP,
		"--trace-probe", "tcp", "--port", "8080", "--probe-id", "40000", "--nftrace", "--deadline", "60s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// hello: the table is armed.
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var hello struct {
		Kind  string `json:"kind"`
		Hello struct {
			PID     int `json:"pid"`
			NFTrace struct {
				Armed bool   `json:"armed"`
				Table string `json:"table"`
			} `json:"nftrace"`
		} `json:"hello"`
	}
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &hello); err == nil && hello.Kind == "hello" {
			break
		}
	}
	if !hello.Hello.NFTrace.Armed {
		t.Fatalf("agent did not arm netfilter tracing: %+v", hello)
	}
	want := fmt.Sprintf("podtrace_trace_%d", hello.Hello.PID)
	if hello.Hello.NFTrace.Table != want {
		t.Errorf("hello names table %q; want %q", hello.Hello.NFTrace.Table, want)
	}
	tables := nettest.In(t, node, "nft", "list", "tables")
	if !strings.Contains(tables, "table inet "+want) {
		t.Fatalf("tracing table %s not in the node namespace while the agent runs:\n%s", want, tables)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel releases the socket when the process is gone; the
	// table goes with it (synchronously on close, but allow the kernel
	// a moment after the process is reaped).
	var left string
	for range 50 {
		if left = nettest.In(t, node, "nft", "list", "tables"); !strings.Contains(left, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("tracing table left after SIGKILL:\n%s", left)
}
