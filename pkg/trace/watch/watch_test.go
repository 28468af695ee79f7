package watch

// The table's statistics on rounds written by hand: one node, a bridge,
// pod-a → veth-a → cni0 → veth-b → pod-b and back. Every expected value
// below is computed by hand from the deltas and outcomes written in the
// rounds, not by the code under test.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

var (
	podA  = &trace.AgentInfo{Name: "pod-a"}
	podB  = &trace.AgentInfo{Name: "pod-b"}
	node1 = &trace.AgentInfo{Name: "node1"}
	aEth0 = &trace.Iface{Name: "eth0", Agent: podA, Role: "pod eth0"}
	vethA = &trace.Iface{Name: "veth-a", Agent: node1, Role: "host veth", Owner: "pod-a"}
	cni0  = &trace.Iface{Name: "cni0", Agent: node1, Role: "bridge"}
	vethB = &trace.Iface{Name: "veth-b", Agent: node1, Role: "host veth", Owner: "pod-b"}
	bEth0 = &trace.Iface{Name: "eth0", Agent: podB, Role: "pod eth0"}
	fwd   = []*trace.Iface{aEth0, vethA, cni0, vethB, bEth0}
	back  = []*trace.Iface{bEth0, vethB, cni0, vethA, aEth0}
)

// hop is one capture of a round: where, and the delta from the hop before
// (0 for the first hop of a journey: it has none).
type hop struct {
	at    *trace.Iface
	delta time.Duration
}

func µs(n int) time.Duration { return time.Duration(n) * time.Microsecond }

// round builds the merged trace of round n: the probe's hops, its
// answer's hops (none when lost), the verdict and the expected path with
// each hop's status.
func round(n int, req, rep []hop, result string, rtt time.Duration) *trace.Trace {
	id := fmt.Sprintf("icmp/%d", n)
	journey := func(hops []hop, reply bool) *trace.Journey {
		j := &trace.Journey{Probe: id, IsReply: reply, Toward: !reply}
		for i, h := range hops {
			j.Obs = append(j.Obs, &trace.Obs{Agent: h.at.Agent, If: h.at, Delta: h.delta, HasDelta: i > 0, P: &wire.Packet{}})
		}
		return j
	}
	t := &trace.Trace{Session: trace.Session{Dst: trace.Endpoint{IP: "10.244.0.3", Node: "node1"}}}
	t.Probes = []*wire.Probe{{ID: id, Seq: n, Event: "sent", TS: time.Date(2026, 1, 1, 0, 0, n, 0, time.UTC)}}
	if len(req) > 0 {
		t.Journeys = append(t.Journeys, journey(req, false))
	}
	if len(rep) > 0 {
		t.Journeys = append(t.Journeys, journey(rep, true))
	}
	for _, i := range fwd {
		status := "not seen"
		for _, h := range req {
			if h.at == i {
				status = "seen"
			}
		}
		t.Path = append(t.Path, trace.Hop{Place: i.Agent.Name, Label: i.Label(), Role: i.Role, Status: status})
	}
	t.Verdict = trace.Verdict{Result: result, Sent: 1, RTT: rtt}
	if result == "delivered" {
		t.Verdict.Delivered, t.Verdict.Answered, t.Verdict.Answer, t.Verdict.Path = 1, 1, "echo-reply", "pod-a:eth0 → veth-a → cni0 → veth-b → pod-b:eth0"
	} else {
		t.Verdict.LastSeen, t.Verdict.NotSeen, t.Verdict.Reason = "node1 cni0", "node1 veth-b (pod-b)", "the bridge cni0 did not forward it"
	}
	return t
}

// whole is a delivered round whose forward deltas are d[0..3] (veth-a,
// cni0, veth-b, pod-b eth0) and whose answer's deltas are 1 µs each.
func whole(n int, d [4]int, rtt int) *trace.Trace {
	req := []hop{{aEth0, 0}, {vethA, µs(d[0])}, {cni0, µs(d[1])}, {vethB, µs(d[2])}, {bEth0, µs(d[3])}}
	rep := []hop{{bEth0, 0}, {vethB, µs(1)}, {cni0, µs(1)}, {vethA, µs(1)}, {aEth0, µs(1)}}
	return round(n, req, rep, "delivered", µs(rtt))
}

// cut is a round lost after cni0: the bridge did not forward it.
func cut(n int, d [2]int) *trace.Trace {
	return round(n, []hop{{aEth0, 0}, {vethA, µs(d[0])}, {cni0, µs(d[1])}}, nil, "lost", 0)
}

func rowOf(t *testing.T, tb *Table, place, iface string, toward bool) *Row {
	t.Helper()
	for _, r := range tb.Rows {
		if r.Place == place && r.Iface == iface && r.Toward == toward {
			return r
		}
	}
	t.Fatalf("no row %s %s toward=%v", place, iface, toward)
	return nil
}

func TestTableStatisticsOverRounds(t *testing.T) {
	tb := &Table{}
	tb.Fold(1, whole(1, [4]int{10, 4, 3, 8}, 100))
	tb.Fold(2, whole(2, [4]int{30, 2, 5, 6}, 300))
	tb.Fold(3, cut(3, [2]int{20, 6}))
	tb.Fold(4, whole(4, [4]int{20, 3, 4, 10}, 200))

	// Rows in path order: five forward, five back.
	var got []string
	for _, r := range tb.Rows {
		got = append(got, r.Key.String())
	}
	want := "→ pod-a eth0|→ node1 veth-a (pod-a)|→ node1 cni0|→ node1 veth-b (pod-b)|→ pod-b eth0|" +
		"← pod-b eth0|← node1 veth-b (pod-b)|← node1 cni0|← node1 veth-a (pod-a)|← pod-a eth0"
	if strings.Join(got, "|") != want {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}

	// veth-a saw every round: deltas 10, 30, 20, 20 µs.
	r := rowOf(t, tb, "node1", "veth-a (pod-a)", true)
	if r.Sent != 4 || r.Seen != 4 || r.Loss() != 0 || r.Last != µs(20) || r.Min != µs(10) || r.Max != µs(30) || r.Avg() != µs(20) || r.Status != "seen" {
		t.Errorf("veth-a: %+v avg %s loss %.1f; want 4/4, last 20µs, min 10µs, avg 20µs, max 30µs", *r, r.Avg(), r.Loss())
	}
	// veth-b missed round 3: deltas 3, 5, 4 µs; 1 of 4 lost = 25%.
	r = rowOf(t, tb, "node1", "veth-b (pod-b)", true)
	if r.Sent != 4 || r.Seen != 3 || r.Loss() != 25 || r.Last != µs(4) || r.Min != µs(3) || r.Max != µs(5) || r.Avg() != µs(4) {
		t.Errorf("veth-b: %+v avg %s loss %.1f; want 3/4, 25%%, last 4µs, min 3µs, avg 4µs, max 5µs", *r, r.Avg(), r.Loss())
	}
	// The first hop has no delta.
	r = rowOf(t, tb, "pod-a", "eth0", true)
	if r.Deltas != 0 || r.Sent != 4 || r.Seen != 4 {
		t.Errorf("pod-a eth0: %+v; want 4/4 without deltas", *r)
	}
	// The answer's hops: lost in round 3 with the probe.
	r = rowOf(t, tb, "pod-a", "eth0", false)
	if r.Sent != 4 || r.Seen != 3 || r.Avg() != µs(1) {
		t.Errorf("pod-a eth0 back: %+v; want 3/4, avg 1µs", *r)
	}

	// Path changes: round 3 lost veth-b, pod-b and the whole way back;
	// round 4 has them again.
	if len(tb.History) != 2 || tb.History[0].Round != 3 || tb.History[1].Round != 4 {
		t.Fatalf("history %+v; want changes at rounds 3 and 4", tb.History)
	}
	if d := strings.Join(tb.History[0].Disappeared, ", "); d != "→ node1 veth-b (pod-b), → pod-b eth0, ← pod-b eth0, ← node1 veth-b (pod-b), ← node1 cni0, ← node1 veth-a (pod-a), ← pod-a eth0" {
		t.Errorf("round 3 disappeared %q", d)
	}
	if len(tb.History[1].Appeared) != 7 || len(tb.History[1].Disappeared) != 0 {
		t.Errorf("round 4: %+v; want the 7 hops back", tb.History[1])
	}

	// Verdict: 3 of 4 delivered: partial, the lost round's reason; rtt
	// the median of 100, 300, 200 µs.
	v := tb.Verdict()
	if v.Result != "partial" || v.Sent != 4 || v.Delivered != 3 || v.RTT != µs(200) || v.NotSeen != "node1 veth-b (pod-b)" ||
		!strings.HasPrefix(v.Reason, "3 of 4 rounds delivered; the last lost one: round 3: the bridge cni0") {
		t.Errorf("verdict %+v", v)
	}
}

func TestFirstRoundLostKeepsTheExpectedHopsAsRows(t *testing.T) {
	tb := &Table{}
	tb.Fold(1, cut(1, [2]int{5, 5}))
	// The expected path's two hops past the loss have rows, not seen.
	r := rowOf(t, tb, "node1", "veth-b (pod-b)", true)
	if r.Sent != 1 || r.Seen != 0 || r.Loss() != 100 || r.Status != "not seen" {
		t.Errorf("veth-b: %+v; want 0 of 1, 100%%", *r)
	}
	if len(tb.Rows) != 5 {
		t.Errorf("%d rows; want the 5 forward hops (the answer never came)", len(tb.Rows))
	}
	if v := tb.Verdict(); v.Result != "lost" {
		t.Errorf("verdict %q; want lost", v.Result)
	}
	// The answer's hops appear later: sent counts from their first round.
	tb.Fold(2, whole(2, [4]int{1, 1, 1, 1}, 10))
	r = rowOf(t, tb, "pod-b", "eth0", false)
	if r.First != 2 || r.Sent != 1 || r.Seen != 1 {
		t.Errorf("pod-b eth0 back: %+v; want first round 2, 1/1", *r)
	}
	r = rowOf(t, tb, "node1", "veth-b (pod-b)", true)
	if r.Sent != 2 || r.Seen != 1 || r.Loss() != 50 {
		t.Errorf("veth-b: %+v; want 1 of 2", *r)
	}
	// The answer's rows come after the forward ones.
	if tb.Rows[5].Key.String() != "← pod-b eth0" {
		t.Errorf("row 6 %s; want ← pod-b eth0", tb.Rows[5].Key)
	}
}

func TestAnotherEndpointAndNodeIsAPathChange(t *testing.T) {
	tb := &Table{}
	tb.Fold(1, whole(1, [4]int{1, 1, 1, 1}, 10))
	t2 := whole(2, [4]int{1, 1, 1, 1}, 10)
	t2.Session.Dst = trace.Endpoint{IP: "10.244.1.4", Node: "node2"}
	r := tb.Fold(2, t2)
	if r.Change == nil || r.Change.Endpoint != "10.244.0.3 → 10.244.1.4" || r.Change.Node != "node1 → node2" {
		t.Fatalf("change %+v; want endpoint and node", r.Change)
	}
	if s := r.Change.String(); s != "round 2: endpoint 10.244.0.3 → 10.244.1.4; node node1 → node2" {
		t.Errorf("change %q", s)
	}
	if r := tb.Fold(3, whole(3, [4]int{1, 1, 1, 1}, 10)); r.Change == nil || r.Change.Endpoint != "10.244.1.4 → 10.244.0.3" {
		t.Errorf("round 3 change %+v; want the endpoint back", r.Change)
	}
}

func TestHistoryIsCapped(t *testing.T) {
	tb := &Table{}
	// Rounds alternate delivered and lost: every round after the first
	// is a path change. 100 rounds: 99 changes, the last 32 kept.
	for n := 1; n <= 100; n++ {
		if n%2 == 1 {
			tb.Fold(n, whole(n, [4]int{1, 1, 1, 1}, 10))
		} else {
			tb.Fold(n, cut(n, [2]int{1, 1}))
		}
	}
	if len(tb.History) != MaxHistory || tb.Forgotten != 99-MaxHistory || tb.History[0].Round != 100-MaxHistory+1 || tb.History[MaxHistory-1].Round != 100 {
		t.Errorf("history of %d from round %d, %d forgotten; want %d from round %d, %d forgotten",
			len(tb.History), tb.History[0].Round, tb.Forgotten, MaxHistory, 100-MaxHistory+1, 99-MaxHistory)
	}
	r := rowOf(t, tb, "pod-b", "eth0", true)
	if r.Sent != 100 || r.Seen != 50 || r.Loss() != 50 {
		t.Errorf("pod-b eth0: %+v; want 50 of 100", *r)
	}
}

func TestRoundWithoutAProbeSentCountsNothing(t *testing.T) {
	tb := &Table{}
	tb.Fold(1, whole(1, [4]int{1, 1, 1, 1}, 10))
	none := &trace.Trace{Verdict: trace.Verdict{Result: "lost", Reason: "no probe was sent"}}
	tb.Fold(2, none)
	if tb.Rounds != 2 || tb.Sent != 1 {
		t.Errorf("rounds %d sent %d; want 2 and 1", tb.Rounds, tb.Sent)
	}
	r := rowOf(t, tb, "pod-a", "eth0", true)
	if r.Sent != 1 || r.Status != "not sent" {
		t.Errorf("pod-a eth0: %+v; want sent 1, last round not sent", *r)
	}
	if v := tb.Verdict(); v.Result != "delivered" {
		t.Errorf("verdict %q; want delivered (the only probe sent was)", v.Result)
	}
}
