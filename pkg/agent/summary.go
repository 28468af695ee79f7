package agent

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/capture"
	"github.com/podtrace/kubectl-podtrace/pkg/flowsum"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// summaryTableSize bounds the flow table a summarizing agent counts in:
// 16,384 flow records (1.5 MB). The other summary defaults are the
// contract's (wire.DefaultSummaryInterval, wire.DefaultSummaryRecords).
const summaryTableSize = 16384

// summarizer decides when the capture goes over its rate and, from then
// on, counts frames per flow instead of having them decoded and written.
// It is used from the capture goroutine only.
type summarizer struct {
	above   int           // frames per second
	every   time.Duration // summary interval
	records int           // records per summary
	names   *ifNames
	stats   func() (capture.Stats, error)

	// Token bucket over kernel timestamps: one token per frame written
	// as a packet line, refilled at above per second, at most above.
	tokens float64
	lastTS int64

	on        bool
	first     bool // the next summary is the first
	start     time.Time
	lastDrops uint64
	table     *flowsum.Table
	sum       wire.Summary

	// Totals for the stats line.
	packets, bytes uint64
}

func newSummarizer(above int, every time.Duration, records int, names *ifNames, stats func() (capture.Stats, error)) *summarizer {
	if above <= 0 {
		return nil
	}
	if every <= 0 {
		every = wire.DefaultSummaryInterval
	}
	if records <= 0 {
		records = wire.DefaultSummaryRecords
	}
	return &summarizer{above: above, every: every, records: records, names: names, stats: stats, tokens: float64(above)}
}

// take counts f in the current summary and reports true once the agent
// summarizes; false means f is to be written as a packet line.
func (s *summarizer) take(f capture.Frame) bool {
	ts := f.TS.UnixNano()
	if !s.on {
		if ts > s.lastTS {
			if s.lastTS != 0 {
				s.tokens = min(float64(s.above), s.tokens+float64(ts-s.lastTS)*float64(s.above)/1e9)
			}
			s.lastTS = ts
		}
		if s.tokens >= 1 {
			s.tokens--
			return false
		}
		s.on, s.first, s.start = true, true, f.TS
		s.table = flowsum.NewTable(summaryTableSize)
		if st, err := s.stats(); err == nil {
			s.lastDrops = st.Drops // drops before the switch are the per-packet mode's
		}
	}
	k := flowsum.Key{Ifindex: int32(f.Ifindex), VLAN: uint16(f.VLAN)}
	if f.PktType == unix.PACKET_OUTGOING {
		k.Dir = flowsum.DirOut
	}
	flags := flowsum.Parse(&k, f.Data)
	s.table.Add(&k, ts, f.Len, flags)
	s.packets++
	s.bytes += uint64(f.Len)
	return true
}

// tick writes the summary of the interval when it is over.
func (s *summarizer) tick(now time.Time, w *wire.Writer) {
	if s.on && now.Sub(s.start) >= s.every {
		s.flush(now, w)
	}
}

// flush writes the summary of the interval so far and starts the next.
func (s *summarizer) flush(now time.Time, w *wire.Writer) {
	if !s.on {
		return
	}
	sum := &s.sum
	s.table.Summary(sum, s.records, s.names.get)
	sum.Start, sum.End, sum.First, sum.Above = s.start, now, s.first, s.above
	sum.Drops = 0
	if st, err := s.stats(); err == nil {
		sum.Drops = st.Drops - s.lastDrops
		s.lastDrops = st.Drops
	}
	_ = w.Emit(sum)
	s.table.Reset()
	s.first, s.start = false, now
}
