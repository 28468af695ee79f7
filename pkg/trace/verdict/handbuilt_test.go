package verdict_test

// The verdict's rules for answers other than an echo reply, for IPv6, and
// for summaries beside a probe, on streams written by hand against one
// node written down by hand, as `ip -d link`, `ip addr` and `ip route`
// print it in each namespace:
//
//	pod-a   2: eth0@if10  0a:58:0a:f4:00:02  10.244.0.2/24  fd00:a::2/64
//	           default via 10.244.0.1 dev eth0; default via fd00:a::1 dev eth0
//	pod-b   2: eth0@if11  0a:58:0a:f4:00:03  10.244.0.3/24  fd00:a::3/64   (same routes)
//	node1   3: cni0 (bridge, promiscuous for the trace)  10.244.0.1/24  fd00:a::1/64
//	       10: veth-a@if2 master cni0
//	       11: veth-b@if2 master cni0
//	        4: eth1   192.168.60.1/24: a segment on which nobody has 192.168.60.7
//	           routes: 10.244.0.0/24 dev cni0; fd00:a::/64 dev cni0; 192.168.60.0/24 dev eth1
//
// A frame from pod-a to pod-b leaves pod-a's eth0, enters veth-a, is
// forwarded by cni0 and leaves veth-b into pod-b's eth0; its answer takes
// the same hops back. Every stream is what the capture points on that way
// would record: the frame at each hop, 10 µs apart, in the direction the
// interface moved it.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const (
	macA, macB = "0a:58:0a:f4:00:02", "0a:58:0a:f4:00:03"
	ipA, ipB   = "10.244.0.2", "10.244.0.3"
	ip6A, ip6B = "fd00:a::2", "fd00:a::3"
	gw4        = "10.244.0.1"
)

// hop is a capture point and the direction the frame crosses it.
type hop struct {
	agent string
	index int
	iface string
	dir   string
}

var (
	aOut, aIn       = hop{"pod-a", 2, "eth0", "out"}, hop{"pod-a", 2, "eth0", "in"}
	aVethIn         = hop{"node1", 10, "veth-a", "in"}
	aVethOut        = hop{"node1", 10, "veth-a", "out"}
	cni0In          = hop{"node1", 3, "cni0", "in"}
	bVethIn         = hop{"node1", 11, "veth-b", "in"}
	bVethOut        = hop{"node1", 11, "veth-b", "out"}
	bOut, bIn       = hop{"pod-b", 2, "eth0", "out"}, hop{"pod-b", 2, "eth0", "in"}
	eth1Out         = hop{"node1", 4, "eth1", "out"}
	toB             = []hop{aOut, aVethIn, cni0In, bVethOut, bIn}
	toA             = []hop{bOut, bVethIn, cni0In, aVethOut, aIn}
	nodeToA         = []hop{aVethOut, aIn} // from node1's own stack to pod-a
	aPlaces         = [...]string{"pod-a eth0", "node1 veth-a", "node1 cni0", "node1 veth-b", "pod-b eth0"}
	allSeenHandNode = map[string]string{aPlaces[0]: "seen", aPlaces[1]: "seen", aPlaces[2]: "seen", aPlaces[3]: "seen", aPlaces[4]: "seen"}
)

// handNode collects the streams of pod-a, node1 and pod-b.
type handNode struct {
	t0    time.Time
	at    time.Duration
	fp    int
	s     trace.Session
	lines map[string][]*wire.Envelope
}

func newHandNode(dst string, probe *wire.ProbeSpec) *handNode {
	h := &handNode{t0: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), lines: map[string][]*wire.Envelope{}}
	h.s = trace.Session{
		Src:   trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: ipA, Node: "node1", Agent: "pod-a"},
		Dst:   trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: ipB, Node: "node1", Agent: "pod-b"},
		Probe: probe,
	}
	switch dst {
	case ipB:
	case ip6B:
		h.s.Src.IP, h.s.Dst.IP = ip6A, ip6B
	default: // an address without an agent
		h.s.Dst = trace.Endpoint{Name: dst, Short: dst, IP: dst}
	}
	if probe != nil {
		probe.Dst = h.s.Dst.IP
	}
	link := func(l wire.Link) wire.Link { l.Captured, l.State, l.MTU = true, "up", 1500; return l }
	hello := func(role string, promisc []string, links ...wire.Link) *wire.Envelope {
		for i := range links {
			links[i] = link(links[i])
		}
		return &wire.Envelope{Kind: wire.KindHello, Hello: &wire.Hello{Role: role, Node: "node1", Links: links, Promisc: promisc}}
	}
	topo := func(routes ...wire.Route) *wire.Envelope {
		return &wire.Envelope{Kind: wire.KindTopology, Topology: &wire.Topology{When: "before", Routes: routes}}
	}
	podRoutes := topo(
		wire.Route{Dst: "10.244.0.0/24", Index: 2, Dev: "eth0"}, wire.Route{Dst: "default", Gateway: gw4, Index: 2, Dev: "eth0"},
		wire.Route{Dst: "fd00:a::/64", Index: 2, Dev: "eth0"}, wire.Route{Dst: "default", Gateway: "fd00:a::1", Index: 2, Dev: "eth0"})
	h.lines["pod-a"] = []*wire.Envelope{hello(wire.RolePod, nil,
		wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 10, MAC: macA, Addrs: []string{ipA + "/24", ip6A + "/64"}}), podRoutes}
	h.lines["pod-b"] = []*wire.Envelope{hello(wire.RolePod, nil,
		wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 11, MAC: macB, Addrs: []string{ipB + "/24", ip6B + "/64"}}), podRoutes}
	h.lines["node1"] = []*wire.Envelope{hello(wire.RoleNode, []string{"cni0"},
		wire.Link{Index: 3, Name: "cni0", Kind: "bridge", MAC: "0a:58:0a:f4:00:01", Addrs: []string{gw4 + "/24", "fd00:a::1/64"}},
		wire.Link{Index: 10, Name: "veth-a", Kind: "veth", IfLink: 2, Master: 3, MAC: "ee:00:00:00:00:0a"},
		wire.Link{Index: 11, Name: "veth-b", Kind: "veth", IfLink: 2, Master: 3, MAC: "ee:00:00:00:00:0b"},
		wire.Link{Index: 4, Name: "eth1", Kind: "device", MAC: "52:54:00:00:00:01", Addrs: []string{"192.168.60.1/24"}}),
		topo(wire.Route{Dst: "10.244.0.0/24", Index: 3, Dev: "cni0"}, wire.Route{Dst: "fd00:a::/64", Index: 3, Dev: "cni0"},
			wire.Route{Dst: "192.168.60.0/24", Index: 4, Dev: "eth1"})}
	return h
}

// send records one frame at every hop of its way, 10 µs apart, and
// returns when each hop saw it.
func (h *handNode) send(p wire.Packet, way ...hop) []time.Time {
	h.fp++
	p.FP = fmt.Sprintf("hand-%d", h.fp) // one fingerprint per frame, the same at every hop
	var at []time.Time
	for _, w := range way {
		at = append(at, h.t0.Add(h.at))
		c := p
		c.TS, c.Index, c.Iface, c.Dir = h.t0.Add(h.at), w.index, w.iface, w.dir
		if c.PktType == "" {
			c.PktType = map[string]string{"in": "host", "out": "outgoing"}[w.dir]
		}
		h.lines[w.agent] = append(h.lines[w.agent], &wire.Envelope{Kind: wire.KindPacket, Packet: &c})
		h.at += 10 * time.Microsecond
	}
	return at
}

// wait lets time pass between frames.
func (h *handNode) wait(d time.Duration) { h.at += d }

// probe records the prober's events in pod-a: "sent" and its outcome.
func (h *handNode) probe(event, detail string, rtt time.Duration) {
	id := wire.ProbeID(h.s.Probe, 1)
	h.lines["pod-a"] = append(h.lines["pod-a"],
		&wire.Envelope{Kind: wire.KindProbe, Probe: &wire.Probe{ID: id, Seq: 1, Event: "sent", TS: h.t0}},
		&wire.Envelope{Kind: wire.KindProbe, Probe: &wire.Probe{ID: id, Seq: 1, Event: event, Detail: detail, RTT: rtt, TS: h.t0.Add(h.at), Done: true}})
}

func (h *handNode) add(agent string, e *wire.Envelope) { h.lines[agent] = append(h.lines[agent], e) }

func (h *handNode) merge() *trace.Trace {
	var streams []trace.Stream
	for _, a := range []string{"pod-a", "node1", "pod-b"} {
		if h.s.Dst.Agent == "" && a == "pod-b" {
			continue
		}
		streams = append(streams, trace.Stream{Agent: a, Display: a, Lines: h.lines[a]})
	}
	return merge.Merge(h.s, streams)
}

// Frames.

func eth(src, dst string) *wire.Eth { return &wire.Eth{Src: src, Dst: dst, Type: "ipv4"} }

func ip4(src, dst, proto string) *wire.IP {
	return &wire.IP{Version: 4, Src: src, Dst: dst, TTL: 64, Proto: proto}
}

func ip6(src, dst string) *wire.IP {
	return &wire.IP{Version: 6, Src: src, Dst: dst, TTL: 64, Proto: "icmp6"}
}

func echo(src, dst string, id, seq int, reply bool) wire.Packet {
	t, from, to := "echo-request", macA, macB
	if reply {
		t, from, to = "echo-reply", macB, macA
	}
	proto := "icmp"
	var l3 *wire.IP
	if strings.Contains(src, ":") {
		proto, l3 = "icmp6", ip6(src, dst)
	} else {
		l3 = ip4(src, dst, "icmp")
	}
	return wire.Packet{Eth: eth(from, to), IP: l3, L4: &wire.L4{Proto: proto, Type: t, ICMPID: id, ICMPSeq: seq}, Summary: "ICMP " + t}
}

// unreachable is an ICMP destination unreachable with a code (RFC 792:
// 1 host, 3 port unreachable; 13 communication administratively
// prohibited) from src to pod-a.
func unreachable(src string, code int, fromMAC string) wire.Packet {
	return wire.Packet{Eth: eth(fromMAC, macA), IP: ip4(src, ipA, "icmp"), L4: &wire.L4{Proto: "icmp", Type: "dest-unreachable", Code: code}, Summary: "ICMP dest-unreachable"}
}

func tcp(src, dst string, sport, dport int, flags string, fromMAC, toMAC string) wire.Packet {
	return wire.Packet{Eth: eth(fromMAC, toMAC), IP: ip4(src, dst, "tcp"), L4: &wire.L4{Proto: "tcp", SrcPort: sport, DstPort: dport, Flags: flags}, Summary: "TCP " + flags}
}

func udp(src, dst string, sport, dport int, fromMAC, toMAC string) wire.Packet {
	return wire.Packet{Eth: eth(fromMAC, toMAC), IP: ip4(src, dst, "udp"), L4: &wire.L4{Proto: "udp", SrcPort: sport, DstPort: dport, Payload: 16}, Summary: "UDP"}
}

func arp(op, senderMAC, senderIP, targetIP, dstMAC string) wire.Packet {
	p := wire.Packet{Eth: &wire.Eth{Src: senderMAC, Dst: dstMAC, Type: "arp"}, ARP: &wire.ARP{Op: op, SenderMAC: senderMAC, SenderIP: senderIP, TargetIP: targetIP}, Summary: "ARP " + op}
	if dstMAC == "ff:ff:ff:ff:ff:ff" {
		p.PktType = "broadcast"
	}
	return p
}

// solicit is an IPv6 neighbour solicitation for target, sent to its
// solicited-node multicast address and MAC (RFC 4861 §7.2.2, RFC 2464 §7).
func solicit(srcMAC, src, target, mcastIP, mcastMAC string) wire.Packet {
	return wire.Packet{Eth: &wire.Eth{Src: srcMAC, Dst: mcastMAC, Type: "ipv6"}, IP: ip6(src, mcastIP),
		L4: &wire.L4{Proto: "icmp6", Type: "neighbor-solicitation", Target: target}, Summary: "ICMPv6 neighbor solicitation", PktType: "multicast"}
}

// advertise is the solicited neighbour advertisement of target, from its
// owner to the solicitor.
func advertise(srcMAC, dstMAC, target, dst string) wire.Packet {
	return wire.Packet{Eth: &wire.Eth{Src: srcMAC, Dst: dstMAC, Type: "ipv6"}, IP: ip6(target, dst),
		L4: &wire.L4{Proto: "icmp6", Type: "neighbor-advertisement", Target: target}, Summary: "ICMPv6 neighbor advertisement"}
}

// pathStatus is each hop of the trace's path and its status.
func pathStatus(tr *trace.Trace) map[string]string {
	out := map[string]string{}
	for _, h := range tr.Path {
		name := h.Label
		if i := strings.IndexByte(name, ' '); i > 0 {
			name = name[:i]
		}
		out[h.Place+" "+name] = h.Status
	}
	return out
}

func checkPath(t *testing.T, tr *trace.Trace, want map[string]string) {
	t.Helper()
	got := pathStatus(tr)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("path hop %s: %q, want %q (path %v)", k, got[k], v, got)
		}
	}
}
