// Package watch folds the rounds of a watch (`--watch`: one probe a round,
// each round merged into a trace of its own) into per-hop statistics: for
// each interface the probe or its answer crossed, the rounds sent since it
// first saw one, the rounds it saw, the loss, and the last, min, average
// and max delta from the previous hop; the verdict of the last round; and
// the history of path changes (a hop appearing or disappearing, another
// endpoint, another node). It reads finished traces, never the engine that
// built them, and keeps a bounded amount whatever the watch's length: a
// round is dropped once folded, the rows are bounded by the hops, the
// history by MaxHistory.
package watch

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// Bounds of what a table keeps.
const (
	MaxHistory = 32  // path changes kept; older ones are counted
	MaxRows    = 128 // hops with a row; a hop beyond them is counted
	MaxRTTs    = 1000
)

// Key is one row: an interface of one agent, crossed in one direction.
type Key struct {
	Place  string `json:"agent"` // the agent's display name
	Iface  string `json:"iface"` // the interface's label: "cni0", "veth9f8e7d6c (pod-b)"
	Toward bool   `json:"toward"`
}

func (k Key) String() string {
	arrow := "→"
	if !k.Toward {
		arrow = "←"
	}
	return arrow + " " + k.Place + " " + k.Iface
}

// Row is what one hop saw over the rounds.
type Row struct {
	Key
	Role string `json:"role"`
	// Sent counts the rounds whose probe was sent since the row's first
	// round (the round its hop first saw the probe or was expected to);
	// Seen those in which the hop saw it.
	Sent  int `json:"sent"`
	Seen  int `json:"seen"`
	First int `json:"firstRound"`
	// Deltas: the time from the previous hop of the same packet, over the
	// rounds that saw it here with a previous hop (the first hop of a
	// journey has none).
	Deltas     int           `json:"deltas"`
	Last       time.Duration `json:"lastNs"`
	Min        time.Duration `json:"minNs"`
	Max        time.Duration `json:"maxNs"`
	Sum        time.Duration `json:"-"`
	CrossClock bool          `json:"crossClock,omitempty"` // a delta spans two nodes' clocks: one-way estimates
	// Status in the last round: "seen", "not seen", or "not sent" when
	// the last round sent no probe.
	Status string `json:"last"`
}

// Loss is the share of the row's rounds that it did not see, in percent.
func (r *Row) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * float64(r.Sent-r.Seen) / float64(r.Sent)
}

// Avg is the mean delta, 0 without one.
func (r *Row) Avg() time.Duration {
	if r.Deltas == 0 {
		return 0
	}
	return r.Sum / time.Duration(r.Deltas)
}

// Hop is one hop of one round.
type Hop struct {
	Key
	Role       string        `json:"role"`
	Seen       bool          `json:"seen"`
	Delta      time.Duration `json:"deltaNs,omitempty"`
	HasDelta   bool          `json:"-"`
	CrossClock bool          `json:"crossClock,omitempty"`
}

// Change is a path change between two consecutive rounds that sent a probe.
type Change struct {
	Round       int      `json:"round"`
	Appeared    []string `json:"appeared,omitempty"`    // hops that saw this round's probe and not the previous one's
	Disappeared []string `json:"disappeared,omitempty"` // hops that saw the previous round's probe and not this one's
	Endpoint    string   `json:"endpoint,omitempty"`    // "10.244.0.3 → 10.244.1.4": the destination changed (a Service's endpoint)
	Node        string   `json:"node,omitempty"`        // "node-1 → node-2": the destination's node changed
}

// String is the change in one line.
func (c *Change) String() string {
	var parts []string
	if c.Endpoint != "" {
		parts = append(parts, "endpoint "+c.Endpoint)
	}
	if c.Node != "" {
		parts = append(parts, "node "+c.Node)
	}
	if len(c.Disappeared) > 0 {
		parts = append(parts, "no longer seen at "+strings.Join(c.Disappeared, ", "))
	}
	if len(c.Appeared) > 0 {
		parts = append(parts, "now seen at "+strings.Join(c.Appeared, ", "))
	}
	return fmt.Sprintf("round %d: %s", c.Round, strings.Join(parts, "; "))
}

// Round is one folded round: what the renderers print for it.
type Round struct {
	N       int
	Sent    time.Time // when its probe left (the prober's clock); zero if it was not sent
	Verdict trace.Verdict
	Hops    []Hop   // in path order: the probe's hops, then its answer's
	Change  *Change // the path change from the previous round, if any
}

// Table is the state of a watch.
type Table struct {
	Rows      []*Row
	Rounds    int // rounds folded
	Sent      int // rounds whose probe was sent
	Delivered int
	Answered  int
	// History holds the last MaxHistory path changes; Forgotten counts
	// the older ones.
	History   []Change
	Forgotten int
	// OtherHops counts hops seen beyond MaxRows rows.
	OtherHops int
	Last      *Round
	// LastLost is the last round that was not delivered, LastPath the
	// path of the last delivered one.
	LastLost *Round
	LastPath string
	rtts     []time.Duration
	prev     *signature
}

type signature struct {
	seen     []Key
	endpoint string
	node     string
}

// Fold adds round n, merged into t, to the table, and returns it.
func (tb *Table) Fold(n int, t *trace.Trace) *Round {
	r := &Round{N: n, Verdict: t.Verdict}
	for _, p := range t.Probes {
		if p.Event == "sent" && r.Sent.IsZero() {
			r.Sent = p.TS
		}
	}
	r.Hops = roundHops(t)
	tb.Rounds++
	sent := t.Verdict.Sent > 0
	if sent {
		tb.Sent++
		if t.Verdict.Result == "delivered" {
			tb.Delivered++
			tb.LastPath = t.Verdict.Path
			if t.Verdict.Answered > 0 {
				tb.Answered++
			}
			if t.Verdict.RTT > 0 && len(tb.rtts) < MaxRTTs {
				tb.rtts = append(tb.rtts, t.Verdict.RTT)
			}
		} else {
			tb.LastLost = r
		}
	}
	tb.fold(n, r.Hops, sent)
	if sent {
		sig := &signature{endpoint: t.Session.Dst.IP, node: t.Session.Dst.Node}
		for _, h := range r.Hops {
			if h.Seen {
				sig.seen = append(sig.seen, h.Key)
			}
		}
		if tb.prev != nil {
			r.Change = diff(n, tb.prev, sig)
		}
		tb.prev = sig
	}
	if r.Change != nil {
		tb.History = append(tb.History, *r.Change)
		if len(tb.History) > MaxHistory {
			tb.Forgotten += len(tb.History) - MaxHistory
			tb.History = slices.Clone(tb.History[len(tb.History)-MaxHistory:])
		}
	}
	tb.Last = r
	return r
}

// fold adds one round's hops to the rows: a new hop gets a row after the
// row of the hop before it in this round.
func (tb *Table) fold(n int, hops []Hop, sent bool) {
	inRound := map[Key]bool{}
	var prev *Key
	for i := range hops {
		h := &hops[i]
		inRound[h.Key] = true
		row := tb.row(h.Key)
		if row == nil {
			if len(tb.Rows) >= MaxRows {
				tb.OtherHops++
				continue
			}
			row = &Row{Key: h.Key, Role: h.Role, First: n}
			tb.insert(row, prev)
		}
		prev = &row.Key
		if !sent {
			continue
		}
		row.Sent++
		row.Status = "not seen"
		if !h.Seen {
			continue
		}
		row.Seen++
		row.Status = "seen"
		if h.HasDelta {
			d := h.Delta
			row.Deltas++
			row.Last, row.Sum = d, row.Sum+d
			if row.Deltas == 1 || d < row.Min {
				row.Min = d
			}
			if d > row.Max || row.Deltas == 1 {
				row.Max = d
			}
			row.CrossClock = row.CrossClock || h.CrossClock
		}
	}
	for _, row := range tb.Rows {
		if inRound[row.Key] {
			continue
		}
		if sent {
			row.Sent++
			row.Status = "not seen"
		} else {
			row.Status = "not sent"
		}
	}
	if !sent {
		for _, h := range hops {
			if row := tb.row(h.Key); row != nil {
				row.Status = "not sent"
			}
		}
	}
}

func (tb *Table) row(k Key) *Row {
	for _, r := range tb.Rows {
		if r.Key == k {
			return r
		}
	}
	return nil
}

// insert places a new row after the row of key after, else first among
// the rows of its direction.
func (tb *Table) insert(row *Row, after *Key) {
	at := -1
	if after != nil {
		for i, r := range tb.Rows {
			if r.Key == *after {
				at = i + 1
			}
		}
	}
	if at < 0 {
		at = 0
		if !row.Toward {
			for i, r := range tb.Rows {
				if r.Toward {
					at = i + 1
				}
			}
		}
	}
	tb.Rows = slices.Insert(tb.Rows, at, row)
}

// RTT is the median round trip of the delivered rounds (of the first
// MaxRTTs), 0 without one.
func (tb *Table) RTT() time.Duration {
	if len(tb.rtts) == 0 {
		return 0
	}
	s := slices.Clone(tb.rtts)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Verdict is the watch's verdict: delivered when every round that sent a
// probe delivered it, partial when some did, lost when none did; the
// reason of a loss is the last lost round's.
func (tb *Table) Verdict() trace.Verdict {
	v := trace.Verdict{Sent: tb.Sent, Delivered: tb.Delivered, Answered: tb.Answered}
	switch {
	case tb.Sent == 0:
		v.Result, v.Reason = "lost", "no round sent a probe"
		if tb.Last != nil && tb.Last.Verdict.Reason != "" {
			v.Reason += ": " + tb.Last.Verdict.Reason
		}
	case tb.Delivered == tb.Sent:
		v.Result, v.RTT, v.Path = "delivered", tb.RTT(), tb.LastPath
		if tb.Last != nil {
			v.Answer = tb.Last.Verdict.Answer
		}
	default:
		l := tb.LastLost.Verdict
		v.Result = "lost"
		if tb.Delivered > 0 {
			v.Result = "partial"
		}
		v.Answer, v.LastSeen, v.NotSeen, v.Evidence = l.Answer, l.LastSeen, l.NotSeen, l.Evidence
		v.Reason = fmt.Sprintf("%d of %d rounds delivered; the last lost one: round %d", tb.Delivered, tb.Sent, tb.LastLost.N)
		if l.Reason != "" {
			v.Reason += ": " + l.Reason
		}
		v.RTT, v.Path = tb.RTT(), tb.LastPath
	}
	return v
}

// roundHops lists the hops of a round's probe in path order: the probe's
// first journey (hops of the expected path that did not see it at their
// place in the path), then its answer's.
func roundHops(t *trace.Trace) []Hop {
	var req, rep *trace.Journey
	for _, j := range t.Journeys {
		if j.Probe == "" {
			continue
		}
		if !j.IsReply && req == nil {
			req = j
		}
		if j.IsReply && rep == nil {
			rep = j
		}
	}
	var hops []Hop
	add := func(j *trace.Journey, toward bool) {
		if j == nil {
			return
		}
		for _, o := range j.Obs {
			hops = append(hops, Hop{Key: Key{Place: o.Agent.Name, Iface: o.If.Label(), Toward: toward}, Role: o.If.Role, Seen: true,
				Delta: o.Delta, HasDelta: o.HasDelta, CrossClock: o.CrossClock})
		}
	}
	add(req, true)
	// The expected path's hops that did not see the probe, each after
	// the hop before it on the path.
	last := -1
	for _, p := range t.Path {
		k := Key{Place: p.Place, Iface: p.Label, Toward: true}
		if i := slices.IndexFunc(hops, func(h Hop) bool { return h.Key == k }); i >= 0 {
			last = i
			continue
		}
		if p.Status != "not seen" {
			continue // not observable: no row
		}
		last++
		hops = slices.Insert(hops, last, Hop{Key: k, Role: p.Role})
	}
	add(rep, false)
	return hops
}

// diff is the path change from a to b, nil when the path is the same.
func diff(n int, a, b *signature) *Change {
	c := &Change{Round: n}
	if a.endpoint != b.endpoint {
		c.Endpoint = a.endpoint + " → " + b.endpoint
	}
	if a.node != b.node {
		c.Node = orNone(a.node) + " → " + orNone(b.node)
	}
	for _, k := range b.seen {
		if !slices.Contains(a.seen, k) {
			c.Appeared = append(c.Appeared, k.String())
		}
	}
	for _, k := range a.seen {
		if !slices.Contains(b.seen, k) {
			c.Disappeared = append(c.Disappeared, k.String())
		}
	}
	if c.Endpoint == "" && c.Node == "" && len(c.Appeared) == 0 && len(c.Disappeared) == 0 {
		return nil
	}
	return c
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
