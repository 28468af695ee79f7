// Command udpflood sends UDP datagrams from the current network namespace
// to one address as fast as one sender goes (or at --pps) for --duration,
// then prints what it sent on one line:
//
//	sent N datagrams in S s: R pps
//
// It is the traffic source of bench/agent-flood.sh (run it with
// `ip netns exec`); errors such as ENOBUFS are counted, not fatal.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dst := flag.String("dst", "", "destination IPv4 address")
	port := flag.Int("port", 9000, "destination UDP port")
	size := flag.Int("size", 64, "payload bytes per datagram")
	dur := flag.Duration("duration", 5*time.Second, "how long to send")
	pps := flag.Int("pps", 0, "datagrams per second (0: as fast as possible)")
	flag.Parse()
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
	buf := make([]byte, *size)
	var sent, failed uint64
	start := time.Now()
	end := start.Add(*dur)
	for i := uint64(0); ; i++ {
		if i&1023 == 0 && time.Now().After(end) {
			break
		}
		if *pps > 0 {
			// Pace: never ahead of pps * elapsed.
			for float64(sent+failed) >= float64(*pps)*time.Since(start).Seconds() {
				time.Sleep(50 * time.Microsecond)
				if time.Now().After(end) {
					break
				}
			}
			if time.Now().After(end) {
				break
			}
		}
		buf[0], buf[1], buf[2], buf[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if _, err := unix.Write(fd, buf); err != nil {
			failed++
			continue
		}
		sent++
	}
	el := time.Since(start).Seconds()
	fmt.Printf("sent %d datagrams in %.2f s: %.0f pps (%d send errors)\n", sent, el, float64(sent)/el, failed)
}
