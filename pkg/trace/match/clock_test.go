package match_test

import (
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// A synthetic two-node trace: pod-a on node1, pod-b on node2, routed
// through each node's host veth and NIC (eth0, veth peers of one
// another), with routes in the nodes' topology. node2's clock (and so
// pod-b's) runs skew ahead of node1's; the underlay takes up toward node2
// and back toward node1; pod-b answers after 100 µs.
type synth struct {
	skew, up, back time.Duration
	dropAt         string // "node2/eth0": the request is not seen there and after
}

func (c synth) streams() (trace.Session, []trace.Stream) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := &wire.ProbeSpec{Proto: "icmp", Dst: "10.244.2.2", Count: 1, ID: 4711}
	s := trace.Session{
		Src:   trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: "10.244.1.2", Node: "node1", Agent: "pod-a"},
		Dst:   trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: "10.244.2.2", Node: "node2", Agent: "pod-b"},
		Probe: spec,
	}
	hello := func(role, node string, links ...wire.Link) *wire.Envelope {
		for i := range links {
			links[i].Captured, links[i].State = true, "up"
		}
		return &wire.Envelope{Kind: wire.KindHello, Hello: &wire.Hello{Role: role, Node: node, Links: links}}
	}
	topo := func(routes ...wire.Route) *wire.Envelope {
		return &wire.Envelope{Kind: wire.KindTopology, Topology: &wire.Topology{When: "before", Routes: routes}}
	}
	pkt := func(at time.Duration, domainSkew time.Duration, idx int, name, dir string, reply bool) *wire.Envelope {
		p := &wire.Packet{TS: t0.Add(at + domainSkew), Index: idx, Iface: name, Dir: dir,
			IP: &wire.IP{Version: 4, Src: "10.244.1.2", Dst: "10.244.2.2", Proto: "icmp"},
			L4: &wire.L4{Proto: "icmp", Type: "echo-request", ICMPID: 4711, ICMPSeq: 1}, FP: "req", Summary: "ICMP echo request"}
		if reply {
			p.IP.Src, p.IP.Dst, p.L4.Type, p.FP, p.Summary = "10.244.2.2", "10.244.1.2", "echo-reply", "rep", "ICMP echo reply"
		}
		return &wire.Envelope{Kind: wire.KindPacket, Packet: p}
	}
	podA := trace.Stream{Agent: "pod-a", Display: "pod-a", Lines: []*wire.Envelope{
		hello(wire.RolePod, "node1", wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 10, Addrs: []string{"10.244.1.2/32"}}),
	}}
	node1 := trace.Stream{Agent: "node1", Display: "node1", Lines: []*wire.Envelope{
		hello(wire.RoleNode, "node1",
			wire.Link{Index: 10, Name: "veth-a", Kind: "veth", IfLink: 2},
			wire.Link{Index: 3, Name: "eth0", Kind: "veth", IfLink: 4, Addrs: []string{"192.168.50.1/24"}}),
		topo(wire.Route{Dst: "10.244.1.2/32", Index: 10, Dev: "veth-a"}, wire.Route{Dst: "10.244.2.0/24", Gateway: "192.168.50.2", Index: 3, Dev: "eth0"}),
	}}
	node2 := trace.Stream{Agent: "node2", Display: "node2", Lines: []*wire.Envelope{
		hello(wire.RoleNode, "node2",
			wire.Link{Index: 4, Name: "eth0", Kind: "veth", IfLink: 3, Addrs: []string{"192.168.50.2/24"}},
			wire.Link{Index: 11, Name: "veth-b", Kind: "veth", IfLink: 2}),
		topo(wire.Route{Dst: "10.244.2.2/32", Index: 11, Dev: "veth-b"}, wire.Route{Dst: "10.244.1.0/24", Gateway: "192.168.50.1", Index: 4, Dev: "eth0"}),
	}}
	podB := trace.Stream{Agent: "pod-b", Display: "pod-b", Lines: []*wire.Envelope{
		hello(wire.RolePod, "node2", wire.Link{Index: 2, Name: "eth0", Kind: "veth", IfLink: 11, Addrs: []string{"10.244.2.2/32"}}),
	}}
	us := time.Microsecond
	// Request: node1 hops in node1's clock, node2 hops in node2's.
	at := time.Duration(0)
	podA.Lines = append(podA.Lines, pkt(at, 0, 2, "eth0", "out", false))
	node1.Lines = append(node1.Lines, pkt(at+5*us, 0, 10, "veth-a", "in", false), pkt(at+20*us, 0, 3, "eth0", "out", false))
	at += 20*us + c.up
	delivered := c.dropAt == ""
	if delivered {
		node2.Lines = append(node2.Lines, pkt(at, c.skew, 4, "eth0", "in", false), pkt(at+10*us, c.skew, 11, "veth-b", "out", false))
		podB.Lines = append(podB.Lines, pkt(at+15*us, c.skew, 2, "eth0", "in", false))
		// Reply, 100 µs later.
		at += 115 * us
		podB.Lines = append(podB.Lines, pkt(at, c.skew, 2, "eth0", "out", true))
		node2.Lines = append(node2.Lines, pkt(at+5*us, c.skew, 11, "veth-b", "in", true), pkt(at+20*us, c.skew, 4, "eth0", "out", true))
		at += 20*us + c.back
		node1.Lines = append(node1.Lines, pkt(at, 0, 3, "eth0", "in", true), pkt(at+10*us, 0, 10, "veth-a", "out", true))
		podA.Lines = append(podA.Lines, pkt(at+15*us, 0, 2, "eth0", "in", true))
	}
	podA.Lines = append(podA.Lines, &wire.Envelope{Kind: wire.KindProbe, Probe: &wire.Probe{ID: "icmp/1", Event: "sent", TS: t0}})
	return s, []trace.Stream{podA, node1, node2, podB}
}

func TestClockOffsetRecoveredFromSyntheticSkew(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      synth
		applied bool
	}{
		{"node2 5 ms ahead, asymmetric underlay", synth{skew: 5 * time.Millisecond, up: 40 * time.Microsecond, back: 20 * time.Microsecond}, true},
		{"node2 3 ms behind", synth{skew: -3 * time.Millisecond, up: 30 * time.Microsecond, back: 30 * time.Microsecond}, true},
		{"one clock", synth{skew: 0, up: 25 * time.Microsecond, back: 15 * time.Microsecond}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, streams := c.in.streams()
			tr := merge.Merge(s, streams)
			if len(tr.Clocks) != 1 {
				t.Fatalf("clock estimates %+v; want one (node2 against node1)", tr.Clocks)
			}
			e := tr.Clocks[0]
			t.Logf("%s", e)
			if e.Ref != "node1" || e.Node != "node2" || e.Pairs != 1 {
				t.Errorf("estimate %+v; want node2 against node1 from 1 pair", e)
			}
			// The stated error bound holds: half the wire round trip.
			if err := (e.Offset - c.in.skew).Abs(); err > e.Bound {
				t.Errorf("offset %v is %v off the true %v, more than its bound %v", e.Offset, err, c.in.skew, e.Bound)
			}
			if want := (c.in.up + c.in.back) / 2; e.Bound != want {
				t.Errorf("bound %v; want half the underlay round trip %v", e.Bound, want)
			}
			if e.Applied != c.applied {
				t.Errorf("applied %v; want %v", e.Applied, c.applied)
			}
			if tr.Verdict.Result != "delivered" {
				t.Fatalf("verdict %+v; want delivered", tr.Verdict)
			}
			// Hops are in path order, and after correction every delta
			// is non-negative; the one across the nodes is flagged.
			for _, j := range tr.Journeys {
				var got []string
				cross := 0
				for _, o := range j.Obs {
					got = append(got, o.Agent.Name+":"+o.If.Name)
					if o.HasDelta && o.Delta < 0 {
						t.Errorf("journey %d: negative delta %v at %s after correction", j.ID, o.Delta, o.If.Name)
					}
					if o.CrossClock {
						cross++
						if d := o.Delta; d < 0 || d > 60*time.Microsecond {
							t.Errorf("one-way estimate %v across the nodes; want within the underlay's 15..40 µs ± bound", d)
						}
					}
				}
				want := "pod-a:eth0 node1:veth-a node1:eth0 node2:eth0 node2:veth-b pod-b:eth0"
				if j.IsReply {
					want = "pod-b:eth0 node2:veth-b node2:eth0 node1:eth0 node1:veth-a pod-a:eth0"
				}
				if strings.Join(got, " ") != want || cross != 1 {
					t.Errorf("journey %d hops %v (cross-node deltas %d); want %s with 1", j.ID, got, cross, want)
				}
			}
			roles := ""
			for _, h := range tr.Path {
				roles += h.Role + ","
			}
			if roles != "pod eth0,host veth,node NIC (underlay),peer node NIC,host veth,pod eth0," {
				t.Errorf("path roles %s", roles)
			}
			if !strings.Contains(tr.Shape, "host-gw") {
				t.Errorf("shape %q; want host-gw routes", tr.Shape)
			}
		})
	}
}

func TestLossBetweenNodesIsOnTheUnderlay(t *testing.T) {
	s, streams := synth{up: 30 * time.Microsecond, back: 30 * time.Microsecond, dropAt: "node2/eth0"}.streams()
	tr := merge.Merge(s, streams)
	v := tr.Verdict
	if v.Result != "lost" || !strings.HasPrefix(v.Reason, "lost on the underlay between node1 eth0 and node2 eth0") ||
		!strings.Contains(v.NotSeen, "node2 eth0") || !strings.Contains(v.LastSeen, "node1 eth0") {
		t.Fatalf("verdict %+v; want lost on the underlay between node1 eth0 and node2 eth0", v)
	}
	if len(tr.Clocks) != 1 || tr.Clocks[0].Pairs != 0 || tr.Clocks[0].Applied {
		t.Errorf("clocks %+v; want no pair and nothing applied", tr.Clocks)
	}
}
