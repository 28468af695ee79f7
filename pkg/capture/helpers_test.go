package capture

import (
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// inNS runs f on a fresh OS thread switched into the named network
// namespace. The thread is never unlocked, so it exits with its goroutine
// and no other goroutine ever runs in that namespace. Sockets created by f
// stay in the namespace and may be used from any goroutine afterwards.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked
		fd, err := unix.Open(nettest.Path(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// openIn opens a capture handle inside the named namespace and closes it
// at cleanup.
func openIn(t testing.TB, ns string, cfg Config) *Handle {
	t.Helper()
	var h *Handle
	err := inNS(ns, func() (err error) {
		h, err = Open(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("Open in %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// ifindex returns the index of link name in namespace ns. The link's own
// line is looked for: ip may put "Error: Peer netns reference is invalid."
// before it while the peer namespace's id is being assigned (seen with
// go test -count=3).
func ifindex(t testing.TB, ns, name string) int {
	t.Helper()
	out := nettest.Run(t, "ip", "-n", ns, "-o", "link", "show", "dev", name)
	m := regexp.MustCompile(`(?m)^(\d+): ` + regexp.QuoteMeta(name) + `[@:]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ifindex in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var promiscRE = regexp.MustCompile(`promiscuity (\d+)`)

// promiscuity reads the device's promiscuity counter.
func promiscuity(t testing.TB, ns, name string) int {
	t.Helper()
	out := nettest.Run(t, "ip", "-n", ns, "-d", "link", "show", "dev", name)
	m := promiscRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no promiscuity in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// pair builds nsA/veth a (10.200.0.1) <-> nsB/veth b (10.200.0.2) and
// returns the namespaces and link names.
func pair(t testing.TB) (nsA, nsB, a, b string) {
	t.Helper()
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	nsA, nsB = nettest.NS(t, p+"A"), nettest.NS(t, p+"B")
	a, b = p+"a", p+"b"
	nettest.Veth(t, nsA, a, nsB, b)
	nettest.Run(t, "ip", "-n", nsA, "addr", "add", "10.200.0.1/24", "dev", a)
	nettest.Run(t, "ip", "-n", nsB, "addr", "add", "10.200.0.2/24", "dev", b)
	return
}

// udpPortFilter accepts IPv4 UDP frames to port and drops everything else.
func udpPortFilter(t testing.TB, port uint16) []bpf.RawInstruction {
	t.Helper()
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                           // ethertype
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: 6}, // not IPv4
		bpf.LoadAbsolute{Off: 23, Size: 1},                           // IP protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: 4},     // not UDP
		bpf.LoadMemShift{Off: 14},                                    // X = IP header length
		bpf.LoadIndirect{Off: 16, Size: 2},                           // UDP dst port
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// dropAll is a filter that accepts nothing.
func dropAll(t testing.TB) []bpf.RawInstruction {
	t.Helper()
	prog, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// dialUDP returns a UDP socket created in ns and connected to dst.
func dialUDP(t testing.TB, ns, dst string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNS(ns, func() error {
		addr, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// listenUDP returns a UDP socket bound in ns to addr (so that datagrams
// are delivered and answer no ICMP errors).
func listenUDP(t testing.TB, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNS(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// collect reads from h until want frames arrived or timeout passed,
// copying each frame's metadata (Data is summarised by its length and the
// 4-byte sequence number at the start of the UDP payload when present).
type seen struct {
	Frame
	seq  int // -1 when no payload
	data int
}

func collect(t testing.TB, h *Handle, want int, timeout time.Duration) []seen {
	t.Helper()
	return collectUntil(t, h, func(out []seen) bool { return len(out) >= want }, timeout)
}

// collectUntil reads from h until done holds for the frames read so far,
// or timeout passed (a bound only a missing frame reaches).
func collectUntil(t testing.TB, h *Handle, done func([]seen) bool, timeout time.Duration) []seen {
	t.Helper()
	var out []seen
	deadline := time.Now().Add(timeout)
	for !done(out) && time.Now().Before(deadline) {
		_, err := h.Read(50*time.Millisecond, func(f Frame) {
			s := seen{Frame: f, seq: -1, data: len(f.Data)}
			s.Data = nil
			if len(f.Data) >= 14+20+8+4 && f.Data[23] == 17 {
				p := f.Data[14+20+8:]
				s.seq = int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3])
			}
			out = append(out, s)
		})
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	return out
}

// sendSeq sends n datagrams of size bytes whose payload starts with a
// big-endian sequence number.
func sendSeq(t testing.TB, c *net.UDPConn, n, size int) {
	t.Helper()
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		buf[0], buf[1], buf[2], buf[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

// receive reads n datagrams from c: they crossed every hop to it. Only a
// datagram that never comes takes the minute.
func receive(t testing.TB, c *net.UDPConn, n int) {
	t.Helper()
	buf := make([]byte, 2048)
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("datagram %d of %d: %v", i+1, n, err)
		}
	}
}
