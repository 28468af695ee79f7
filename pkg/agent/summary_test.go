package agent

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/capture"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// udpFrame is an Ethernet/IPv4/UDP frame 10.0.0.1:1000 → 10.0.0.2:9000
// (checksums left zero: the flow key does not read them).
var udpFrame = []byte{
	0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,
	0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
	0x03, 0xe8, 0x23, 0x28, 0, 8, 0, 0,
}

func frames(s *summarizer, from time.Time, n int, every time.Duration) (written int) {
	for i := range n {
		f := capture.Frame{TS: from.Add(time.Duration(i) * every), Ifindex: 2, PktType: unix.PACKET_HOST, Len: 60, Data: udpFrame}
		if !s.take(f) {
			written++
		}
	}
	return written
}

func TestSummarizerSwitchesOnlyAboveItsRate(t *testing.T) {
	stats := func() (capture.Stats, error) { return capture.Stats{Drops: 7}, nil }
	var names ifNames
	names.set([]wire.Link{{Index: 2, Name: "eth0"}})
	t0 := time.Unix(1700000000, 0)

	// 400 frames a second for 5 s under a threshold of 500: every frame
	// is written.
	s := newSummarizer(500, time.Second, 8, &names, stats)
	if w := frames(s, t0, 2000, 2500*time.Microsecond); w != 2000 || s.on {
		t.Fatalf("400 frames/s under 500: %d of 2000 written, summarizing %v; want all written", w, s.on)
	}

	// 10,000 frames a second: the bucket of 500 empties, then the agent
	// summarizes and writes nothing more.
	s = newSummarizer(500, time.Second, 8, &names, stats)
	w := frames(s, t0, 5000, 100*time.Microsecond)
	if !s.on || w < 500 || w > 560 {
		t.Fatalf("10,000 frames/s over 500: %d written before summarizing (on %v); want about 500 (the bucket, plus its refill meanwhile)", w, s.on)
	}
	if s.packets != uint64(5000-w) || s.bytes != 60*s.packets {
		t.Errorf("summarized %d frames, %d bytes; want %d and %d", s.packets, s.bytes, 5000-w, 60*(5000-w))
	}
	var out bytes.Buffer
	wr := wire.NewWriter(&out, "a")
	s.tick(s.start.Add(500*time.Millisecond), wr) // not yet
	s.tick(s.start.Add(time.Second), wr)
	s.flush(s.start.Add(200*time.Millisecond), wr)
	_ = wr.Flush()
	r := wire.NewReader(&out)
	var sums []*wire.Summary
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		sums = append(sums, e.Summary)
	}
	if len(sums) != 2 {
		t.Fatalf("%d summaries; want one at the interval's end and the final one", len(sums))
	}
	first := sums[0]
	if !first.First || first.Above != 500 || first.Packets != s.packets || len(first.Records) != 1 || first.Drops != 0 {
		t.Errorf("first summary %+v", first)
	}
	rec := first.Records[0]
	if rec.Src != "10.0.0.1" || rec.Dst != "10.0.0.2" || rec.SrcPort != 1000 || rec.DstPort != 9000 || rec.Iface != "eth0" || rec.Dir != "in" || rec.Packets != s.packets {
		t.Errorf("record %+v", rec)
	}
	if sums[1].First || sums[1].Packets != 0 || !sums[1].Start.Equal(first.End) {
		t.Errorf("second summary %+v; want an empty interval starting where the first ended", sums[1])
	}
}
