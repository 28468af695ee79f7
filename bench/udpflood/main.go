// Command udpflood sends UDP datagrams from the current network namespace
// to one address as fast as one sender goes (or at --pps) for --duration,
// (or until SIGINT/SIGTERM), then prints what it sent on one line:
//
//	sent N datagrams in S s: R pps
//
// It is the traffic source of bench/agent-flood.sh (run it with
// `ip netns exec`); errors such as ENOBUFS are counted, not fatal. It sends
// --batch datagrams per system call (sendmmsg), so that one sender can
// outrun the capture it measures on a small machine.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	dst := flag.String("dst", "", "destination IPv4 address")
	port := flag.Int("port", 9000, "destination UDP port")
	size := flag.Int("size", 64, "payload bytes per datagram")
	dur := flag.Duration("duration", 5*time.Second, "how long to send")
	pps := flag.Int("pps", 0, "datagrams per second (0: as fast as possible)")
	batch := flag.Int("batch", 32, "datagrams per system call (1: one write each)")
	flag.Parse()
	if *batch < 1 {
		*batch = 1
	}
	ip := net.ParseIP(*dst).To4()
	if ip == nil {
		fmt.Fprintln(os.Stderr, "udpflood: --dst must be an IPv4 address")
		os.Exit(2)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpflood:", err)
		os.Exit(1)
	}
	sa := &unix.SockaddrInet4{Port: *port, Addr: [4]byte(ip)}
	if err := unix.Connect(fd, sa); err != nil {
		fmt.Fprintln(os.Stderr, "udpflood:", err)
		os.Exit(1)
	}
	bufs := make([][]byte, *batch)
	iov := make([]unix.Iovec, *batch)
	msgs := make([]unix.Mmsghdr, *batch)
	for i := range bufs {
		bufs[i] = make([]byte, max(*size, 4))[:*size]
		iov[i].Base = unsafe.SliceData(bufs[i][:cap(bufs[i])])
		iov[i].SetLen(*size)
		msgs[i].Hdr.Iov = &iov[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var sent, failed uint64
	var stopped atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; stopped.Store(true) }()
	start := time.Now()
	end := start.Add(*dur)
	for i := uint64(0); ; i++ {
		if i&63 == 0 && (stopped.Load() || time.Now().After(end)) {
			break
		}
		n := uint64(*batch)
		if *pps > 0 {
			// Pace: never ahead of pps * elapsed.
			for {
				due := uint64(float64(*pps) * time.Since(start).Seconds())
				if due > sent+failed {
					n = min(n, due-sent-failed)
					break
				}
				time.Sleep(50 * time.Microsecond)
			}
			if time.Now().After(end) {
				break
			}
		}
		for k := range n {
			seq := sent + failed + k
			b := bufs[k][:4]
			b[0], b[1], b[2], b[3] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
		if errno != 0 {
			failed++ // e.g. ENOBUFS: the first datagram was not sent
			continue
		}
		sent += uint64(r)
	}
	el := time.Since(start).Seconds()
	fmt.Printf("sent %d datagrams in %.2f s: %.0f pps (%d send errors)\n", sent, el, float64(sent)/el, failed)
}
