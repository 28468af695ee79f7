package verdict_test

// One test per rule of the verdict on answers other than an echo reply,
// on IPv6, and on summaries beside a probe; the topology and the streams
// are written by hand (handbuilt_test.go), and each test says what the
// kernel would do in it.

import (
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const us = time.Microsecond

func last(ts []time.Time) time.Time { return ts[len(ts)-1] }

func verdictOf(t *testing.T, tr *trace.Trace) trace.Verdict {
	t.Helper()
	v := tr.Verdict
	t.Logf("verdict %s, answer %q, answered %d/%d, rtt %v, last seen %q, not seen %q\n  reason: %s\n  evidence: %q\n  path: %v",
		v.Result, v.Answer, v.Answered, v.Sent, v.RTT, v.LastSeen, v.NotSeen, v.Reason, v.Evidence, pathStatus(tr))
	return v
}

// A UDP datagram to a port nobody listens on: pod-b's kernel answers ICMP
// port unreachable (RFC 792: type 3, code 3) from pod-b's own address, and
// the prober's socket reports ECONNREFUSED. The datagram was delivered;
// the answer is the refusal, and the round trip is pod-a's eth0's.
func TestPortUnreachableFromTheDestinationIsDeliveredAndAnswered(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "udp", Port: 9, Count: 1, ID: 40000}
	h := newHandNode(ipB, spec)
	req := h.send(udp(ipA, ipB, wire.SourcePort(spec, 1), 9, macA, macB), toB...)
	h.wait(30 * us)
	rep := h.send(unreachable(ipB, 3, macB), toA...)
	h.probe("refused", "connection refused (TCP RST or ICMP port unreachable)", last(rep).Sub(req[0])+5*us)
	v := verdictOf(t, h.merge())
	if v.Result != "delivered" || v.Answer != "port-unreachable" || v.Answered != 1 || v.Delivered != 1 {
		t.Errorf("want delivered, answered by port-unreachable")
	}
	if want := last(rep).Sub(req[0]); v.RTT != want {
		t.Errorf("rtt %v; want %v, from pod-a's eth0 sending to it receiving the answer", v.RTT, want)
	}
}

// An echo request to 192.168.60.7, which node1 routes out of eth1, where
// nobody answers its ARP: after its retries node1 answers pod-a ICMP host
// unreachable (RFC 792: type 3, code 1) from its own address on pod-a's
// side (10.244.0.1), and the prober reports "unreachable". The probe did not
// reach its destination: lost, at node1, which said so; the unanswered ARP
// is the evidence.
func TestHostUnreachableFromARouterIsLostWhereItWasAnswered(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 4711}
	h := newHandNode("192.168.60.7", spec)
	// pod-a resolves its gateway first: cni0 floods the who-has to every
	// port, the bridge's own address answers.
	h.send(arp("who-has", macA, ipA, gw4, "ff:ff:ff:ff:ff:ff"), aOut, aVethIn, cni0In, bVethOut)
	h.send(arp("is-at", "0a:58:0a:f4:00:01", gw4, ipA, macA), append([]hop{{"node1", 3, "cni0", "out"}}, nodeToA...)...)
	h.send(echo(ipA, "192.168.60.7", 4711, 1, false), aOut, aVethIn, cni0In)
	for range 3 {
		h.send(arp("who-has", "52:54:00:00:00:01", "192.168.60.1", "192.168.60.7", "ff:ff:ff:ff:ff:ff"), eth1Out)
		h.wait(time.Second)
	}
	h.send(unreachable(gw4, 1, "0a:58:0a:f4:00:01"), append([]hop{{"node1", 3, "cni0", "out"}}, nodeToA...)...)
	h.probe("unreachable", "destination unreachable (code 1) from 10.244.0.1", 0)
	v := verdictOf(t, h.merge())
	if v.Result != "lost" || v.Delivered != 0 {
		t.Errorf("result %q, delivered %d; want lost: an ICMP error from a hop on the way is not a delivery", v.Result, v.Delivered)
	}
	if v.Answer != "host-unreachable" {
		t.Errorf("answer %q; want host-unreachable", v.Answer)
	}
	for _, s := range []string{"node1 (10.244.0.1) answered host unreachable", "ICMP destination unreachable, code 1"} {
		if !strings.Contains(v.Reason, s) {
			t.Errorf("reason lacks %q", s)
		}
	}
	if !strings.HasPrefix(v.LastSeen, "node1 cni0") {
		t.Errorf("last seen %q; want node1 cni0, where node1 took it last", v.LastSeen)
	}
	// node1 asked on eth1, where no bridge floods: the ports that flooded
	// pod-a's ARP for its gateway are no part of it.
	if e := strings.Join(v.Evidence, "\n"); !strings.Contains(e, "who-has 192.168.60.7 was asked 3 time(s) and nobody answered") || strings.Contains(e, "flooded") {
		t.Errorf("evidence %q; want node1's unanswered ARP for 192.168.60.7, flooded nowhere", v.Evidence)
	}
}

// A firewall rule on node1 rejects the echo request with ICMP
// communication administratively prohibited (RFC 1812: type 3, code 13),
// sent from node1's address: pod-b never sees the request. Lost where the
// rule is, and the answer says a rule rejected it.
func TestAdministrativelyProhibitedFromANodeNamesTheRejectingRule(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 4711}
	h := newHandNode(ipB, spec)
	h.send(echo(ipA, ipB, 4711, 1, false), aOut, aVethIn, cni0In)
	h.send(unreachable(gw4, 13, "0a:58:0a:f4:00:01"), append([]hop{{"node1", 3, "cni0", "out"}}, nodeToA...)...)
	h.probe("unreachable", "destination unreachable (code 13) from 10.244.0.1", 0)
	v := verdictOf(t, h.merge())
	if v.Result != "lost" || v.Answer != "prohibited" || !strings.Contains(v.Reason, "node1 (10.244.0.1) answered communication administratively prohibited") ||
		!strings.Contains(v.Reason, "a firewall rule on node1 rejected it") {
		t.Errorf("want lost, answer prohibited, naming node1's rule")
	}
	if !strings.HasPrefix(v.LastSeen, "node1 cni0") || !strings.HasPrefix(v.NotSeen, "node1 veth-b") {
		t.Errorf("last seen %q, not seen %q; want node1 cni0, node1 veth-b", v.LastSeen, v.NotSeen)
	}
	checkPath(t, h.merge(), map[string]string{aPlaces[0]: "seen", aPlaces[2]: "seen", aPlaces[3]: "not seen", aPlaces[4]: "not seen"})
}

// TCP SYN to an open port: pod-b answers SYN-ACK (RFC 9293 §3.5); the prober's
// kernel completes the handshake and resets it. Delivered, answered by
// SYN-ACK.
func TestTCPSynAckIsDeliveredAndAnswered(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "tcp", Port: 8080, Count: 1, ID: 41000}
	h := newHandNode(ipB, spec)
	sp := wire.SourcePort(spec, 1)
	syn := h.send(tcp(ipA, ipB, sp, 8080, "SYN", macA, macB), toB...)
	h.wait(20 * us)
	synack := h.send(tcp(ipB, ipA, 8080, sp, "SYN,ACK", macB, macA), toA...)
	h.send(tcp(ipA, ipB, sp, 8080, "ACK", macA, macB), toB...)
	h.send(tcp(ipA, ipB, sp, 8080, "RST,ACK", macA, macB), toB...)
	h.probe("reply", "port 8080 open (SYN-ACK)", last(synack).Sub(syn[0]))
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "syn-ack" || v.Answered != 1 || v.RTT != last(synack).Sub(syn[0]) {
		t.Errorf("want delivered, answered by syn-ack, rtt %v", last(synack).Sub(syn[0]))
	}
	checkPath(t, tr, allSeenHandNode)
}

// TCP SYN to a closed port: pod-b's kernel answers RST,ACK (RFC 9293 §3.5.2)
// and the prober's connect fails with ECONNREFUSED. The SYN was delivered;
// the answer is the refusal.
func TestTCPResetFromTheDestinationIsDeliveredAndRefused(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "tcp", Port: 9, Count: 1, ID: 41000}
	h := newHandNode(ipB, spec)
	sp := wire.SourcePort(spec, 1)
	syn := h.send(tcp(ipA, ipB, sp, 9, "SYN", macA, macB), toB...)
	h.wait(20 * us)
	rst := h.send(tcp(ipB, ipA, 9, sp, "RST,ACK", macB, macA), toA...)
	h.probe("refused", "connection refused (TCP RST or ICMP port unreachable)", last(rst).Sub(syn[0]))
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "rst" || v.Answered != 1 {
		t.Errorf("want delivered, answered by rst")
	}
	checkPath(t, tr, allSeenHandNode)
}

// A UDP reply from pod-b to the probe's source port: delivered, answered.
func TestUDPReplyIsDeliveredAndAnswered(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "udp", Port: 5353, Count: 1, ID: 42000}
	h := newHandNode(ipB, spec)
	sp := wire.SourcePort(spec, 1)
	req := h.send(udp(ipA, ipB, sp, 5353, macA, macB), toB...)
	rep := h.send(udp(ipB, ipA, 5353, sp, macB, macA), toA...)
	h.probe("reply", "UDP reply", last(rep).Sub(req[0]))
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "udp-reply" || v.Answered != 1 || v.RTT != last(rep).Sub(req[0]) {
		t.Errorf("want delivered, answered by udp-reply")
	}
	checkPath(t, tr, allSeenHandNode)
}

// UDP has no handshake: a datagram pod-b received and did not answer is
// delivered, with no answer, although the prober timed out.
func TestUDPWithoutAnswerIsDeliveredWhenTheDestinationSawIt(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "udp", Port: 5353, Count: 1, ID: 42000}
	h := newHandNode(ipB, spec)
	h.send(udp(ipA, ipB, wire.SourcePort(spec, 1), 5353, macA, macB), toB...)
	h.probe("timeout", "no UDP reply within 1s", 0)
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "none" || v.Answered != 0 || v.Delivered != 1 {
		t.Errorf("want delivered without an answer")
	}
	checkPath(t, tr, allSeenHandNode)
}

// IPv6: pod-a resolves pod-b by neighbour discovery (RFC 4861), not ARP:
// a solicitation to pod-b's solicited-node multicast group, flooded by
// cni0, and pod-b's solicited advertisement back; then the ICMPv6 echo
// (RFC 4443) both ways. pod-a's neighbour entry for pod-b was learned from
// the advertisement.
func TestIPv6EchoAfterNeighbourDiscoveryIsDelivered(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 4711}
	h := newHandNode(ip6B, spec)
	h.send(solicit(macA, ip6A, ip6B, "ff02::1:ff00:3", "33:33:ff:00:00:03"), aOut, aVethIn, cni0In, bVethOut, bIn)
	na := h.send(advertise(macB, macA, ip6B, ip6A), toA...)
	h.add("pod-a", &wire.Envelope{Kind: wire.KindChange, Change: &wire.Change{TS: last(na).Add(3 * us), What: "neigh", Action: "new",
		Neigh: &wire.Neigh{Dev: "eth0", Index: 2, IP: ip6B, MAC: macB, State: "REACHABLE"}}})
	req := h.send(echo(ip6A, ip6B, 4711, 1, false), toB...)
	rep := h.send(echo(ip6B, ip6A, 4711, 1, true), toA...)
	h.probe("reply", "echo reply from "+ip6B, last(rep).Sub(req[0]))
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "echo-reply" || v.RTT != last(rep).Sub(req[0]) {
		t.Errorf("want delivered, echo-reply, rtt %v", last(rep).Sub(req[0]))
	}
	checkPath(t, tr, allSeenHandNode)
	var learned *trace.Change
	for _, c := range tr.Changes {
		if c.C.Neigh != nil && c.C.Neigh.IP == ip6B && c.Agent.Name == "pod-a" {
			learned = c
		}
	}
	if learned == nil || learned.Cause == nil || learned.Cause.P.L4.Type != "neighbor-advertisement" || !learned.At.Equal(last(na)) {
		t.Fatalf("pod-a's neighbour entry for %s: %+v; want it caused by the advertisement reaching pod-a at %v", ip6B, learned, last(na))
	}
	if learned.Text != "neigh fd00:a::3 → "+macB+" REACHABLE on eth0 (new)" {
		t.Errorf("change text %q", learned.Text)
	}
}

// IPv6 with nobody answering the neighbour solicitation: the kernel holds
// the echo request until the address resolves, so it never leaves pod-a
// (RFC 4861 §7.2.2: MAX_MULTICAST_SOLICIT = 3). The verdict names
// neighbour discovery, as it names ARP for IPv4.
func TestIPv6NeighbourSolicitationUnansweredIsNamed(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 4711}
	h := newHandNode(ip6B, spec)
	for range 3 {
		h.send(solicit(macA, ip6A, ip6B, "ff02::1:ff00:3", "33:33:ff:00:00:03"), aOut, aVethIn, cni0In, bVethOut)
		h.wait(time.Second)
	}
	h.probe("timeout", "no reply within 1s", 0)
	v := verdictOf(t, h.merge())
	if v.Result != "arp-unanswered" || !strings.Contains(v.Reason, "neighbour discovery unanswered: "+ip6B+" was solicited 3 time(s) and nobody answered") ||
		!strings.Contains(v.Reason, "flooded to veth-b") {
		t.Errorf("want address resolution unanswered, by neighbour discovery, flooded to veth-b")
	}
}

// Summaries beside a probe: node1 summarized (over its threshold) while
// the pod agents streamed every frame. The probe's frames are counted at
// node1's veths, not streamed: the verdict rests on the pods' hops
// (delivered), node1's hops are not accused of a loss, and the trace warns
// that a hop there may read "not seen" although it was counted.
func TestSummariesBesideAProbeLeaveTheVerdictToTheStreamedHops(t *testing.T) {
	spec := &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 4711}
	h := newHandNode(ipB, spec)
	req := h.send(echo(ipA, ipB, 4711, 1, false), aOut, bIn)
	rep := h.send(echo(ipB, ipA, 4711, 1, true), bOut, aIn)
	h.probe("reply", "echo reply from "+ipB, last(rep).Sub(req[0]))
	flow := func(src, dst, icmp string) wire.Flow {
		return wire.Flow{EtherType: "ipv4", Src: src, Dst: dst, Proto: "icmp", ICMP: icmp}
	}
	rec := func(f wire.Flow, idx int, name, dir string, at time.Time) wire.FlowSummary {
		return wire.FlowSummary{Flow: f, Index: idx, Iface: name, Dir: dir, Packets: 1, Bytes: 98, First: at, Last: at}
	}
	r, q := flow(ipA, ipB, "echo-request"), flow(ipB, ipA, "echo-reply")
	h.add("node1", &wire.Envelope{Kind: wire.KindSummary, Summary: &wire.Summary{Start: h.t0, End: h.t0.Add(time.Second), First: true, Above: 20,
		Packets: 4, Bytes: 392, Records: []wire.FlowSummary{
			rec(r, 10, "veth-a", "in", req[0].Add(5*us)), rec(r, 11, "veth-b", "out", req[0].Add(7*us)),
			rec(q, 11, "veth-b", "in", rep[0].Add(5*us)), rec(q, 10, "veth-a", "out", rep[0].Add(7*us)),
		}}})
	tr := h.merge()
	v := verdictOf(t, tr)
	if v.Result != "delivered" || v.Answer != "echo-reply" {
		t.Errorf("want delivered, echo-reply")
	}
	for k, st := range pathStatus(tr) {
		if strings.HasPrefix(k, "node1 ") && st == "not seen" {
			t.Errorf("%s reads %q although node1 counted the probe there", k, st)
		}
	}
	warned := false
	for _, w := range tr.Warnings {
		warned = warned || strings.Contains(w, "agents summarized during an active trace")
	}
	if len(tr.Summarized) != 1 || tr.Summarized[0].Agent.Name != "node1" || !warned {
		t.Errorf("summarized %v, warnings %q; want node1 summarized, and the warning about an active trace", tr.Summarized, tr.Warnings)
	}
}
