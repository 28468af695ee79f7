// Command workload is the end-to-end tests' target application: a static binary
// that answers on TCP port 8080 (it echoes what it receives) and UDP port 8081
// (it echoes each datagram) and otherwise waits until SIGTERM. ICMP echo is
// answered by the kernel. Flags change the ports. With --flood it also sends
// UDP datagrams to an address until it exits (the busy pods of the tests).
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	tcpAddr := flag.String("tcp", ":8080", "TCP echo listen address")
	udpAddr := flag.String("udp", ":8081", "UDP echo listen address")
	flood := flag.String("flood", "", "also send UDP datagrams to this address (IP:PORT) until exit")
	pps := flag.Int("pps", 10000, "datagrams per second with --flood (0: as fast as one sender goes)")
	size := flag.Int("size", 64, "payload bytes per datagram with --flood")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ln, err := net.Listen("tcp", *tcpAddr)
	if err != nil {
		log.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", *udpAddr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("workload: tcp echo on %s, udp echo on %s", ln.Addr(), pc.LocalAddr())
	go serveTCP(ln)
	go serveUDP(pc)
	if *flood != "" {
		go floodUDP(*flood, *pps, *size)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	log.Printf("workload: %v, exiting", <-sig)
}

func serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("tcp accept: %v", err)
			continue
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			log.Printf("udp read: %v", err)
			continue
		}
		_, _ = pc.WriteTo(buf[:n], addr)
	}
}

// floodUDP sends datagrams to addr at pps a second (in bursts every 10 ms),
// or as fast as it can with pps 0, and logs what it sent every 10 s.
func floodUDP(addr string, pps, size int) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		log.Fatalf("flood: %v", err)
	}
	log.Printf("workload: flooding %s at %d pps", addr, pps)
	buf := make([]byte, size)
	const tick = 10 * time.Millisecond
	per := max(pps/int(time.Second/tick), 1)
	var sent, failed uint64
	last := time.Now()
	next := time.Now()
	for {
		if pps > 0 {
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
		for i := 0; i < per; i++ {
			if _, err := c.Write(buf); err != nil {
				failed++ // ECONNREFUSED from an earlier datagram, ENOBUFS: keep going
			} else {
				sent++
			}
		}
		if time.Since(last) > 10*time.Second {
			log.Printf("flood: sent %d datagrams, %d failed", sent, failed)
			last = time.Now()
		}
	}
}
