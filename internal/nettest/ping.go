package nettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Ping sends one ICMP echo request from inside the named namespace (a name
// under /var/run/netns or a path) to dst and waits for the reply until ctx
// is done, or 2 s if ctx has no deadline. It returns the round-trip time.
// It needs no ping binary: the raw socket is opened on a thread inside the
// namespace, and stays bound to it.
func Ping(ctx context.Context, netnsName, dst string) (time.Duration, error) {
	ip := net.ParseIP(dst).To4()
	if ip == nil {
		return 0, fmt.Errorf("ping: %q is not an IPv4 address", dst)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Second)
	}
	path := netnsName
	if !strings.HasPrefix(path, "/") {
		path = "/var/run/netns/" + path
	}
	var conn *icmp.PacketConn
	err := onThreadIn(path, func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ping %s in %s: %w", dst, netnsName, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, err
	}
	id := os.Getpid()&0x7fff ^ int(time.Now().UnixNano()&0x7fff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("podtrace-lab")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := conn.WriteTo(b, &net.IPAddr{IP: ip}); err != nil {
		return 0, fmt.Errorf("ping %s from %s: %w", dst, netnsName, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, fmt.Errorf("ping %s from %s: no reply", dst, netnsName)
			}
			return 0, fmt.Errorf("ping %s from %s: %w", dst, netnsName, err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv4.ICMPTypeEchoReply && body.ID == id && from.(*net.IPAddr).IP.Equal(ip) {
				return time.Since(start), nil
			}
		case *icmp.DstUnreach:
			return 0, fmt.Errorf("ping %s from %s: destination unreachable (code %d)", dst, netnsName, m.Code)
		}
	}
}

// onThreadIn runs fn on a throw-away thread inside the network namespace
// at path (the thread is never unlocked: it dies with its goroutine).
func onThreadIn(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", path, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
