package capture

import (
	"testing"
	"time"
)

// TestFloodEveryFrameReadOrCountedAsDropped floods a veth with UDP and
// captures it with a small ring (so that the kernel does drop frames on a
// busy machine) and checks the accounting a trace relies on to be honest:
// every frame that passed the filter was either handed to the reader or
// counted as dropped by the kernel, none vanished. The flood stops once the
// reader has seen enough frames, not after a fixed time; how many frames
// per second each side managed is a figure, logged here and measured by
// `make measure`.
func TestFloodEveryFrameReadOrCountedAsDropped(t *testing.T) {
	nsA, nsB, a, b := pair(t)
	// 4 blocks of 16 KiB: a few hundred frames before the ring is full.
	h := openIn(t, nsB, Config{Ifindex: ifindex(t, nsB, b), Filter: udpPortFilter(t, 9000), BlockSize: 16 << 10, NumBlocks: 4})

	const want = 50000       // frames read before the flood stops
	const hang = time.Minute // only a hang takes this long
	rx0 := rxPackets(t, nsB, b)
	f := startFlood(t, nsA, a, 64)
	var read uint64
	t0 := time.Now()
	for read < want {
		n, err := h.Read(time.Second, func(Frame) {})
		if err != nil {
			t.Fatal(err)
		}
		read += uint64(n)
		if time.Since(t0) > hang {
			t.Fatalf("read %d frames in %v of flood (sent %d): the reader or the flood is stuck", read, hang, f.sent.Load())
		}
	}
	f.Stop()
	el := time.Since(t0)
	// Drain: the flood is over; read until a whole second brings nothing
	// (the last block retires after its timeout of a few milliseconds).
	for {
		n, err := h.Read(time.Second, func(Frame) {})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		read += uint64(n)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	rx := rxPackets(t, nsB, b) - rx0
	t.Logf("flood %v: sent %d, veth received %d; read %d (%.0f/s), kernel packets %d drops %d freezes %d",
		el.Round(time.Millisecond), f.sent.Load(), rx, read, float64(read)/el.Seconds(), st.Packets, st.Drops, st.Freezes)
	// TPACKET_V3 counts every frame that passed the filter in Packets,
	// dropped ones included.
	if st.Packets < st.Drops || read != st.Packets-st.Drops {
		t.Errorf("read %d frames; the kernel says %d passed the filter and %d of them were dropped: %d unaccounted for",
			read, st.Packets, st.Drops, int64(st.Packets)-int64(st.Drops)-int64(read))
	}
	if st.Packets > rx {
		t.Errorf("the kernel counted %d frames past the filter, but the veth received only %d", st.Packets, rx)
	}
}
