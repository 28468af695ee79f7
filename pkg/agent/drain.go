package agent

import (
	"sync/atomic"
	"time"
)

// maxDrain bounds how long the agent keeps reading its ring after it was
// told to stop, whatever the ring still holds.
const maxDrain = time.Second

// drain decides, once the agent is told to stop, which frames it still
// reports: every frame the kernel captured before the stop, however late
// it is read (on a loaded node the reader may get the CPU long after the
// stop; a probe frame captured in time is still the probe's), and none
// captured after it (under steady traffic the ring never runs dry: the
// agent must not outlive its deadline for as long as the traffic lasts).
// maxDrain ends the drain in any case: one pass over a full ring under a
// slow reader could otherwise take seconds.
//
// Frames are judged by their kernel timestamp, which uses the same clock
// as the stop time (CLOCK_REALTIME).
type drain struct {
	stopAt atomic.Int64 // UnixNano of the stop; 0 while running
	over   atomic.Bool  // maxDrain has passed since the stop
}

// stop marks the stop time and arms the hard bound. It is called once.
func (d *drain) stop(now time.Time) {
	d.stopAt.Store(now.UnixNano())
	time.AfterFunc(maxDrain, func() { d.over.Store(true) })
}

// report says whether a frame captured at ts is still reported.
func (d *drain) report(ts time.Time) bool {
	s := d.stopAt.Load()
	if s == 0 {
		return true
	}
	return !d.over.Load() && ts.UnixNano() <= s
}

// done says whether the read loop ends after a read of n frames, of which
// before were captured before the stop, given drainedBy (the ring's
// capture.Handle.DrainedBy): once stopped, it ends when every frame
// captured up to the stop has been read (the kernel's current block holds
// none of them), after a read that held frames from after the stop only
// (the reader has caught up with the stop: blocks come in order), and at
// the hard bound. A read that found nothing does not end it alone: it may
// have been woken by the stop before the kernel retired the block holding
// the last frames.
func (d *drain) done(n, before int, drainedBy func(time.Time) bool) bool {
	s := d.stopAt.Load()
	if s == 0 {
		return false
	}
	return (n > 0 && before == 0) || d.over.Load() || drainedBy(time.Unix(0, s))
}
