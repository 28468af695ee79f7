// Command workload is the end-to-end tests' target application: a static binary
// that answers on TCP port 8080 (it echoes what it receives) and UDP port 8081
// (it echoes each datagram) and otherwise waits until SIGTERM. ICMP echo is
// answered by the kernel. Flags change the ports.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	tcpAddr := flag.String("tcp", ":8080", "TCP echo listen address")
	udpAddr := flag.String("udp", ":8081", "UDP echo listen address")
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
