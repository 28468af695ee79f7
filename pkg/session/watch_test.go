package session

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

type rounds struct {
	mu     sync.Mutex
	armed  int
	got    []int
	traces []*trace.Trace
}

func (r *rounds) Armed(*trace.Trace, time.Duration) { r.mu.Lock(); r.armed++; r.mu.Unlock() }
func (r *rounds) Round(n int, t *trace.Trace) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
	r.traces = append(r.traces, t)
}

// A watch of 3 rounds, played by hand: the prober writes, for each
// round, its sent event, its echo request and reply (ICMP sequence = the
// round) and its outcome, and in round 2 an ARP exchange (no probe
// identity: it belongs to the round in flight); pod-b writes the request
// of each round as it arrives. Each round reaches the watcher once, in
// order, with its own probe events and frames only.
func TestWatchFilesEachLineUnderItsRound(t *testing.T) {
	const id = 4711
	pkt := func(dir, typ string, seq int) string {
		src, dst := "10.244.0.2", "10.244.0.3"
		if typ == "echo-reply" {
			src, dst = dst, src
		}
		return fmt.Sprintf(`{"ts":"2026-12-01T10:00:0%d.0001Z","ifindex":2,"iface":"eth0","dir":%q,"pkttype":"host","len":98,"caplen":98,`+
			`"eth":{"src":"0a:58:0a:f4:00:02","dst":"0a:58:0a:f4:00:03","type":"ipv4"},"ip":{"version":4,"src":%q,"dst":%q,"id":%d,"ttl":64,"proto":"icmp","len":84},`+
			`"l4":{"proto":"icmp","type":%q,"icmpId":%d,"icmpSeq":%d},"summary":"ICMP","fp":"%016x"}`, seq, dir, src, dst, seq, typ, id, seq, seq*10+len(typ))
	}
	arp := `{"ts":"2026-12-01T10:00:02.00005Z","ifindex":2,"iface":"eth0","dir":"out","pkttype":"outgoing","len":42,"caplen":42,` +
		`"eth":{"src":"0a:58:0a:f4:00:02","dst":"ff:ff:ff:ff:ff:ff","type":"arp"},"arp":{"op":"who-has","senderMac":"0a:58:0a:f4:00:02","senderIp":"10.244.0.2","targetMac":"00:00:00:00:00:00","targetIp":"10.244.0.3"},"summary":"ARP","fp":"00000000000000aa"}`
	stopped := make(chan struct{})
	var stopOnce sync.Once
	l := &fakeLauncher{written: map[string]*atomic.Int64{}, play: func(agent string, w io.Writer) {
		seq := 0
		emit := func(kind, payload string) {
			seq++
			io.WriteString(w, line(seq, agent, kind, payload))
		}
		emit("hello", `{"role":"pod","netnsInode":1,"pid":1,"filter":"","snaplen":192,"deadline":"2026-12-01T10:01:00Z","links":[],"clock":"realtime"}`)
		for n := 1; n <= 3; n++ {
			time.Sleep(60 * time.Millisecond)
			if agent == "pod-b" {
				emit("packet", pkt("in", "echo-request", n))
				continue
			}
			emit("probe", fmt.Sprintf(`{"id":"icmp/%d","seq":%d,"event":"sent","ts":"2026-12-01T10:00:0%dZ"}`, n, n, n))
			if n == 2 {
				emit("packet", arp)
			}
			emit("packet", pkt("out", "echo-request", n))
			emit("packet", pkt("in", "echo-reply", n))
			emit("probe", fmt.Sprintf(`{"id":"icmp/%d","seq":%d,"event":"reply","ts":"2026-12-01T10:00:0%d.0002Z","rtt":200000,"done":%v}`, n, n, n, n == 3))
		}
		select { // until the session stops the agents (bounded)
		case <-stopped:
		case <-time.After(5 * time.Second):
		}
		emit("bye", `{"reason":"stopped"}`)
	}}
	p := plan()
	p.Session.Probe.Count = 3
	w := &rounds{}
	res, err := Watch(context.Background(), &stopOnStart{l, func() { stopOnce.Do(func() { close(stopped) }) }}, p, Options{RoundGrace: 500 * time.Millisecond}, w)
	if err != nil {
		t.Fatal(err)
	}
	if w.armed != 1 || fmt.Sprint(w.got) != "[1 2 3]" || res.Rounds != 3 || res.Interrupted || res.Ended {
		t.Fatalf("armed %d, rounds %v (%d), interrupted %v, ended %v; want armed once, rounds [1 2 3]", w.armed, w.got, res.Rounds, res.Interrupted, res.Ended)
	}
	for i, tr := range w.traces {
		n := i + 1
		for _, pr := range tr.Probes {
			if pr.Seq != n {
				t.Errorf("round %d holds probe event %s of round %d", n, pr.ID, pr.Seq)
			}
		}
		if len(tr.Probes) != 2 {
			t.Errorf("round %d: %d probe events; want sent and reply", n, len(tr.Probes))
		}
		arps, echoes := 0, 0
		for _, o := range tr.Packets {
			switch {
			case o.P.ARP != nil:
				arps++
			case o.P.L4.ICMPSeq != n:
				t.Errorf("round %d holds the echo of round %d", n, o.P.L4.ICMPSeq)
			default:
				echoes++
			}
		}
		// pod-a's request and reply, and pod-b's copy of the request.
		if echoes != 3 {
			t.Errorf("round %d: %d echo frames; want 3", n, echoes)
		}
		if want := map[bool]int{true: 1, false: 0}[n == 2]; arps != want {
			t.Errorf("round %d: %d ARP frames; want %d", n, arps, want)
		}
		if tr.Verdict.Sent != 1 {
			t.Errorf("round %d judged %d probes; want its own", n, tr.Verdict.Sent)
		}
	}
	if res.Trace == nil || len(res.Trace.Agents) != 2 || res.Trace.Agents[0].Bye != "stopped" {
		t.Errorf("the watch's own trace must hold both agents and their bye")
	}
}

// stopOnStart tells the played agents that the session stopped them.
type stopOnStart struct {
	*fakeLauncher
	stopped func()
}

func (s *stopOnStart) Start(ctx context.Context, sp launch.Spec) (launch.Agent, error) {
	a, err := s.fakeLauncher.Start(ctx, sp)
	if err != nil {
		return nil, err
	}
	return &stoppingAgent{a.(*fakeAgent), s.stopped}, nil
}

type stoppingAgent struct {
	*fakeAgent
	stopped func()
}

func (a *stoppingAgent) Send(cmd string) error {
	if c, _ := wire.ParseControl(cmd); c.Cmd == wire.CmdStop {
		a.stopped()
	}
	return nil
}
