package main

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// TestBudgetUnderFloodKeepsTheProbe runs the probing agent in pod-a while
// pod-a floods pod-b with UDP, with a --filter that admits the flood (the
// default, probe-scoped filter would keep it out in the kernel): the
// stream stays within its byte budget, says what it cut, and the probe's
// echo requests and replies are in it unless the kernel dropped them before
// they were read (counted as drops).
func TestBudgetUnderFloodKeepsTheProbe(t *testing.T) {
	const budget = 32 << 10
	l := newLab(t)
	a, b := pod(t, l, "pod-a"), pod(t, l, "pod-b")
	stop := make(chan struct{})
	sent := make(chan uint64, 1)
	var sending atomic.Uint64
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		n, err := flood(a.NetNS, net.JoinHostPort(b.IP, "9"), stop, &sending)
		if err != nil {
			t.Errorf("flood: %v", err)
		}
		sent <- n
	}()
	defer func() {
		close(stop)
		t.Logf("flood sent %d datagrams", <-sent)
	}()
	// The flood runs before the capture is armed (bounded only against a hang).
	for end := time.Now().Add(hang); sending.Load() < 1000; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the flood did not start: %d datagrams sent", sending.Load())
		}
	}
	const count = 5
	p := start(t, false, "--netns", a.NetNS, "--role", "pod", "--id", "pod-a", "--hosts", a.IP+","+b.IP,
		"--deadline", "3s", "--control", "none", "--budget", "32768", "--filter", "host "+a.IP+" and host "+b.IP,
		"--probe", "icmp", "--dst", b.IP, "--count", "5", "--interval", "200ms", "--probe-id", "4711")
	if code, _ := p.wait(); code != 0 {
		t.Fatalf("exit code %d\nstderr: %s", code, p.stderr.String())
	}
	lines := p.stream() // also: no sequence gaps, cut lines took no number
	st := checkLifecycle(t, lines, "deadline")
	var packetBytes, packets, requests, replies int
	for _, e := range lines {
		if e.Kind != wire.KindPacket {
			continue
		}
		packets++
		packetBytes += p.lineBytes[e.Seq]
		if l4 := e.Packet.L4; l4 != nil && l4.ICMPID == 4711 {
			switch l4.Type {
			case "echo-request":
				requests++
			case "echo-reply":
				replies++
			}
		}
	}
	ran := p.exited.Sub(p.started)
	t.Logf("ran %v; stats %+v; %d packet lines, %d bytes; echo requests %d, replies %d", ran.Round(time.Millisecond), *st, packets, packetBytes, requests, replies)
	if st.Budget != budget || st.CutLines == 0 || st.CutBytes == 0 {
		t.Errorf("stats %+v: want budget %d and the lines it cut", *st, budget)
	}
	if st.Emitted != uint64(packets) {
		t.Errorf("stats say %d packet lines emitted, the stream has %d", st.Emitted, packets)
	}
	// The bucket starts full (one second) and refills at the budget for as
	// long as the agent ran.
	if limit := budget * (1 + ran.Seconds()); float64(packetBytes) > limit {
		t.Errorf("%d bytes of packet lines in %v: over the budget (%d/s, one second of burst: %.0f)", packetBytes, ran, budget, limit)
	}
	// The budget keeps its reserve for small flows such as the probe's, beside
	// the one big flow of the flood: it cuts no probe frame. A frame can still be lost before
	// the agent reads it: when the reader falls behind the flood (a loaded
	// machine, a -race build) the kernel drops frames from the full ring,
	// probe frames among them, and says so in the drop counter the user sees.
	if requests > count || replies > count {
		t.Errorf("echo requests %d, replies %d in the stream; %d probes were sent", requests, replies, count)
	}
	if requests < count || replies < count {
		if st.Drops == 0 {
			t.Errorf("echo requests %d, replies %d in the stream, want %d each: with no frame dropped by the kernel, the budget cut a probe frame", requests, replies, count)
		} else {
			t.Logf("echo requests %d, replies %d of %d: the kernel dropped %d frames from the ring while the reader was behind the flood", requests, replies, count, st.Drops)
		}
	}
}
