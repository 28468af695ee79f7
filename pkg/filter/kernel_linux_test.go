//go:build linux

package filter

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

// attach loads a program into an AF_PACKET socket, so that the kernel's
// classic BPF checker validates it.
func attach(t *testing.T, expr string) error {
	t.Helper()
	raw, err := Assemble(expr, 262144)
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	// Protocol 0: the socket receives nothing, it only holds the filter.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(fd)
	prog := unix.SockFprog{
		Len:    uint16(len(raw)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0])),
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

func TestKernelAcceptsPrograms(t *testing.T) {
	nettest.RequireRoot(t) // an AF_PACKET socket needs CAP_NET_RAW
	// About 2,000 instructions: the kernel charges a socket filter (its
	// classic and translated forms) against net.core.optmem_max, so with
	// the default of 128 KiB programs much beyond 2,500 instructions fail
	// with ENOMEM even though the instruction limit is 4,096.
	exprs := append(append([]string(nil), tcpdumpExprs...), longExpr(), hugeExpr(2000))
	for _, tc := range vxlanExprs {
		exprs = append(exprs, tc.expr)
	}
	exprs = append(exprs, "vxlan and vlan and geneve and vxlan 1 and tcp[tcp[12]>>4] = 1", "vlan and geneve and udp[len - 100] & 1 != 0")
	for _, expr := range exprs {
		if err := attach(t, expr); err != nil {
			t.Errorf("%.60q: kernel rejected the program: %v", expr, err)
		}
	}
	t.Logf("kernel accepted %d programs", len(exprs))
}
