package capture

import (
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// flooder sends UDP datagrams as fast as it can from nsA to 10.200.0.2
// until stopped. The destination's neighbour entry in nsA is a MAC nobody
// owns, so the receiving veth sees the frames (PACKET_OTHERHOST) and its
// IP stack discards them at once: the cost on the receiving side is
// mostly the capture itself.
type flooder struct {
	fd   int
	sent atomic.Uint64
	stop atomic.Bool
	wg   sync.WaitGroup
}

func startFlood(t testing.TB, nsA, a string, size int) *flooder {
	t.Helper()
	nettest.Run(t, "ip", "-n", nsA, "neigh", "replace", "10.200.0.2", "lladdr", "02:00:00:00:00:99", "dev", a, "nud", "permanent")
	f := &flooder{fd: -1}
	if err := inNS(nsA, func() (err error) {
		f.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Connect(f.fd, &unix.SockaddrInet4{Port: 9000, Addr: [4]byte{10, 200, 0, 2}})
	}); err != nil {
		t.Fatal(err)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, size)
		for i := uint32(0); !f.stop.Load(); i++ {
			buf[0], buf[1], buf[2], buf[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			if _, err := unix.Write(f.fd, buf); err == nil {
				f.sent.Add(1)
			}
		}
	}()
	t.Cleanup(f.Stop)
	return f
}

// Stop ends the flood and waits for the sender; idempotent.
func (f *flooder) Stop() {
	f.stop.Store(true)
	f.wg.Wait()
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
		f.fd = -1
	}
}

// rxPackets reads a link's receive counter.
func rxPackets(t testing.TB, ns, link string) uint64 {
	t.Helper()
	var out []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(nettest.Run(t, "ip", "-n", ns, "-j", "-s", "link", "show", "dev", link)), &out); err != nil || len(out) != 1 {
		t.Fatalf("ip -s link: %v", err)
	}
	return out[0].Stats64.RX.Packets
}

// threadCPU is the CPU time (user+system) used so far by the calling,
// locked, OS thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lockThread wires the calling goroutine to its OS thread for the rest of
// its life, so threadCPU measures only that goroutine's work.
func lockThread() { runtime.LockOSThread() }
