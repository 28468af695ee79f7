package agent

import (
	"testing"
	"time"
)

func TestDrainReportsWhatWasCapturedBeforeTheStop(t *testing.T) {
	var d drain
	t0 := time.Unix(1700000000, 0)
	var asked []time.Time
	ring := func(drained bool) func(time.Time) bool {
		return func(at time.Time) bool { asked = append(asked, at); return drained }
	}
	if !d.report(t0) || d.done(5, 5, ring(true)) || d.done(0, 0, ring(true)) {
		t.Fatal("a running agent reports every frame and keeps reading")
	}
	stop := t0.Add(time.Second)
	d.stop(stop)
	// A reader starved on a loaded node reads, after the stop, frames the
	// kernel captured before it: they are the run's and are reported.
	if !d.report(stop.Add(-time.Millisecond)) || !d.report(stop) {
		t.Fatal("a frame captured before the stop is not reported")
	}
	if d.report(stop.Add(time.Microsecond)) {
		t.Fatal("a frame captured after the stop is reported")
	}
	if d.done(3, 2, ring(false)) {
		t.Fatal("the drain ended while reads still return frames from before the stop")
	}
	if d.done(0, 0, ring(false)) {
		t.Fatal("an empty read (woken by the stop) ended the drain while the kernel's block holds frames from before it")
	}
	if !d.done(0, 0, ring(true)) || !d.done(3, 2, ring(true)) {
		t.Fatal("the drain goes on once every frame up to the stop was read")
	}
	if !d.done(7, 0, ring(false)) {
		t.Fatal("a read holding only frames from after the stop (steady traffic) does not end the drain")
	}
	for _, at := range asked {
		if !at.Equal(stop) {
			t.Fatalf("the ring was asked whether it is drained up to %v, not up to the stop %v", at, stop)
		}
	}
	if len(asked) == 0 {
		t.Fatal("the ring was never asked")
	}
}

func TestDrainEndsAtItsBoundWhateverTheRingHolds(t *testing.T) {
	var d drain
	now := time.Now()
	d.stop(now)
	deadline := time.Now().Add(maxDrain + time.Minute) // generous: the bound is a timer
	for !d.over.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the drain's bound never fired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d.report(now.Add(-time.Second)) {
		t.Fatal("a frame from before the stop is still reported after the bound")
	}
	if !d.done(10, 10, func(time.Time) bool { return false }) {
		t.Fatal("the drain did not end at its bound")
	}
}
