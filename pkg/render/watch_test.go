package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/watch"
)

// A watch's table after two rounds, written by hand: round 1 delivered,
// round 2 lost at pod-b's veth.
func watchTable() (*watch.Table, *watch.Round, *watch.Round) {
	aVeth := &watch.Row{Key: watch.Key{Place: "node1", Iface: "veth-a (pod-a)", Toward: true}, Role: "host veth", Sent: 2, Seen: 2, First: 1,
		Deltas: 2, Last: 30 * time.Microsecond, Min: 10 * time.Microsecond, Max: 30 * time.Microsecond, Sum: 40 * time.Microsecond, Status: "seen"}
	bVeth := &watch.Row{Key: watch.Key{Place: "node1", Iface: "veth-b (pod-b)", Toward: true}, Role: "host veth", Sent: 2, Seen: 1, First: 1,
		Deltas: 1, Last: 5 * time.Microsecond, Min: 5 * time.Microsecond, Max: 5 * time.Microsecond, Sum: 5 * time.Microsecond, Status: "not seen"}
	r1 := &watch.Round{N: 1, Verdict: trace.Verdict{Result: "delivered", RTT: 40 * time.Microsecond, Sent: 1, Delivered: 1}}
	ch := &watch.Change{Round: 2, Disappeared: []string{"→ node1 veth-b (pod-b)"}}
	r2 := &watch.Round{N: 2, Verdict: trace.Verdict{Result: "lost", Sent: 1, LastSeen: "node1 cni0", NotSeen: "node1 veth-b (pod-b)"}, Change: ch}
	tb := &watch.Table{Rows: []*watch.Row{aVeth, bVeth}, Rounds: 2, Sent: 2, Delivered: 1, History: []watch.Change{*ch}, Last: r2, LastLost: r2}
	return tb, r1, r2
}

// On a terminal each round redraws the table in place: the first drawing
// as it is, each next one after moving the cursor up over the lines of
// the one before (ESC [ n A) and clearing below (ESC [ J). The table of
// watchTable is 6 lines: the column heads, 2 rows, the last round, the
// "path changes" head and its one change.
func TestWatchTextRedrawsInPlaceOnATerminal(t *testing.T) {
	tb, _, r2 := watchTable()
	var b bytes.Buffer
	p := NewWatchText(&b, true, false)
	if err := p.Round(tb, r2); err != nil {
		t.Fatal(err)
	}
	first := b.String()
	if strings.Contains(first, "\x1b") {
		t.Errorf("the first drawing moves nothing (and has no color here):\n%q", first)
	}
	if n := strings.Count(first, "\n"); n != 6 {
		t.Errorf("first drawing has %d lines; want 6:\n%s", n, first)
	}
	b.Reset()
	if err := p.Round(tb, r2); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "\x1b[6A\r\x1b[J") || strings.TrimPrefix(b.String(), "\x1b[6A\r\x1b[J") != first {
		t.Errorf("the second drawing must go up 6 lines, clear, and draw the same table:\n%q", b.String())
	}
	b.Reset()
	if err := p.Final(tb, &trace.Trace{}, tb.Verdict(), "interrupted after 2 rounds"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "\x1b[6A\r\x1b[J"+first) {
		t.Errorf("the final drawing redraws the table in place:\n%q", out)
	}
	rest := strings.TrimPrefix(out, "\x1b[6A\r\x1b[J"+first)
	want := "note    interrupted after 2 rounds\nverdict PARTIAL · last seen node1 cni0 · not seen node1 veth-b (pod-b) · 1 of 2 rounds delivered; the last lost one: round 2\n"
	if rest != want {
		t.Errorf("below the table:\n%q\nwant\n%q", rest, want)
	}
}

// Elsewhere (a pipe, a file) nothing moves: each round appends one line,
// a path change one more, and the table comes once at the end.
func TestWatchTextAppendsRoundsWhenNotATerminal(t *testing.T) {
	tb, r1, r2 := watchTable()
	var b bytes.Buffer
	p := NewWatchText(&b, false, false)
	if err := p.Round(tb, r1); err != nil {
		t.Fatal(err)
	}
	if err := p.Round(tb, r2); err != nil {
		t.Fatal(err)
	}
	want := "round 1 · DELIVERED · rtt 40 µs\n" +
		"round 2 · LOST · last seen node1 cni0 · not seen node1 veth-b (pod-b)\n" +
		"  path change round 2: no longer seen at → node1 veth-b (pod-b)\n"
	if b.String() != want {
		t.Fatalf("rounds:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := p.Final(tb, &trace.Trace{}, tb.Verdict(), ""); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "\x1b") {
		t.Errorf("no escape sequence off a terminal:\n%q", out)
	}
	for _, w := range []string{
		"→ node1  veth-a (pod-a)      2     2   0.0%      30 µs     10 µs     20 µs     30 µs  seen\n",
		"→ node1  veth-b (pod-b)      2     1  50.0%       5 µs      5 µs      5 µs      5 µs  not seen\n",
		"path changes\n  round 2: no longer seen at → node1 veth-b (pod-b)\n",
		"verdict PARTIAL",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("final output lacks %q:\n%s", w, out)
		}
	}
}

// Colored on a terminal, the table reads exactly as the plain one once
// its colors are removed, and the change of the round just shown is
// highlighted.
func TestWatchTextColorsOnlyAddColor(t *testing.T) {
	tb, _, r2 := watchTable()
	var plain, colored bytes.Buffer
	if err := NewWatchText(&plain, true, false).Round(tb, r2); err != nil {
		t.Fatal(err)
	}
	if err := NewWatchText(&colored, true, true).Round(tb, r2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stripANSI(colored.Bytes()), plain.Bytes()) {
		t.Errorf("colored without colors:\n%s\nplain:\n%s", stripANSI(colored.Bytes()), plain.Bytes())
	}
	if !strings.Contains(colored.String(), "\x1b[33;1m  round 2: no longer seen") {
		t.Errorf("the last round's path change is not highlighted:\n%q", colored.String())
	}
}

func TestWatchJSONRoundAndVerdictLines(t *testing.T) {
	tb, _, r2 := watchTable()
	var b bytes.Buffer
	j := NewWatchJSON(&b)
	if err := j.Round(r2); err != nil {
		t.Fatal(err)
	}
	if err := j.Final(tb, &trace.Trace{Warnings: []string{"w"}}, tb.Verdict(), WatchSummary{Late: 2, Interrupted: true}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines; want round, warning, verdict:\n%s", len(lines), b.String())
	}
	var round struct {
		Kind    string `json:"kind"`
		Round   int    `json:"round"`
		Result  string `json:"result"`
		NotSeen string `json:"notSeen"`
		Hops    []any  `json:"hops"`
		Change  struct {
			Disappeared []string `json:"disappeared"`
		} `json:"change"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &round); err != nil {
		t.Fatal(err)
	}
	if round.Kind != "round" || round.Round != 2 || round.Result != "lost" || round.NotSeen != "node1 veth-b (pod-b)" || round.Hops == nil ||
		len(round.Change.Disappeared) != 1 {
		t.Errorf("round line %s", lines[0])
	}
	var v struct {
		Kind   string `json:"kind"`
		Result string `json:"result"`
		Watch  struct {
			Rounds      int  `json:"rounds"`
			LateLines   int  `json:"lateLines"`
			Interrupted bool `json:"interrupted"`
			Hops        []struct {
				Iface string  `json:"iface"`
				Sent  int     `json:"sent"`
				Seen  int     `json:"seen"`
				Loss  float64 `json:"lossPct"`
				AvgNs int64   `json:"avgNs"`
				MinNs int64   `json:"minNs"`
				Last  string  `json:"last"`
			} `json:"hops"`
		} `json:"watch"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &v); err != nil {
		t.Fatal(err)
	}
	if v.Kind != "verdict" || v.Result != "partial" || v.Watch.Rounds != 2 || v.Watch.LateLines != 2 || !v.Watch.Interrupted || len(v.Watch.Hops) != 2 {
		t.Fatalf("verdict line %s", lines[2])
	}
	if h := v.Watch.Hops[0]; h.Sent != 2 || h.Seen != 2 || h.Loss != 0 || h.AvgNs != 20000 || h.MinNs != 10000 || h.Last != "seen" {
		t.Errorf("hop %+v; want 2/2, avg 20 µs, min 10 µs", h)
	}
	if h := v.Watch.Hops[1]; h.Loss != 50 || h.Last != "not seen" {
		t.Errorf("hop %+v; want 50%% loss, not seen last", h)
	}
}
