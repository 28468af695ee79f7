package nftrace

// Real-kernel tests: rules written with nft and iptables-nft in a network
// namespace of the test's own, read back and written as text, and probes
// traced through a node namespace that routes between two others.

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// inNS runs fn on a locked thread inside the named namespace.
func inNS(t *testing.T, name string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Errorf("open %s: %v", name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Errorf("enter %s: %v", name, err)
			return
		}
		fn()
	}()
	<-done
}

// nftListing is `nft -a list ruleset` of a namespace: rule text by table,
// chain and handle, as nft writes it without the counters' values.
func nftListing(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := nettest.In(t, ns, "nft", "-a", "list", "ruleset")
	rules := map[string]string{}
	tableRe := regexp.MustCompile(`^table (\S+) (\S+) \{`)
	chainRe := regexp.MustCompile(`^\s*chain (\S+) \{`)
	ruleRe := regexp.MustCompile(`^\s*(.*\S)\s+# handle (\d+)$`)
	counterRe := regexp.MustCompile(`counter packets \d+ bytes \d+`)
	var table, chain string
	for _, l := range strings.Split(out, "\n") {
		if m := tableRe.FindStringSubmatch(l); m != nil {
			table = m[1] + " " + m[2]
			continue
		}
		if m := chainRe.FindStringSubmatch(l); m != nil {
			chain = m[1]
			continue
		}
		if m := ruleRe.FindStringSubmatch(l); m != nil && !strings.Contains(l, "chain ") && !strings.HasPrefix(strings.TrimSpace(l), "type ") {
			text := strings.Join(strings.Fields(counterRe.ReplaceAllString(m[1], "counter")), " ")
			rules[table+" "+chain+" "+m[2]] = text
		}
	}
	return rules
}

func TestRenderWritesRulesAsNftListsThem(t *testing.T) {
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	nettest.RequireTool(t, "iptables-nft", "apt-get install iptables")
	ns := nettest.NS(t, nettest.Prefix()+"-nftr")
	script := `table inet pt_render {
  chain c1 {
    tcp dport 8080 drop
    iifname "veth*" tcp dport 8080 counter drop
    ip saddr 10.1.0.0/16 udp dport 53 accept
    ip daddr 10.244.0.7 icmp type echo-request reject
    ct state established,related accept
    meta mark 0x00000010 counter drop
    tcp dport 1000-2000 log prefix "pt " accept
    ip6 saddr fd00::1 tcp sport 443 return
    oifname "eth0" ip protocol udp counter accept
  }
  chain c2 { type filter hook forward priority 0; policy accept; jump c1; }
}`
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	nettest.In(t, ns, "iptables-nft", "-N", "PTCUSTOM")
	nettest.In(t, ns, "iptables-nft", "-A", "FORWARD", "-j", "PTCUSTOM")
	nettest.In(t, ns, "iptables-nft", "-A", "PTCUSTOM", "-p", "tcp", "--dport", "8080", "-j", "DROP")
	nettest.In(t, ns, "iptables-nft", "-A", "PTCUSTOM", "-s", "10.0.0.0/8", "-i", "eth+", "-p", "udp", "-j", "ACCEPT")
	nettest.In(t, ns, "iptables-nft", "-A", "PTCUSTOM", "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT")
	want := nftListing(t, ns)
	if len(want) < 14 {
		t.Fatalf("nft listed %d rules, want at least 14: %v", len(want), want)
	}
	got := map[string]string{}
	inNS(t, ns, func() {
		c, err := nftables.New()
		if err != nil {
			t.Error(err)
			return
		}
		chains, err := c.ListChains()
		if err != nil {
			t.Error(err)
			return
		}
		for _, ch := range chains {
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range rules {
				got[familyNames[ch.Table.Family]+" "+ch.Table.Name+" "+ch.Name+" "+strconv.FormatUint(r.Handle, 10)] = Render(r.Exprs)
			}
		}
	})
	for k, w := range want {
		if strings.Contains(w, "ct state new") && strings.Contains(k, "PTCUSTOM") {
			// nft translates iptables' conntrack match with libxtables;
			// without it (an agent has no nft) it is the xt match.
			w = strings.Replace(w, "ct state new", `xt match "conntrack"`, 1)
			w = strings.Replace(w, "reject", `xt target "REJECT"`, 1)
		}
		if got[k] != w {
			t.Errorf("%s: rendered %q; nft lists %q", k, got[k], w)
		}
	}
}

// A routed node between two pods: pod-a 10.77.1.2 — node — pod-b 10.77.2.2.
type routed struct{ a, node, b string }

func buildRouted(t *testing.T) routed {
	t.Helper()
	p := nettest.Prefix()
	r := routed{nettest.NS(t, p+"-a"), nettest.NS(t, p+"-node"), nettest.NS(t, p+"-b")}
	nettest.Veth(t, r.a, p+"a0", r.node, p+"va")
	nettest.Veth(t, r.b, p+"b0", r.node, p+"vb")
	nettest.In(t, r.a, "ip", "addr", "add", "10.77.1.2/24", "dev", p+"a0")
	nettest.In(t, r.b, "ip", "addr", "add", "10.77.2.2/24", "dev", p+"b0")
	nettest.In(t, r.node, "ip", "addr", "add", "10.77.1.1/24", "dev", p+"va")
	nettest.In(t, r.node, "ip", "addr", "add", "10.77.2.1/24", "dev", p+"vb")
	nettest.In(t, r.a, "ip", "route", "add", "default", "via", "10.77.1.1")
	nettest.In(t, r.b, "ip", "route", "add", "default", "via", "10.77.2.1")
	nettest.In(t, r.node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	return r
}

// connect tries a TCP connection from a source port inside a namespace.
func connect(t *testing.T, ns, dst string, sport int) {
	t.Helper()
	inNS(t, ns, func() {
		d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{Port: sport}}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if c, err := d.DialContext(ctx, "tcp", dst); err == nil {
			c.Close()
		}
	})
}

func TestTracerNamesTheDroppingRuleAndOnlyTheProbe(t *testing.T) {
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "iptables-nft", "apt-get install iptables")
	r := buildRouted(t)
	nettest.In(t, r.node, "iptables-nft", "-N", "PTDROP")
	nettest.In(t, r.node, "iptables-nft", "-A", "FORWARD", "-j", "PTDROP")
	nettest.In(t, r.node, "iptables-nft", "-A", "PTDROP", "-p", "tcp", "--dport", "8080", "-j", "DROP")
	want := nftListing(t, r.node)
	m := Match{Proto: "tcp", Src: netip.MustParseAddr("10.77.1.2"), Dst: netip.MustParseAddr("10.77.2.2"), FirstPort: 41000, LastPort: 41000}
	var tr *Tracer
	inNS(t, r.node, func() {
		var err error
		var warnings []string
		if tr, warnings, err = Start(m, 64); err != nil {
			t.Error(err)
		}
		t.Logf("warnings: %q", warnings)
	})
	if tr == nil {
		t.FailNow()
	}
	defer tr.Close()
	if tables := nettest.In(t, r.node, "nft", "list", "tables"); !strings.Contains(tables, "table inet "+TableName()) {
		t.Fatalf("tracing table not there:\n%s", tables)
	}
	// Other connections that the same rule drops, before and after the probe.
	for i := range 5 {
		connect(t, r.a, "10.77.2.2:8080", 42000+i)
	}
	connect(t, r.a, "10.77.2.2:8080", 41000) // the probe
	for i := range 5 {
		connect(t, r.a, "10.77.2.2:8080", 43000+i)
	}
	events, st := tr.Events()
	t.Logf("stats %+v", st)
	var drop *Event
	for i, e := range events {
		t.Logf("event %+v", e)
		if !e.Probe || e.ProbeSeq != 1 || e.Src.IsValid() && e.SPort != 41000 {
			t.Errorf("event of another packet kept: %+v", e)
		}
		if e.Verdict == "drop" && drop == nil {
			drop = &events[i]
		}
	}
	if st.Other != 0 {
		t.Errorf("%d events of other packets: only the probe's packets may be marked", st.Other)
	}
	if drop == nil {
		t.Fatalf("no drop event among %d", len(events))
	}
	key := drop.Family + " " + drop.Table + " " + drop.Chain + " " + strconv.FormatUint(drop.Handle, 10)
	if drop.Table != "filter" || drop.Chain != "PTDROP" || !drop.IPTables() || want[key] == "" || drop.Rule != want[key] {
		t.Errorf("drop %s %q (iptables layout %v); nft lists %q there", key, drop.Rule, drop.IPTables(), want[key])
	}
	if tables := nettest.In(t, r.node, "nft", "list", "tables"); strings.Contains(tables, TableName()) {
		t.Errorf("tracing table left after Events:\n%s", tables)
	}
}

// Drain returns the probe's events as Events does, and leaves the tracing
// table to Close.
func TestDrainLeavesTheTableUntilClose(t *testing.T) {
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "iptables-nft", "apt-get install iptables")
	r := buildRouted(t)
	nettest.In(t, r.node, "iptables-nft", "-A", "FORWARD", "-p", "tcp", "--dport", "8080", "-j", "DROP")
	m := Match{Proto: "tcp", Src: netip.MustParseAddr("10.77.1.2"), Dst: netip.MustParseAddr("10.77.2.2"), FirstPort: 41000, LastPort: 41000}
	var tr *Tracer
	inNS(t, r.node, func() {
		var err error
		if tr, _, err = Start(m, 64); err != nil {
			t.Error(err)
		}
	})
	if tr == nil {
		t.FailNow()
	}
	closed := false
	defer func() {
		if !closed {
			tr.Close()
		}
	}()
	connect(t, r.a, "10.77.2.2:8080", 41000)
	events, _ := tr.Drain()
	drops := 0
	for _, e := range events {
		if e.Verdict == "drop" && e.Chain == "FORWARD" {
			drops++
		}
	}
	if drops == 0 {
		t.Errorf("no drop in FORWARD among the %d events Drain returned: %+v", len(events), events)
	}
	if tables := nettest.In(t, r.node, "nft", "list", "tables"); !strings.Contains(tables, "table inet "+TableName()) {
		t.Errorf("tracing table gone after Drain, before Close:\n%s", tables)
	}
	tr.Close()
	closed = true
	if tables := nettest.In(t, r.node, "nft", "list", "tables"); strings.Contains(tables, TableName()) {
		t.Errorf("tracing table left after Close:\n%s", tables)
	}
}
