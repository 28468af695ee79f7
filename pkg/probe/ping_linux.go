package probe

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// pingSocket opens an unprivileged ICMP socket (SOCK_DGRAM, IPPROTO_ICMP or
// IPPROTO_ICMPV6) bound to id: the kernel writes the bound "port" as the
// echo identifier of every request it sends, and hands the socket only the
// replies that carry it, so the probe's echo id is the one the node
// agents' kernel filters look for. The kernel admits a process to such
// sockets when one of its groups is in net.ipv4.ping_group_range of its
// network namespace (for IPv6 too).
func pingSocket(v6 bool, id int) (net.PacketConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: id}
	if v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		sa = &unix.SockaddrInet6{Port: id}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		r, _ := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
		return nil, fmt.Errorf("open an unprivileged ICMP (ping) socket: %w: this pod's network namespace admits no group of gid %d to ping sockets (net.ipv4.ping_group_range %q; containerd sets it for every pod with enable_unprivileged_icmp, the default from containerd 2.0): probe with --proto tcp --port PORT or --proto udp instead",
			err, os.Getgid(), string(trimNL(r)))
	}
	if err != nil {
		return nil, fmt.Errorf("open an unprivileged ICMP (ping) socket: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind the ping socket to echo id %d: %w", id, err)
	}
	f := os.NewFile(uintptr(fd), "ping")
	defer f.Close() // FilePacketConn holds a duplicate
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("ping socket: %w", err)
	}
	return c, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
