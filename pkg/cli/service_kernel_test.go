package cli

// Real-kernel tests of traces through a Service-style DNAT: the lab's node
// translates a virtual IP and port to pod-b's port 8080, with kube-proxy's
// iptables shape or its nftables shape, and the trace follows the probe
// through the translation (conntrack) to the endpoint and back.

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
	"github.com/podtrace/kubectl-podtrace/pkg/lab"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const (
	svcIP   = "10.96.0.10"
	svcPort = "80"
)

// serviceRules put the same translation in a node namespace with either
// rule family, and name the family as the trace must.
var serviceRules = []struct {
	family string
	apply  func(t *testing.T, node, ep string)
	want   string
}{{
	family: "iptables",
	apply: func(t *testing.T, node, ep string) {
		nettest.RequireTool(t, "iptables", "apt-get install iptables")
		nettest.In(t, node, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", svcIP, "-p", "tcp", "--dport", svcPort,
			"-j", "DNAT", "--to-destination", ep+":8080")
	},
	want: "iptables (nf_tables backend)", // Debian's iptables is iptables-nft
}, {
	family: "nftables",
	apply: func(t *testing.T, node, ep string) {
		nft(t, node, `table ip kube-proxy {
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr `+svcIP+` tcp dport `+svcPort+` dnat to `+ep+`:8080
	}
}
`)
	},
	want: "nftables (table ip kube-proxy)",
}}

// serviceLab is the bridge lab whose node forwards and passes bridged
// frames through its IP hooks (br_netfilter), as kube-proxy requires of a
// bridge CNI's node when bridged is true; pod-b listens on 8080.
func serviceLab(t *testing.T, bridged bool) (*lab.Lab, lab.Pod, lab.Pod, string) {
	t.Helper()
	nettest.RequireRoot(t)
	prefix := "ps" + nettest.Prefix()[2:]
	l, err := lab.Build(context.Background(), lab.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Teardown(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		assertNothingLeft(t, prefix)
	})
	node := l.Nodes[0].NetNS
	nf := "0"
	if bridged {
		nf = "1"
	}
	nettest.In(t, node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables="+nf)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	var ln net.Listener
	inNetNS(t, b.Path, func() (err error) {
		ln, err = net.Listen("tcp", ":8080")
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l, a, b, node
}

type natLine struct {
	Kind     string    `json:"kind"`
	Journey  int       `json:"journey"`
	Toward   bool      `json:"toward"`
	Reverse  bool      `json:"reverse"`
	Agent    string    `json:"agent"`
	Endpoint string    `json:"endpoint"`
	Family   string    `json:"family"`
	Text     string    `json:"text"`
	NAT      *wire.NAT `json:"nat"`
}

func natLines(t *testing.T, out string) []natLine {
	t.Helper()
	var ns []natLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var n natLine
		if err := json.Unmarshal([]byte(l), &n); err != nil {
			t.Fatal(err)
		}
		if n.Kind == "nat" {
			ns = append(ns, n)
		}
	}
	return ns
}

// Through --via, with pod-b watched: the probe is followed from pod-a's
// eth0 through the DNAT to pod-b's eth0, and the answer back through the
// reverse translation, with either rule family named.
func TestServiceDNATIsFollowedToTheEndpointWithEitherRuleFamily(t *testing.T) {
	for _, rules := range serviceRules {
		t.Run(rules.family, func(t *testing.T) {
			_, a, b, node := serviceLab(t, true)
			rules.apply(t, node, b.IP)
			r := podtrace(t, "local", "--from", a.NetNS, "--via", svcIP, "--to", b.NetNS, "--node-netns", node,
				"--proto", "tcp", "--port", svcPort, "-o", "json")
			if r.code != 0 {
				t.Fatalf("exit %d; want delivered", r.code)
			}
			v := parseJSON(t, r.stdout)
			if last := v[len(v)-1]; last.Result != "delivered" || last.Answer != "syn-ack" {
				t.Fatalf("verdict %+v; want delivered, syn-ack", last)
			}
			req := journeyHops(v, func(h hopLine) bool { return h.Probe == "tcp/1" && !h.Reply })
			if len(req) < 4 || place(req[0]) != a.NetNS+":eth0" || place(req[len(req)-1]) != b.NetNS+":eth0" {
				t.Fatalf("request hops %+v; want from pod-a's eth0 to pod-b's eth0", req)
			}
			if req[0].Packet == nil || !strings.Contains(req[0].Packet.Summary, svcIP) {
				t.Errorf("the first hop %+v is not the probe to %s", req[0], svcIP)
			}
			ns := natLines(t, r.stdout)
			var fwd, rev *natLine
			for i := range ns {
				if ns[i].Toward && fwd == nil {
					fwd = &ns[i]
				}
				if ns[i].Reverse && rev == nil {
					rev = &ns[i]
				}
			}
			if fwd == nil || rev == nil {
				t.Fatalf("nat lines %+v; want the DNAT on the request and the reverse translation on the answer", ns)
			}
			n := fwd.NAT
			if fwd.Agent != node || n.Orig.Src != a.IP || n.Orig.Dst != svcIP || n.Orig.DstPort != 80 ||
				n.Reply.Src != b.IP || n.Reply.SrcPort != 8080 || !n.DNAT || !n.SeenReply {
				t.Errorf("DNAT %+v at %s; want %s → %s:80 translated to %s:8080 at %s, replied", n, fwd.Agent, a.IP, svcIP, b.IP, node)
			}
			if fwd.Family != rules.want || !strings.Contains(fwd.Text, rules.want) {
				t.Errorf("family %q, text %q; want %q", fwd.Family, fwd.Text, rules.want)
			}
			if fwd.Endpoint != b.NetNS || !strings.Contains(fwd.Text, "("+b.NetNS+")") {
				t.Errorf("the DNAT names endpoint %q (%s); want %s", fwd.Endpoint, fwd.Text, b.NetNS)
			}
			if !strings.Contains(rev.Text, b.IP+":8080 → "+svcIP+":80") {
				t.Errorf("reverse translation %q; want %s:8080 → %s:80", rev.Text, b.IP, svcIP)
			}
			// The answer is the reply journey: from pod-b's eth0 to
			// pod-a's eth0, from the virtual IP there.
			ans := journeyHops(v, func(h hopLine) bool { return h.Probe == "tcp/1" && h.Reply })
			if len(ans) < 4 || place(ans[0]) != b.NetNS+":eth0" || place(ans[len(ans)-1]) != a.NetNS+":eth0" ||
				!strings.HasPrefix(ans[len(ans)-1].Packet.Summary, "TCP "+svcIP) && !strings.Contains(ans[len(ans)-1].Packet.Summary, svcIP+":80") {
				t.Errorf("answer hops %+v; want pod-b eth0 → … → pod-a eth0 from %s", ans, svcIP)
			}
			// The agents change nothing: pod-b receives the SYN once (a
			// promiscuous bridge would make br_netfilter deliver it twice).
			syns := 0
			for _, h := range v {
				if h.Kind == "hop" && h.Agent == b.NetNS && h.Iface == "eth0" && h.Packet != nil && h.Packet.Dir == "in" &&
					h.Packet.L4 != nil && h.Packet.L4.Flags == "SYN" {
					syns++
				}
			}
			if syns != 1 {
				t.Errorf("pod-b's eth0 received the SYN %d times; want once", syns)
			}
			if !strings.Contains(r.stdout, `"service":{"name":"`+svcIP+`"`) {
				t.Errorf("the trace line does not carry the service")
			}
		})
	}
}

// A bare virtual IP as --to: the node's DNAT is followed to the endpoint's
// host veth (no agent in the endpoint's namespace).
func TestLocalToAVirtualIPFollowsTheDNAT(t *testing.T) {
	_, a, b, node := serviceLab(t, true)
	serviceRules[1].apply(t, node, b.IP)
	r := podtrace(t, "local", "--from", a.NetNS, "--to", svcIP, "--node-netns", node, "--proto", "tcp", "--port", svcPort, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d; want delivered", r.code)
	}
	v := parseJSON(t, r.stdout)
	if last := v[len(v)-1]; last.Result != "delivered" || last.Answer != "syn-ack" {
		t.Fatalf("verdict %+v; want delivered, syn-ack", last)
	}
	req := journeyHops(v, func(h hopLine) bool { return h.Probe == "tcp/1" && !h.Reply })
	last := req[len(req)-1]
	if last.Agent != node || last.Owner == "" && !strings.HasPrefix(last.Iface, "veth") || last.Packet.Summary == "" ||
		!strings.Contains(last.Packet.Summary, b.IP) {
		t.Errorf("the request's last hop %+v; want pod-b's host veth in %s, toward %s", last, node, b.IP)
	}
	ns := natLines(t, r.stdout)
	if len(ns) == 0 || ns[0].NAT.Reply.Src != b.IP {
		t.Fatalf("nat lines %+v; want the DNAT to %s", ns, b.IP)
	}
}

// The node's agent does not hold its bridge promiscuous where
// br_netfilter passes bridged frames to NAT rules (a promiscuous bridge
// would deliver the DNATed SYN twice), and the text trace tells the user,
// once, with the node's name, why the bridge hop may be missing.
func TestBridgeNotHeldPromiscuousIsSaidInTheText(t *testing.T) {
	_, a, b, node := serviceLab(t, true)
	serviceRules[1].apply(t, node, b.IP)
	r := podtrace(t, "local", "--from", a.NetNS, "--via", svcIP, "--to", b.NetNS, "--node-netns", node,
		"--proto", "tcp", "--port", svcPort)
	if r.code != 0 {
		t.Fatalf("exit %d; want delivered", r.code)
	}
	want := "warning " + node + ": bridges are not held in promiscuous mode (with br_netfilter and NAT rules here, "
	var warned []string
	verdict := -1
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, want) {
			warned = append(warned, l)
		}
		if strings.HasPrefix(l, "verdict ") {
			verdict = i
		}
	}
	if len(warned) != 1 {
		t.Fatalf("%d lines start %q; want one", len(warned), want)
	}
	if verdict < 0 || !slices.Contains(lines[:verdict], warned[0]) {
		t.Errorf("the warning is not above the verdict line")
	}
}

// Without br_netfilter the endpoint's answer to pod-a, on the same bridge,
// is bridged past the node's conntrack: it reaches pod-a from pod-b's
// address, not from the virtual IP, and the trace says the reply was not
// translated back.
func TestReplyNotTranslatedBackIsNamed(t *testing.T) {
	_, a, b, node := serviceLab(t, false)
	serviceRules[1].apply(t, node, b.IP)
	r := podtrace(t, "local", "--from", a.NetNS, "--via", svcIP, "--to", b.NetNS, "--node-netns", node,
		"--proto", "tcp", "--port", svcPort, "-o", "json", "--wait", "500ms")
	if r.code != ExitLost {
		t.Fatalf("exit %d; want %d (not delivered)", r.code, ExitLost)
	}
	v := parseJSON(t, r.stdout)
	last := v[len(v)-1]
	if last.Result != "lost" || !strings.Contains(last.Reason, "no node translated it back") ||
		!strings.Contains(last.Reason, b.IP+":8080") || !strings.Contains(last.Last, a.NetNS) {
		t.Fatalf("verdict %+v; want lost: the answer reached pod-a from %s:8080, not translated back", last, b.IP)
	}
}
