package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/watch"
)

// IsTerminal reports whether w is a terminal: a watch redraws its table in
// place only there.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// WatchText prints a watch for humans. On a terminal (TTY) the table is
// redrawn in place after each round (the cursor moves up over the last
// drawing and clears below it); elsewhere each round appends one line and
// a path change its own, and the table is printed once, at the end.
type WatchText struct {
	w     io.Writer
	tty   bool
	color bool
	c     *colorer
	drawn int // terminal lines of the last drawing
	width int // terminal columns, 0 when unknown
}

// NewWatchText prints to w; tty redraws in place.
func NewWatchText(w io.Writer, tty, colorOn bool) *WatchText {
	p := &WatchText{w: w, tty: tty, color: colorOn, c: newColorer(colorOn)}
	if f, ok := w.(interface{ Fd() uintptr }); ok && tty {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			p.width = cols
		}
	}
	return p
}

// Head prints the session's header lines, once the agents are armed.
func (p *WatchText) Head(t *trace.Trace, h Header) error {
	b := &strings.Builder{}
	writeHeader(b, t, h, p.c)
	b.WriteString("\n")
	return p.write(b.String())
}

// Round prints a folded round.
func (p *WatchText) Round(tb *watch.Table, r *watch.Round) error {
	if p.tty {
		return p.redraw(p.table(tb))
	}
	b := &strings.Builder{}
	b.WriteString(p.roundLine(r) + "\n")
	if r.Change != nil {
		fmt.Fprintf(b, "  %s %s\n", p.c.warn.Sprint("path change"), Safe(r.Change.String()))
	}
	return p.write(b.String())
}

// Final prints the table (redrawn in place on a terminal), the path
// changes, warnings and the watch's verdict.
func (p *WatchText) Final(tb *watch.Table, final *trace.Trace, v trace.Verdict, note string) error {
	t := p.table(tb)
	b := &strings.Builder{}
	if note != "" {
		fmt.Fprintf(b, "%s    %s\n", p.c.head.Sprint("note"), Safe(note))
	}
	for _, m := range final.Warnings {
		fmt.Fprintf(b, "%s %s\n", p.c.warn.Sprint("warning"), Safe(m))
	}
	b.WriteString(verdictLine(v, final.Session, p.c, "rounds") + "\n")
	if p.tty {
		if err := p.redraw(t); err != nil {
			return err
		}
		p.drawn = 0
		return p.write(b.String())
	}
	return p.write("\n" + t + b.String())
}

func (p *WatchText) roundLine(r *watch.Round) string {
	v := r.Verdict
	res := Safe(strings.ToUpper(v.Result))
	parts := []string{fmt.Sprintf("round %d", r.N)}
	if v.Result == "delivered" {
		parts = append(parts, p.c.ok.Sprint(res))
		if v.RTT > 0 {
			parts = append(parts, "rtt "+Dur(v.RTT))
		}
	} else {
		parts = append(parts, p.c.bad.Sprint(res))
		if v.LastSeen != "" {
			parts = append(parts, "last seen "+Safe(v.LastSeen))
		}
		if v.NotSeen != "" {
			parts = append(parts, "not seen "+Safe(v.NotSeen))
		}
	}
	return strings.Join(parts, " · ")
}

// table is the per-hop table, the last round's verdict and the history of
// path changes.
func (p *WatchText) table(tb *watch.Table) string {
	c := p.c
	b := &strings.Builder{}
	wPlace, wIf := 4, 3
	for _, r := range tb.Rows {
		wPlace = max(wPlace, utf8.RuneCountInString(Safe(r.Place)))
		wIf = max(wIf, utf8.RuneCountInString(Safe(r.Iface)))
	}
	pad := func(s string, n int) string {
		if k := utf8.RuneCountInString(s); k < n {
			return s + strings.Repeat(" ", n-k)
		}
		return s
	}
	b.WriteString(c.head.Sprint(fmt.Sprintf("  %s  %s  %5s %5s %6s  %9s %9s %9s %9s  %s", pad("at", wPlace), pad("hop", wIf),
		"sent", "seen", "loss", "Δ last", "Δ min", "Δ avg", "Δ max", "last round")) + "\n")
	dur := func(r *watch.Row, d time.Duration) string {
		if r.Deltas == 0 {
			return "-"
		}
		s := Dur(d)
		if r.CrossClock {
			s = "≈" + s
		}
		return s
	}
	for _, r := range tb.Rows {
		arrow := "→"
		if !r.Toward {
			arrow = "←"
		}
		loss := fmt.Sprintf("%5.1f%%", r.Loss())
		if r.Seen < r.Sent {
			loss = c.bad.Sprint(loss)
		}
		status := r.Status
		switch status {
		case "seen":
			status = c.ok.Sprint(status)
		case "not seen":
			status = c.bad.Sprint(status)
		}
		fmt.Fprintf(b, "%s %s  %s  %5d %5d %s  %9s %9s %9s %9s  %s\n", arrow, c.place.Sprint(pad(Safe(r.Place), wPlace)), pad(Safe(r.Iface), wIf),
			r.Sent, r.Seen, loss, dur(r, r.Last), dur(r, r.Min), dur(r, r.Avg()), dur(r, r.Max), status)
	}
	if tb.OtherHops > 0 {
		fmt.Fprintf(b, "  (%d more hops seen beyond %d rows)\n", tb.OtherHops, watch.MaxRows)
	}
	if r := tb.Last; r != nil {
		fmt.Fprintf(b, "%s %s\n", c.head.Sprint("last"), p.roundLine(r))
	}
	if len(tb.History) > 0 {
		b.WriteString(c.head.Sprint("path changes") + "\n")
		if tb.Forgotten > 0 {
			fmt.Fprintf(b, "  (%d earlier changes not kept)\n", tb.Forgotten)
		}
		for i, ch := range tb.History {
			line := "  " + Safe(ch.String())
			if tb.Last != nil && tb.Last.Change != nil && i == len(tb.History)-1 && ch.Round == tb.Last.N {
				line = c.warn.Sprint(line) // the change of the round just shown
			}
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// redraw moves the cursor up over the last drawing, clears from there to
// the end of the screen, and draws s.
func (p *WatchText) redraw(s string) error {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", p.drawn)
	}
	b.WriteString(safeText(s, p.color))
	p.drawn = p.lines(s)
	_, err := io.WriteString(p.w, b.String())
	return err
}

// lines counts the terminal lines s takes: each line, wrapped at the
// terminal's width when known.
func (p *WatchText) lines(s string) int {
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		k := utf8.RuneCountInString(string(stripSGR([]byte(l))))
		if p.width > 0 && k > p.width {
			n += (k + p.width - 1) / p.width
			continue
		}
		n++
	}
	return n
}

func (p *WatchText) write(s string) error {
	_, err := io.WriteString(p.w, safeText(s, p.color))
	return err
}

// stripSGR removes color sequences (ESC [ … m), to measure text.
func stripSGR(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '[' {
			j := i + 2
			for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == ';') {
				j++
			}
			if j < len(b) && b[j] == 'm' {
				i = j
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// WatchJSON prints a watch as JSON lines: the trace line once the agents
// are armed, one round line a round, then the warnings and the verdict
// (docs/trace-json.md).
type WatchJSON struct {
	enc *json.Encoder
}

// NewWatchJSON prints to w.
func NewWatchJSON(w io.Writer) *WatchJSON {
	return &WatchJSON{enc: json.NewEncoder(safeJSONWriter{w})}
}

type jsonRound struct {
	Kind  string    `json:"kind"` // "round"
	Round int       `json:"round"`
	TS    time.Time `json:"ts,omitzero"` // when its probe left (the prober's clock)
	trace.Verdict
	Hops   []watch.Hop   `json:"hops"`
	Change *watch.Change `json:"change,omitempty"`
}

type jsonWatchVerdict struct {
	Kind string `json:"kind"` // "verdict"
	trace.Verdict
	Watch jsonWatch `json:"watch"`
}

type jsonWatch struct {
	Rounds      int            `json:"rounds"`
	Hops        []jsonWatchRow `json:"hops"`
	Changes     []watch.Change `json:"changes,omitempty"`
	Forgotten   int            `json:"forgottenChanges,omitempty"`
	OtherHops   int            `json:"otherHops,omitempty"`
	LateLines   uint64         `json:"lateLines,omitempty"`
	CutLines    uint64         `json:"cutLines,omitempty"`
	Interrupted bool           `json:"interrupted,omitempty"`
}

type jsonWatchRow struct {
	*watch.Row
	Loss  float64       `json:"lossPct"`
	AvgNs time.Duration `json:"avgNs"`
}

// Head writes the trace line.
func (j *WatchJSON) Head(t *trace.Trace, h Header) error {
	return j.enc.Encode(traceHead(t, h))
}

// Round writes one round line.
func (j *WatchJSON) Round(r *watch.Round) error {
	hops := r.Hops
	if hops == nil {
		hops = []watch.Hop{}
	}
	return j.enc.Encode(jsonRound{Kind: "round", Round: r.N, TS: r.Sent, Verdict: r.Verdict, Hops: hops, Change: r.Change})
}

// WatchSummary is what a watch's last line says besides its verdict.
type WatchSummary struct {
	Late, Cut   uint64
	Interrupted bool
}

// Final writes the warnings and the verdict line with the per-hop table.
func (j *WatchJSON) Final(tb *watch.Table, final *trace.Trace, v trace.Verdict, s WatchSummary) error {
	for _, m := range final.Warnings {
		if err := j.enc.Encode(jsonWarning{Kind: "warning", Msg: m}); err != nil {
			return err
		}
	}
	out := jsonWatchVerdict{Kind: "verdict", Verdict: v, Watch: jsonWatch{Rounds: tb.Rounds, Changes: tb.History, Forgotten: tb.Forgotten,
		OtherHops: tb.OtherHops, LateLines: s.Late, CutLines: s.Cut, Interrupted: s.Interrupted, Hops: []jsonWatchRow{}}}
	for _, r := range tb.Rows {
		out.Watch.Hops = append(out.Watch.Hops, jsonWatchRow{Row: r, Loss: r.Loss(), AvgNs: r.Avg()})
	}
	return j.enc.Encode(out)
}
