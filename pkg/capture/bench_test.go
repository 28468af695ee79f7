package capture

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkRingRead measures the ring read path under a local UDP flood
// across a veth pair: one op is one frame handed to the callback.
// Besides ns/op (wall time, bounded by the sender on a small machine) it
// reports frames/s, the reading thread's CPU time per frame and the
// kernel's drops.
func BenchmarkRingRead(b *testing.B) {
	nsA, nsB, a, vb := pair(b)
	h := openIn(b, nsB, Config{Ifindex: ifindex(b, nsB, vb), Filter: udpPortFilter(b, 9000)})
	f := startFlood(b, nsA, a, 64)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sink int
	cb := func(fr Frame) { sink += len(fr.Data) }
	// Warm up: the first frames and discard earlier counters.
	if _, err := h.Read(time.Second, cb); err != nil {
		b.Fatal(err)
	}
	st0, _ := h.Stats()
	cpu0 := threadCPU()
	b.ResetTimer()
	t0 := time.Now()
	for n := 0; n < b.N; {
		k, err := h.Read(time.Second, cb)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	el, cpu := time.Since(t0), threadCPU()-cpu0
	b.StopTimer()
	f.Stop()
	st, _ := h.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/frame")
	b.ReportMetric(float64(st.Drops-st0.Drops), "kernel-drops")
	_ = sink
}
