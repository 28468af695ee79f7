//go:build !linux

package probe

import (
	"errors"
	"net"
)

func pingSocket(bool, int) (net.PacketConn, error) {
	return nil, errors.New("unprivileged ICMP (ping) sockets are a Linux feature")
}
