package trace

import "time"

// Row is one line of a trace's body as the text output prints it: a
// packet at one hop, a translation (shown before the first hop past it),
// or a neighbour, FDB or link change. N numbers the rows from 1 in display
// order; the text output prints those numbers when asked to (--explain),
// and an explanation pins its sentences to them.
type Row struct {
	N       int
	Journey *Journey // the journey of a hop or translation row
	Obs     *Obs     // a hop row
	NAT     *NATHop  // a translation row (Journey.NAT)
	Reverse bool     // a translation row of the answer translated back
	Change  *Change  // a change row
}

// TS is when the row happened, as the text output places it.
func (r Row) TS() time.Time {
	switch {
	case r.Change != nil:
		return r.Change.At
	case r.NAT != nil && !r.Reverse && !r.NAT.At.IsZero():
		return r.NAT.At
	case r.Obs != nil:
		return r.Obs.P.TS
	}
	return time.Time{}
}

// Rows is the trace's body in display order (t.Items): each change, and
// each journey's hops in path order with its translation before the first
// hop past it.
func (t *Trace) Rows() []Row {
	var rows []Row
	add := func(r Row) {
		r.N = len(rows) + 1
		rows = append(rows, r)
	}
	for _, it := range t.Items {
		if it.Change != nil {
			add(Row{Change: it.Change})
			continue
		}
		j := it.Journey
		for k, o := range j.Obs {
			if j.NAT != nil && k == j.NATAt {
				// The translation row sits at the hop it precedes: its
				// time is that hop's when the answer is translated back.
				add(Row{Journey: j, NAT: j.NAT, Reverse: !j.Toward, Obs: o})
			}
			add(Row{Journey: j, Obs: o})
		}
	}
	return rows
}
