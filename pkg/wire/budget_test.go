package wire

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// fakeClock is a Writer clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newBudgetWriter(buf *bytes.Buffer, rate int64) (*Writer, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	w := NewWriter(buf, "pod-a")
	w.now = clk.now
	w.SetBudget(rate)
	return w, clk
}

// readAll reads a stream back and returns its lines by kind, with the
// bytes of each kind's lines.
func readAll(t *testing.T, b []byte) (*Reader, map[string]int, map[string]int) {
	t.Helper()
	r := NewReader(bytes.NewReader(b))
	n, size := map[string]int{}, map[string]int{}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return r, n, size
		}
		if err != nil {
			t.Fatal(err)
		}
		n[e.Kind]++
		size[e.Kind] += r.LineBytes
	}
}

func TestBudgetCutsPacketAndChangeLinesNeverControlLines(t *testing.T) {
	const rate = 2000
	var buf bytes.Buffer
	w, _ := newBudgetWriter(&buf, rate)
	big := make([]string, 100)
	for i := range big {
		big[i] = strings.Repeat("w", 100) // a hello of ~10 KB: over the budget alone
	}
	if err := w.Emit(&Hello{Role: RolePod, Warnings: big}); err != nil {
		t.Fatal(err)
	}
	if err := w.Emit(&Topology{When: "before", Routes: make([]Route, 200)}); err != nil {
		t.Fatal(err)
	}
	var cut int
	for i := 0; i < 100; i++ {
		err := w.Emit(&Packet{Iface: "eth0", Summary: "UDP 10.0.0.1:1 > 10.0.0.2:2", FP: "0123456789abcdef"})
		if err == ErrOverBudget {
			cut++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Emit(&Change{What: "neigh", Action: "new", Neigh: &Neigh{Dev: "eth0", IP: "10.0.0.2"}, Was: strings.Repeat("x", 400)}); err != ErrOverBudget {
		t.Fatalf("a change line over the budget: got %v, want ErrOverBudget", err)
	}
	for _, p := range []any{&Probe{ID: "icmp/1", Event: "reply"}, &Error{Msg: "x"}, &Stats{Socket: "all"},
		&Topology{When: "after", Routes: make([]Route, 200)}, &Bye{Reason: "stopped"}} {
		if err := w.Emit(p); err != nil {
			t.Fatalf("%T over the budget: %v (control lines are never cut)", p, err)
		}
	}
	_ = w.Flush()

	r, n, size := readAll(t, buf.Bytes())
	lines, bytesCut := w.Cut()
	if n[KindHello] != 1 || n[KindTopology] != 2 || n[KindProbe] != 1 || n[KindError] != 1 || n[KindStats] != 1 || n[KindBye] != 1 {
		t.Errorf("control lines: %v", n)
	}
	if size[KindPacket] > rate || n[KindPacket] == 0 {
		t.Errorf("%d packet lines of %d bytes written; want some, at most %d bytes (one second of budget)", n[KindPacket], size[KindPacket], rate)
	}
	if int(lines) != cut+1 || n[KindPacket]+cut != 100 || n[KindChange] != 0 {
		t.Errorf("cut %d lines (%d packets returned ErrOverBudget), read %d packets, %d changes", lines, cut, n[KindPacket], n[KindChange])
	}
	if bytesCut < uint64(cut)*uint64(size[KindPacket]/n[KindPacket]) {
		t.Errorf("cut bytes %d for %d lines of ~%d bytes", bytesCut, lines, size[KindPacket]/n[KindPacket])
	}
	if r.Gaps != 0 {
		t.Errorf("cut lines show as %d sequence gaps; they take no sequence number", r.Gaps)
	}
}

func TestBudgetRefillsAtItsRateAndHoldsOneSecond(t *testing.T) {
	const rate = 10000
	var buf bytes.Buffer
	w, clk := newBudgetWriter(&buf, rate)
	port := 0
	line := func() int {
		b := len(buf.Bytes())
		port++ // a flow of its own: small flows may spend the whole bucket
		if err := w.Emit(&Packet{Iface: "eth0", Summary: "x", IP: &IP{Proto: "udp"}, L4: &L4{SrcPort: port}}); err != nil {
			return 0
		}
		_ = w.Flush()
		return len(buf.Bytes()) - b
	}
	spend := func() (n int) {
		for {
			k := line()
			if k == 0 {
				return n
			}
			n += k
		}
	}
	first := spend()
	clk.add(250 * time.Millisecond)
	quarter := spend()
	clk.add(time.Hour) // an idle hour buys one second, not an hour
	full := spend()
	if first > rate || first < rate*9/10 {
		t.Errorf("a fresh budget wrote %d bytes; want about %d", first, rate)
	}
	if quarter > rate/4 || quarter < rate/4*8/10 {
		t.Errorf("250 ms later: %d bytes; want about %d", quarter, rate/4)
	}
	if full > rate || full < rate*9/10 {
		t.Errorf("after an idle hour: %d bytes; want about %d (the bucket holds one second)", full, rate)
	}
}

func TestNoBudgetCutsNothing(t *testing.T) {
	var buf bytes.Buffer
	w, _ := newBudgetWriter(&buf, 0)
	for i := 0; i < 1000; i++ {
		if err := w.Emit(&Packet{Iface: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := w.Cut(); l != 0 {
		t.Fatalf("cut %d lines without a budget", l)
	}
}

func TestHeldLinesSpendTheBudgetToo(t *testing.T) {
	var buf bytes.Buffer
	w, _ := newBudgetWriter(&buf, 1000)
	w.Hold(1 << 20)
	_ = w.Emit(&Hello{Role: RolePod})
	for i := 0; i < 50; i++ {
		_ = w.Emit(&Change{What: "fdb", FDB: &FDB{Port: "veth1", MAC: "0a:58:0a:f4:00:02"}})
	}
	if err := w.Release(); err != nil {
		t.Fatal(err)
	}
	_, n, size := readAll(t, buf.Bytes())
	if n[KindHello] != 1 || n[KindChange] == 0 || size[KindChange] > 1000 {
		t.Fatalf("held: %v, %d bytes of changes; want hello and at most 1000 bytes of changes", n, size[KindChange])
	}
}

func TestBudgetKeepsAReserveForSmallFlowsBesideAFlood(t *testing.T) {
	const rate = 20000
	var buf bytes.Buffer
	w, clk := newBudgetWriter(&buf, rate)
	flood := &Packet{Iface: "eth0", Summary: "UDP 10.244.0.2:40000 > 10.244.0.3:8081",
		IP: &IP{Version: 4, Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "udp"}, L4: &L4{Proto: "udp", SrcPort: 40000, DstPort: 8081}}
	probe := func(seq int) *Packet {
		return &Packet{Iface: "eth0", Summary: "ICMP echo request",
			IP: &IP{Version: 4, Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "icmp"}, L4: &L4{Proto: "icmp", Type: "echo-request", ICMPID: 4711, ICMPSeq: seq}}
	}
	var floodOK, probeOK, probes int
	// Three seconds of a flood at 10,000 lines a second (a line every
	// 100 µs), a probe frame every 50 ms among it.
	for i := 0; i < 30000; i++ {
		clk.add(100 * time.Microsecond)
		if w.Emit(flood) == nil {
			floodOK++
		}
		if i%500 == 0 {
			probes++
			if w.Emit(probe(i)) == nil {
				probeOK++
			}
		}
	}
	_ = w.Flush()
	if probeOK != probes {
		t.Errorf("%d of %d probe frames written beside the flood; want all", probeOK, probes)
	}
	if floodOK == 0 || floodOK > 30000/10 {
		t.Errorf("%d flood lines written; want some, and most cut", floodOK)
	}
	if b := buf.Len(); b > 4*rate {
		t.Errorf("%d bytes in 3 s: over the budget (%d/s, one second of burst)", b, rate)
	}
}
