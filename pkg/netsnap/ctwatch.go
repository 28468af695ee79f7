package netsnap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Conntrack event groups (nfnetlink.h).
const (
	nfnlgrpConntrackNew     = 1
	nfnlgrpConntrackUpdate  = 2
	nfnlgrpConntrackDestroy = 3
	ipctnlMsgCtDelete       = 2
)

// ConntrackEvent is a conntrack entry created ("new"), changed
// ("update": its state, or a first reply, which sets IPS_SEEN_REPLY) or
// destroyed ("destroy") in the watched namespace. Seen is when the agent
// received the notification. A destroy event does not carry the entry's
// status bits: the updates before it do.
type ConntrackEvent struct {
	Type  string
	Seen  time.Time
	Entry *wire.NAT
}

// ConntrackWatch follows conntrack's new, update and destroy events of the
// connections that a source address opens. A kernel filter on the netlink
// socket passes only the events whose original source is that address, so
// a busy node's other connections cost nothing in user space. A translated
// entry is seen when conntrack confirms it (the translation is already in
// its reply tuple), and an entry the kernel drops at once (a TCP SYN
// answered by a reset, which a lookup after the fact no longer finds) is
// seen as it goes.
type ConntrackWatch struct {
	sock    *nl.NetlinkSocket
	src     string // the watched source address, as parseConntrack writes it
	mu      sync.Mutex
	events  []ConntrackEvent
	overrun int // receive buffer overruns (ENOBUFS): events were lost
	done    chan struct{}
}

// maxConntrackEvents bounds the events a watch keeps.
const maxConntrackEvents = 4096

// WatchConntrack starts a watch in the calling thread's network namespace
// for connections from src. It needs CAP_NET_ADMIN there, and the
// namespace's net.netfilter.nf_conntrack_events not 0.
func WatchConntrack(ctx context.Context, src netip.Addr) (*ConntrackWatch, error) {
	src = src.Unmap()
	prog, err := sourceFilter(src)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	sock, err := nl.Subscribe(unix.NETLINK_NETFILTER, nfnlgrpConntrackNew, nfnlgrpConntrackUpdate, nfnlgrpConntrackDestroy)
	runtime.UnlockOSThread()
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("follow conntrack events: %w (needs NET_ADMIN)", err)
		}
		return nil, fmt.Errorf("follow conntrack events: %w", err)
	}
	if err := unix.SetsockoptSockFprog(sock.GetFd(), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog); err != nil {
		sock.Close()
		return nil, fmt.Errorf("filter conntrack events: %w", err)
	}
	_ = sock.SetReceiveBufferSize(1<<20, true)
	w := &ConntrackWatch{sock: sock, src: src.String(), done: make(chan struct{})}
	go w.run()
	context.AfterFunc(ctx, w.Close)
	return w, nil
}

// sourceFilter is a classic BPF program over a conntrack event message:
// nlmsghdr (16 bytes), nfgenmsg (family at 16), then, as the kernel lays
// out every entry (ctnetlink_fill_info), CTA_TUPLE_ORIG → CTA_TUPLE_IP →
// the source address attribute (its type at 30, host byte order, its
// value at 32). Messages of another family are dropped (their source
// cannot be src); messages of another layout pass: user space parses them
// and keeps those from src.
func sourceFilter(src netip.Addr) (*unix.SockFprog, error) {
	raw, err := bpf.Assemble(sourceFilterProgram(src))
	if err != nil {
		return nil, fmt.Errorf("conntrack event filter: %w", err)
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}, nil
}

// sourceFilterProgram is sourceFilter's program, before assembly.
func sourceFilterProgram(src netip.Addr) []bpf.Instruction {
	fam, attr := uint32(unix.AF_INET), uint32(nl.CTA_IP_V4_SRC)
	if src.Is6() {
		fam, attr = unix.AF_INET6, nl.CTA_IP_V6_SRC
	}
	b := src.AsSlice()
	var words []uint32
	for i := 0; i+4 <= len(b); i += 4 {
		words = append(words, uint32(b[i])<<24|uint32(b[i+1])<<16|uint32(b[i+2])<<8|uint32(b[i+3]))
	}
	// The attribute type is a native-endian 16-bit field; BPF loads are
	// big-endian.
	typ := attr
	if nl.NativeEndian().Uint16([]byte{1, 0}) == 1 {
		typ = attr << 8
	}
	// Instruction k jumping to t skips t-k-1: accept is at 4+2n, drop
	// at 5+2n.
	n := len(words)
	ins := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 16, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: fam, SkipFalse: uint8(3 + 2*n)}, // → drop
		bpf.LoadAbsolute{Off: 30, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: typ, SkipFalse: uint8(2 * n)}, // → accept
	}
	for i, w := range words {
		ins = append(ins,
			bpf.LoadAbsolute{Off: uint32(32 + 4*i), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: w, SkipFalse: uint8(2*(n-i) - 1)}) // → drop
	}
	return append(ins, bpf.RetConstant{Val: 0xffffffff}, bpf.RetConstant{Val: 0})
}

func (w *ConntrackWatch) run() {
	defer close(w.done)
	for {
		msgs, _, err := w.sock.Receive()
		now := time.Now()
		if errors.Is(err, syscall.ENOBUFS) {
			w.mu.Lock()
			w.overrun++
			w.mu.Unlock()
			continue
		}
		if err != nil {
			return // closed
		}
		for _, m := range msgs {
			typ := "new"
			switch m.Header.Type & 0xff {
			case nl.IPCTNL_MSG_CT_NEW:
				if m.Header.Flags&(unix.NLM_F_CREATE|unix.NLM_F_EXCL) == 0 {
					typ = "update"
				}
			case ipctnlMsgCtDelete:
				typ = "destroy"
			default:
				continue
			}
			e, err := parseConntrack(m.Data)
			if err != nil || e.Orig.Src != w.src {
				continue // what the kernel filter let through but is not from src
			}
			w.mu.Lock()
			if len(w.events) < maxConntrackEvents {
				w.events = append(w.events, ConntrackEvent{Type: typ, Seen: now, Entry: e})
			}
			w.mu.Unlock()
		}
	}
}

// Close stops the watch; Events stays readable.
func (w *ConntrackWatch) Close() {
	w.sock.Close()
}

// Events returns the events received so far, and how many times the
// socket's buffer overran (events were lost).
func (w *ConntrackWatch) Events() ([]ConntrackEvent, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ConntrackEvent(nil), w.events...), w.overrun
}
