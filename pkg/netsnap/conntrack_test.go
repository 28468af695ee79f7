package netsnap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// The Service shape kube-proxy builds: the node DNATs a virtual IP and
// port to a pod's address and another port. With a bridge CNI the reply
// from the endpoint to a pod on the same bridge is bridged, so the node
// must pass bridged IPv4 through its IP hooks (br_netfilter) for conntrack
// to translate it back, as kube-proxy requires.
const (
	vip     = "10.96.0.10"
	vipPort = 80
	epPort  = 8080
)

// dnatRules are the two rule families that put the same translation in
// the node's namespace, and the rule set NATRuleSets must name for each.
var dnatRules = []struct {
	family string
	apply  func(t *testing.T, ns, ep string)
	want   string
}{{
	family: "iptables",
	apply: func(t *testing.T, ns, ep string) {
		nettest.In(t, ns, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", vip, "-p", "tcp", "--dport", "80",
			"-j", "DNAT", "--to-destination", ep+":8080")
	},
	want: "iptables ip nat (nf_tables)", // Debian's iptables is iptables-nft
}, {
	family: "nftables",
	apply: func(t *testing.T, ns, ep string) {
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(`table ip kube-proxy {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr ` + vip + ` tcp dport 80 dnat to ` + ep + `:8080
	}
}
table ip6 kube-proxy {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip6 daddr fd00::10 tcp dport 80 dnat to [fd00::3]:8080
	}
}
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
	}
}
`)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
	},
	// Not the ip6 table (it cannot translate IPv4), nor the empty base
	// chain iptables-nft leaves behind when its rules are gone.
	want: "nftables ip kube-proxy",
}}

// serviceLab is the bridge lab with the node forwarding and passing
// bridged frames through its IP hooks (a node of a bridge CNI running
// kube-proxy).
func serviceLab(t *testing.T) *lab.Lab {
	t.Helper()
	nettest.RequireRoot(t)
	nettest.RequireTool(t, "iptables", "apt-get install iptables")
	nettest.RequireTool(t, "nft", "apt-get install nftables")
	l, err := lab.Build(context.Background(), lab.Options{Prefix: "ps" + nettest.Prefix()[2:]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Teardown(); err != nil {
			t.Error(err)
		}
	})
	node := l.Nodes[0].NetNS
	nettest.In(t, node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")
	return l
}

// connectFrom dials addr from the named namespace, from a fixed source
// port, and returns the dial's error (the endpoint has no listener: a
// refusal is its answer).
func connectFrom(t *testing.T, ns string, sport int, addr string) error {
	t.Helper()
	var derr error
	in(t, ns, func() {
		d := net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{Port: sport}}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		derr = err
	})
	return derr
}

// listenIn listens on TCP port in the named namespace and accepts (and
// closes) connections until the test ends or stop is called.
func listenIn(t *testing.T, ns string, port int) (stop func()) {
	t.Helper()
	var ln net.Listener
	var err error
	in(t, ns, func() { ln, err = net.Listen("tcp", ":"+strconv.Itoa(port)) })
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return func() { ln.Close() }
}

func TestConntrackSeesTheServiceDNATOfEitherRuleFamily(t *testing.T) {
	for i, rules := range dnatRules {
		t.Run(rules.family, func(t *testing.T) {
			l := serviceLab(t)
			node := l.Nodes[0].NetNS
			a, b, c := pod(t, l, "pod-a"), pod(t, l, "pod-b"), pod(t, l, "pod-c")
			rules.apply(t, node, b.IP)
			stopListener := listenIn(t, b.NetNS, epPort)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var watch *ConntrackWatch
			var werr error
			in(t, node, func() { watch, werr = WatchConntrack(ctx, netip.MustParseAddr(a.IP)) })
			if werr != nil {
				t.Fatal(werr)
			}
			defer watch.Close()

			// An established connection stays in the table: an exact
			// lookup finds it.
			open := 41000 + 10*i
			if err := connectFrom(t, a.NetNS, open, net.JoinHostPort(vip, "80")); err != nil {
				t.Fatalf("connect %s:80 from pod-a (pod-b listens on 8080 behind the DNAT): %v", vip, err)
			}
			flow := Flow{Proto: "tcp", Src: netip.MustParseAddr(a.IP), Dst: netip.MustParseAddr(vip), SrcPort: open, DstPort: vipPort}
			var n *wire.NAT
			var rs []string
			var lerr, rerr error
			in(t, node, func() {
				n, lerr = LookupConntrack(flow)
				rs, rerr = NATRuleSets(false)
			})
			if lerr != nil {
				t.Fatalf("LookupConntrack(%+v) in the node: %v", flow, lerr)
			}
			checkDNAT(t, "lookup", n, a.IP, b.IP, open)
			if !n.SeenReply || n.State == "SYN_SENT" || n.State == "" {
				t.Errorf("lookup: seenReply %v state %q, want a reply seen and the handshake past SYN_SENT", n.SeenReply, n.State)
			}
			if rerr != nil || len(rs) != 1 || rs[0] != rules.want {
				t.Errorf("NATRuleSets() = %q, %v; want [%q]", rs, rerr, rules.want)
			}
			// The conntrack tool reads the same entry.
			nettest.RequireTool(t, "conntrack", "apt-get install conntrack")
			out := nettest.In(t, node, "conntrack", "-L", "-p", "tcp", "--orig-src", a.IP, "--orig-dst", vip, "--sport", strconv.Itoa(open))
			re := regexp.MustCompile(`src=` + regexp.QuoteMeta(b.IP) + ` dst=` + regexp.QuoteMeta(a.IP) + ` sport=8080 dport=` + strconv.Itoa(open))
			if !re.MatchString(out) {
				t.Errorf("conntrack -L shows no reply tuple from %s:8080 to %s:%d:\n%s", b.IP, a.IP, open, out)
			}
			// Another source port has no entry: the lookup is exact.
			flow.SrcPort++
			in(t, node, func() { _, lerr = LookupConntrack(flow) })
			if !errors.Is(lerr, ErrNoEntry) {
				t.Errorf("lookup of a flow nobody sent: %v, want ErrNoEntry", lerr)
			}

			// A refused connection: the kernel drops the entry as the
			// reset passes, so only the events saw it.
			stopListener()
			refused := open + 1
			if err := connectFrom(t, a.NetNS, refused, net.JoinHostPort(vip, "80")); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect %s:80 from pod-a with nothing listening: %v, want connection refused through the DNAT", vip, err)
			}
			if err := connectFrom(t, c.NetNS, refused, net.JoinHostPort(vip, "80")); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect %s:80 from pod-c: %v, want connection refused", vip, err)
			}
			var evs []ConntrackEvent
			deadline := time.Now().Add(30 * time.Second)
			for {
				evs, _ = watch.Events()
				if findEvent(evs, "destroy", refused) != nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			created, gone := findEvent(evs, "new", refused), findEvent(evs, "destroy", refused)
			if created == nil || gone == nil {
				t.Fatalf("events of the refused connection: new %v, destroy %v; all: %+v", created != nil, gone != nil, evs)
			}
			checkDNAT(t, "new event", created.Entry, a.IP, b.IP, refused)
			checkDNAT(t, "destroy event", gone.Entry, a.IP, b.IP, refused)
			if findEvent(evs, "new", open) == nil {
				t.Errorf("no new event for the established connection from port %d", open)
			}
			for _, e := range evs {
				if e.Entry.Orig.Src != a.IP {
					t.Errorf("an event of another source passed the filter: %+v", e.Entry)
				}
			}
		})
	}
}

func findEvent(evs []ConntrackEvent, typ string, sport int) *ConntrackEvent {
	for i := range evs {
		if evs[i].Type == typ && evs[i].Entry.Orig.SrcPort == sport {
			return &evs[i]
		}
	}
	return nil
}

// checkDNAT holds an entry to the translation the lab's rule makes.
func checkDNAT(t *testing.T, what string, n *wire.NAT, src, ep string, sport int) {
	t.Helper()
	if n.Proto != "tcp" || n.Orig.Src != src || n.Orig.Dst != vip || n.Orig.SrcPort != sport || n.Orig.DstPort != vipPort {
		t.Errorf("%s: original %s %s:%d → %s:%d, want tcp %s:%d → %s:%d", what, n.Proto, n.Orig.Src, n.Orig.SrcPort, n.Orig.Dst, n.Orig.DstPort, src, sport, vip, vipPort)
	}
	if n.Reply.Src != ep || n.Reply.SrcPort != epPort || n.Reply.Dst != src || n.Reply.DstPort != sport {
		t.Errorf("%s: reply %s:%d → %s:%d, want %s:%d → %s:%d (the endpoint answers)", what, n.Reply.Src, n.Reply.SrcPort, n.Reply.Dst, n.Reply.DstPort, ep, epPort, src, sport)
	}
	if !n.DNAT || n.SNAT {
		t.Errorf("%s: dnat %v snat %v, want a DNAT only", what, n.DNAT, n.SNAT)
	}
}

func TestConntrackLookupRejectsBadFlows(t *testing.T) {
	a, b6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	for _, f := range []Flow{
		{Proto: "tcp", Src: a, SrcPort: 1, DstPort: 2},
		{Proto: "tcp", Src: a, Dst: b6, SrcPort: 1, DstPort: 2},
		{Proto: "tcp", Src: a, Dst: a, SrcPort: 0, DstPort: 2},
		{Proto: "udp", Src: a, Dst: a, SrcPort: 1, DstPort: 70000},
		{Proto: "sctp", Src: a, Dst: a, SrcPort: 1, DstPort: 2},
	} {
		if _, err := LookupConntrack(f); err == nil || errors.Is(err, ErrNoEntry) {
			t.Errorf("LookupConntrack(%+v) = %v, want an error about the flow", f, err)
		}
	}
}

func TestParseConntrackSurvivesGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {2}, {2, 0, 0, 0}, {2, 0, 0, 0, 8, 0, 1, 0x80}, {2, 0, 0, 0, 0xff, 0xff, 1, 0x80, 1, 2}} {
		if _, err := parseConntrack(b); err == nil {
			t.Errorf("parseConntrack(%x) accepted it", b)
		}
	}
}
