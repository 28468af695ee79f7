package verdict_test

// The verdict's rules, one case each, on the observation streams of real
// runs (pkg/render/testdata/recordings: real hello and topology lines of
// the agents) from which the test removes by hand the observations a loss
// at one place would leave out. The expected answers are written from the
// topology of each recording, read from its hello lines:
//
//	bridge-delivered: pod-a eth0 ─ vethc2a7094a ─ cni0 ─ veth55e72aef ─ pod-b eth0 (node1)
//	vxlan-delivered:  pod-a eth0 ─ veth39ad28f6 ─ cni0 ─ flannel.1 ─ eth0 (node1)
//	                  ─ eth0 ─ flannel.1 ─ cni0 ─ vethc99fca7b (node2) ─ pod-b eth0
//	routed-delivered: pod-a eth0 ─ calicd8088b384c ─ calia03944835d9 ─ pod-b eth0 (node1,
//	                  proxy ARP for 169.254.1.1 on the cali veths, no bridge)
//	arp-unanswered:   pod-a asks who-has 10.244.0.99, flooded by cni0, nobody answers
//	bridge-two-probes (testdata/recordings, kubectl podtrace lab --count 2 --save DIR):
//	                  two echoes, pod-a eth0 ─ vetha6050cf2 ─ cni0 ─ veth646135b7 ─ pod-b eth0
//	bridge-hairpin (testdata/recordings, a kept lab, hairpin on pod-a's port, then
//	                  kubectl podtrace local --save DIR): pt617f-pod-a eth0 ─ vetha5892a0b ─ cni0
//	                  ─ veth7478e699 ─ pt617f-pod-b eth0; pod-c's port veth35e15ae3

import (
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

const recordings = "../../render/testdata/recordings/"

func load(t *testing.T, name string) (trace.Session, []trace.Stream) {
	t.Helper()
	dir := recordings + name
	if name == "bridge-two-probes" || name == "bridge-hairpin" { // recorded for these tests (see the top of this file)
		dir = "testdata/recordings/" + name
	}
	s, streams, _, _, err := session.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, streams
}

// at is one capture point: an agent's display name and an interface.
type at struct{ agent, iface string }

func isRequest(p *wire.Packet) bool { return p.L4 != nil && p.L4.Type == "echo-request" }
func isReply(p *wire.Packet) bool   { return p.L4 != nil && p.L4.Type == "echo-reply" }

// without removes the observations of packets that match sel at the given
// capture points, as if the packet never got there.
func without(streams []trace.Stream, sel func(*wire.Packet) bool, points ...at) []trace.Stream {
	out := make([]trace.Stream, len(streams))
	for i, st := range streams {
		out[i] = st
		out[i].Lines = nil
		for _, e := range st.Lines {
			drop := false
			if e.Kind == wire.KindPacket && sel(e.Packet) {
				for _, p := range points {
					if p.agent == st.Display && p.iface == e.Packet.Iface {
						drop = true
					}
				}
			}
			if !drop {
				out[i].Lines = append(out[i].Lines, e)
			}
		}
	}
	return out
}

// withOutcome replaces the source agent's probe outcomes by event, as the
// agent writes it when no answer came back.
func withOutcome(streams []trace.Stream, event, detail string) []trace.Stream {
	return withOutcomeOf(streams, "", event, detail)
}

// withOutcomeOf replaces the outcome of probe id ("" = every probe).
func withOutcomeOf(streams []trace.Stream, id, event, detail string) []trace.Stream {
	out := make([]trace.Stream, len(streams))
	for i, st := range streams {
		out[i] = st
		out[i].Lines = nil
		for _, e := range st.Lines {
			if e.Kind == wire.KindProbe && e.Probe.Event != "sent" && (id == "" || e.Probe.ID == id) {
				c, p := *e, *e.Probe
				p.Event, p.Detail, p.RTT = event, detail, 0
				c.Probe = &p
				e = &c
			}
			out[i].Lines = append(out[i].Lines, e)
		}
	}
	return out
}

// status is the path hop's status at the agent's interface.
func status(tr *trace.Trace, agent, iface string) string {
	for _, h := range tr.Path {
		if h.Place == agent && (h.Label == iface || strings.HasPrefix(h.Label, iface+" ")) {
			return h.Status
		}
	}
	return "(not on the path)"
}

type want struct {
	result   string
	lastSeen string // prefix
	notSeen  string // prefix
	reason   []string
	path     map[at]string // hop → status
	answer   string
}

func check(t *testing.T, tr *trace.Trace, w want) {
	t.Helper()
	v := tr.Verdict
	t.Logf("verdict %s, last seen %q, not seen %q, answer %q\n  reason: %s\n  path: %+v", v.Result, v.LastSeen, v.NotSeen, v.Answer, v.Reason, tr.Path)
	if v.Result != w.result {
		t.Errorf("result %q, want %q", v.Result, w.result)
	}
	if !strings.HasPrefix(v.LastSeen, w.lastSeen) || (w.lastSeen == "" && v.LastSeen != "") {
		t.Errorf("last seen %q, want %q", v.LastSeen, w.lastSeen)
	}
	if !strings.HasPrefix(v.NotSeen, w.notSeen) || (w.notSeen == "" && v.NotSeen != "") {
		t.Errorf("not seen %q, want %q", v.NotSeen, w.notSeen)
	}
	for _, r := range w.reason {
		if !strings.Contains(v.Reason, r) {
			t.Errorf("reason %q lacks %q", v.Reason, r)
		}
	}
	if w.answer != "" && v.Answer != w.answer {
		t.Errorf("answer %q, want %q", v.Answer, w.answer)
	}
	for h, st := range w.path {
		if got := status(tr, h.agent, h.iface); got != st {
			t.Errorf("path hop %s %s: %q, want %q", h.agent, h.iface, got, st)
		}
	}
}

var (
	aEth0   = at{"pod-a", "eth0"}
	bEth0   = at{"pod-b", "eth0"}
	aVeth   = at{"node1", "vethc2a7094a"}
	bVeth   = at{"node1", "veth55e72aef"}
	cni0    = at{"node1", "cni0"}
	allSeen = map[at]string{aEth0: "seen", aVeth: "seen", cni0: "seen", bVeth: "seen", bEth0: "seen"}
)

func TestVerdictBridgeRules(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func([]trace.Stream) []trace.Stream
		want   want
	}{
		{"delivered: seen at every hop, both ways", nil, want{
			result: "delivered", answer: "echo-reply", path: allSeen,
		}},
		{"lost between the pod and its host veth", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, isRequest, aVeth, cni0, bVeth, bEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "pod-a eth0", notSeen: "node1 vethc2a7094a",
			reason: []string{"it left pod-a's eth0 but never reached the node side of its veth pair"},
			path:   map[at]string{aEth0: "seen", aVeth: "not seen", cni0: "not seen", bVeth: "not seen", bEth0: "not seen"},
		}},
		{"entered the host veth, the bridge never handled it", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, isRequest, cni0, bVeth, bEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "node1 vethc2a7094a", notSeen: "node1 cni0",
			reason: []string{"it entered vethc2a7094a but the bridge cni0 never handled it"},
			path:   map[at]string{aEth0: "seen", aVeth: "seen", cni0: "not seen", bVeth: "not seen"},
		}},
		{"the bridge did not forward it to pod-b's port", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, isRequest, bVeth, bEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "node1 cni0", notSeen: "node1 veth55e72aef",
			reason: []string{"the bridge cni0 did not forward it to pod-b's port veth55e72aef"},
			path:   map[at]string{aEth0: "seen", aVeth: "seen", cni0: "seen", bVeth: "not seen", bEth0: "not seen"},
		}},
		{"left the node on pod-b's veth, never reached pod-b", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(without(s, isRequest, bEth0), isReply, bEth0, bVeth, cni0, aVeth, aEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "node1 veth55e72aef", notSeen: "pod-b eth0",
			reason: []string{"it left the node on veth55e72aef but never reached pod-b's eth0"},
			path:   map[at]string{bVeth: "seen", bEth0: "not seen"},
		}},
		{"a hop that saw nothing although a later one did is not observable", func(s []trace.Stream) []trace.Stream {
			return without(s, isRequest, cni0)
		}, want{
			result: "delivered", answer: "echo-reply",
			path: map[at]string{aEth0: "seen", aVeth: "seen", cni0: "not observable", bVeth: "seen", bEth0: "seen"},
		}},
		{"pod-b got it and sent no answer", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, isReply, bEth0, bVeth, cni0, aVeth, aEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "pod-b eth0", answer: "none",
			reason: []string{"pod-b received it but sent no answer"},
			path:   allSeen,
		}},
		{"the answer was lost on the way back at the bridge", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, isReply, aVeth, aEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost", lastSeen: "node1 cni0", notSeen: "node1 vethc2a7094a", answer: "echo-reply",
			reason: []string{"pod-b answered (echo-reply) but the answer was lost on the way back", "the bridge cni0 did not forward it to pod-a's port vethc2a7094a"},
			path:   allSeen,
		}},
		{"the probe never left pod-a", func(s []trace.Stream) []trace.Stream {
			return withOutcome(without(s, func(p *wire.Packet) bool { return isRequest(p) || isReply(p) }, aEth0, aVeth, cni0, bVeth, bEth0), "timeout", "no reply within 1s")
		}, want{
			result: "lost",
			reason: []string{"the probe was not seen at any hop: it never left pod-a", "timeout: no reply within 1s"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, streams := load(t, "bridge-delivered")
			if c.mutate != nil {
				streams = c.mutate(streams)
			}
			check(t, merge.Merge(s, streams), c.want)
		})
	}
}

// Without an agent in pod-b (a node agent only on its side), pod-b's eth0
// is not observable: the verdict rests on the hops that are, and says so.
func TestVerdictDestinationWithoutAgentIsNotObservable(t *testing.T) {
	s, streams := load(t, "bridge-delivered")
	var kept []trace.Stream
	for _, st := range streams {
		if st.Agent != "pod-b" {
			kept = append(kept, st)
		}
	}
	s.Dst.Agent = ""
	tr := merge.Merge(s, kept)
	check(t, tr, want{result: "delivered", answer: "echo-reply",
		path: map[at]string{aEth0: "seen", aVeth: "seen", cni0: "seen", bVeth: "seen"}})
	if !strings.Contains(tr.Verdict.Path, "pod-b:eth0 (not observable)") {
		t.Errorf("path %q should end with pod-b's eth0, not observable", tr.Verdict.Path)
	}
}

func TestVerdictARPUnanswered(t *testing.T) {
	s, streams := load(t, "arp-unanswered")
	check(t, merge.Merge(s, streams), want{result: "arp-unanswered", reason: []string{
		"ARP unanswered: who-has 10.244.0.99 was asked 2 time(s) and nobody answered",
		"flooded to veth41e6e976, veth9925358d",
		"10.244.0.99 is not on this segment, or its link is down",
	}})
}

func TestVerdictOverlayRules(t *testing.T) {
	var (
		aEth0   = at{"pod-a", "eth0"}
		n1Flan  = at{"node1", "flannel.1"}
		n1Eth0  = at{"node1", "eth0"}
		n2Eth0  = at{"node2", "eth0"}
		n2Flan  = at{"node2", "flannel.1"}
		n2Cni0  = at{"node2", "cni0"}
		n2bVeth = at{"node2", "vethc99fca7b"}
		bEth0   = at{"pod-b", "eth0"}
		after   = func(points ...at) func([]trace.Stream) []trace.Stream {
			return func(s []trace.Stream) []trace.Stream {
				return withOutcome(without(s, isRequest, points...), "timeout", "no reply within 1s")
			}
		}
	)
	for _, c := range []struct {
		name   string
		mutate func([]trace.Stream) []trace.Stream
		want   want
	}{
		{"delivered through the overlay", nil, want{result: "delivered", answer: "echo-reply",
			path: map[at]string{aEth0: "seen", n1Flan: "seen", n1Eth0: "seen", n2Eth0: "seen", n2Flan: "seen", n2bVeth: "seen", bEth0: "seen"}}},
		{"lost before encapsulation", after(n1Flan, n1Eth0, n2Eth0, n2Flan, n2Cni0, n2bVeth, bEth0), want{
			result: "lost", lastSeen: "node1 cni0", notSeen: "node1 flannel.1",
			reason: []string{"lost before encapsulation on node1: routed toward flannel.1 but never reached it"}}},
		{"lost at encapsulation", after(n1Eth0, n2Eth0, n2Flan, n2Cni0, n2bVeth, bEth0), want{
			result: "lost", lastSeen: "node1 flannel.1", notSeen: "node1 eth0",
			reason: []string{"lost at encapsulation on node1: flannel.1 never sent it out of eth0", "the VTEP's neighbour or FDB entry missing", "UDP 8472"}}},
		{"lost on the underlay between the nodes", after(n2Eth0, n2Flan, n2Cni0, n2bVeth, bEth0), want{
			result: "lost", lastSeen: "node1 eth0", notSeen: "node2 eth0",
			reason: []string{"lost on the underlay between node1 eth0 and node2 eth0 (vxlan vni 1 192.168.50.1 → 192.168.50.2:8472)", "blocking UDP 8472", "an MTU too small for the outer headers"}}},
		{"lost at the peer node's overlay device", after(n2Flan, n2Cni0, n2bVeth, bEth0), want{
			result: "lost", lastSeen: "node2 eth0", notSeen: "node2 flannel.1",
			reason: []string{"lost at node2's overlay device flannel.1", "was never decapsulated"}}},
		{"decapsulated but not delivered", after(n2Cni0, n2bVeth, bEth0), want{
			result: "lost", lastSeen: "node2 flannel.1", notSeen: "node2 cni0",
			reason: []string{"node2 decapsulated it on flannel.1 but did not deliver it to cni0"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, streams := load(t, "vxlan-delivered")
			if c.mutate != nil {
				streams = c.mutate(streams)
			}
			check(t, merge.Merge(s, streams), c.want)
		})
	}
}

// Clocks across nodes: node2's timestamps shifted by a known offset are
// estimated from the request/reply pair within its bound and corrected; a
// shift within the bound is left alone.
func TestVerdictClocksAcrossNodes(t *testing.T) {
	for _, skew := range []time.Duration{7 * time.Millisecond, -3 * time.Millisecond} {
		s, streams := load(t, "vxlan-delivered")
		_, orig := load(t, "vxlan-delivered")
		base := merge.Merge(s, orig).Clocks
		for i, st := range streams {
			if st.Display != "node2" {
				continue
			}
			streams[i].Lines = nil
			for _, e := range st.Lines {
				if e.Kind == wire.KindPacket {
					c, p := *e, *e.Packet
					p.TS = p.TS.Add(skew)
					c.Packet = &p
					e = &c
				}
				streams[i].Lines = append(streams[i].Lines, e)
			}
		}
		tr := merge.Merge(s, streams)
		if len(tr.Clocks) != 1 || len(base) != 1 {
			t.Fatalf("clocks %+v (unshifted %+v); want one estimate for node2", tr.Clocks, base)
		}
		c := tr.Clocks[0]
		t.Logf("skew %v: %s", skew, c)
		// The recording's own offset (0 ± its bound: one host's clock) plus
		// the skew added by hand.
		if d := c.Offset - base[0].Offset - skew; d < -time.Microsecond || d > time.Microsecond || c.Node != "node2" || !c.Applied {
			t.Errorf("skew %v: estimate %+v (unshifted %+v); want offset = skew + %v, applied", skew, c, base[0], base[0].Offset)
		}
		if tr.Verdict.Result != "delivered" {
			t.Errorf("skew %v: verdict %s", skew, tr.Verdict.Result)
		}
	}
}

// Routed (Calico-style): no bridge; the pods' ARP for the gateway
// 169.254.1.1 is answered by proxy ARP on the host veth.
func TestVerdictRoutedProxyARP(t *testing.T) {
	s, streams := load(t, "routed-delivered")
	tr := merge.Merge(s, streams)
	check(t, tr, want{result: "delivered", answer: "echo-reply", path: map[at]string{
		{"pod-a", "eth0"}: "seen", {"node1", "calicd8088b384c"}: "seen", {"node1", "calia03944835d9"}: "seen", {"pod-b", "eth0"}: "seen",
	}})
	notes := 0
	for _, j := range tr.Journeys {
		for _, o := range j.Obs {
			if o.P.ARP != nil && o.P.ARP.Op == "is-at" && o.P.ARP.SenderIP == "169.254.1.1" && o.Agent.Name == "node1" {
				if !strings.HasPrefix(o.Note, "answered by proxy ARP on cali") {
					t.Errorf("is-at 169.254.1.1 on %s: note %q", o.If.Name, o.Note)
				}
				notes++
			}
		}
	}
	if notes != 2 {
		t.Errorf("%d proxy ARP answers at node1, want 2 (one per pod)", notes)
	}
	for _, h := range tr.Path {
		if h.Role == "bridge" {
			t.Errorf("a bridge on a routed path: %+v", h)
		}
	}
}

// Partial: of two probes the first is delivered and the second dies
// between the bridge and pod-b's port; the verdict says how many made it
// and why the first lost one was lost.
func TestVerdictPartial(t *testing.T) {
	s, streams := load(t, "bridge-two-probes")
	seq2 := func(p *wire.Packet) bool { return p.L4 != nil && p.L4.ICMPSeq == 2 && (isRequest(p) || isReply(p)) }
	streams = without(streams, func(p *wire.Packet) bool { return seq2(p) && isRequest(p) }, at{"node1", "veth646135b7"}, at{"pod-b", "eth0"})
	streams = without(streams, func(p *wire.Packet) bool { return seq2(p) && isReply(p) },
		at{"pod-b", "eth0"}, at{"node1", "veth646135b7"}, at{"node1", "cni0"}, at{"node1", "vetha6050cf2"}, at{"pod-a", "eth0"})
	streams = withOutcomeOf(streams, "icmp/2", "timeout", "no reply within 1s")
	tr := merge.Merge(s, streams)
	check(t, tr, want{result: "partial", lastSeen: "node1 cni0", notSeen: "node1 veth646135b7", reason: []string{
		"1 of 2 probes delivered; the first lost one: the bridge cni0 did not forward it to pod-b's port veth646135b7",
	}})
	if v := tr.Verdict; v.Sent != 2 || v.Delivered != 1 {
		t.Errorf("sent %d, delivered %d; want 2, 1", v.Sent, v.Delivered)
	}
	// Both delivered: the same recording untouched.
	s, streams = load(t, "bridge-two-probes")
	if v := merge.Merge(s, streams).Verdict; v.Result != "delivered" || v.Sent != 2 || v.Delivered != 2 || v.Answered != 2 {
		t.Errorf("untouched: %+v; want delivered 2 of 2, both answered", v)
	}
}

// Hairpin: pod-a's bridge port floods pod-a's own ARP broadcast back out of
// the port it came in, and pod-a sees its own frame come back. The merge
// places both after the bridge, in that order, and says why.
func TestHairpinBroadcastIsPlacedAfterTheBridge(t *testing.T) {
	s, streams := load(t, "bridge-hairpin")
	tr := merge.Merge(s, streams)
	var who *trace.Journey
	for _, j := range tr.Journeys {
		if p := j.Obs[0].P; p.ARP != nil && p.ARP.Op == "who-has" && p.ARP.SenderIP == s.Src.IP {
			who = j
			break
		}
	}
	if who == nil {
		t.Fatal("no who-has from pod-a")
	}
	var order []string
	for _, o := range who.Obs {
		order = append(order, o.Agent.Name+" "+o.If.Name+" "+o.P.Dir)
	}
	t.Logf("who-has journey: %s", strings.Join(order, ", "))
	pos := func(agent, iface, dir string) int {
		for i, o := range who.Obs {
			if o.Agent.Name == agent && o.If.Name == iface && o.P.Dir == dir {
				return i
			}
		}
		t.Fatalf("who-has not seen at %s %s %s", agent, iface, dir)
		return -1
	}
	sent, entered, bridge := pos("pt617f-pod-a", "eth0", "out"), pos("pt617f-node1", "vetha5892a0b", "in"), pos("pt617f-node1", "cni0", "in")
	back, reflected := pos("pt617f-node1", "vetha5892a0b", "out"), pos("pt617f-pod-a", "eth0", "in")
	toB, toC := pos("pt617f-node1", "veth7478e699", "out"), pos("pt617f-node1", "veth35e15ae3", "out")
	if !(sent < entered && entered < bridge && bridge < back && back < reflected && bridge < toB && bridge < toC) {
		t.Errorf("order: sent %d, entered %d, bridge %d, back out %d, reflected %d, to pod-b %d, to pod-c %d", sent, entered, bridge, back, reflected, toB, toC)
	}
	if n := who.Obs[back].Note; n != "hairpin: flooded back out of the port it came in" {
		t.Errorf("note at the hairpin port: %q", n)
	}
	if n := who.Obs[reflected].Note; n != "its own frame, reflected by the bridge (hairpin)" {
		t.Errorf("note at pod-a: %q", n)
	}
	if tr.Verdict.Result != "delivered" {
		t.Errorf("verdict %+v", tr.Verdict)
	}
}
