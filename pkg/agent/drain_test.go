package agent

import (
	"testing"
	"time"
)

func TestDrainReportsWhatWasCapturedBeforeTheStop(t *testing.T) {
	var d drain
	t0 := time.Unix(1700000000, 0)
	if !d.report(t0) || d.done(5, 5) || d.done(0, 0) {
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
	if d.done(3, 2) {
		t.Fatal("the drain ended while reads still return frames from before the stop")
	}
	if !d.done(0, 0) {
		t.Fatal("an empty read after the stop does not end the drain")
	}
	if !d.done(7, 0) {
		t.Fatal("a read holding only frames from after the stop (steady traffic) does not end the drain")
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
	if !d.done(10, 10) {
		t.Fatal("the drain did not end at its bound")
	}
}
