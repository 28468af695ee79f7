// Package capture is the capture agent's packet source: a pure-Go AF_PACKET
// socket with a TPACKET_V3 memory-mapped receive ring and a classic BPF
// filter that runs in the kernel, attached before the socket is bound so
// that unrelated traffic never reaches user space.
//
// A Handle is opened in the network namespace of the calling OS thread.
// Frames are handed to a callback without copying: Frame.Data points into
// the ring and is valid only during the callback.
package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Defaults applied by Open to zero fields of Config: a 16 MiB ring of 64
// blocks. Many small blocks rather than a few large ones: at high rates
// the kernel retires a block every BlockTimeout however full it is, so the
// ring absorbs a reader stall of NumBlocks*BlockTimeout (640 ms) or, when
// blocks fill faster than that, as many frames as 16 MiB holds (about
// 87,000 of the default snaplen's, 0.3 s at 300,000 frames/s).
const (
	DefaultSnaplen      = wire.DefaultSnaplen
	DefaultBlockSize    = 256 << 10
	DefaultNumBlocks    = 64
	DefaultBlockTimeout = 10 * time.Millisecond
)

// maxSnaplen bounds Snaplen: the largest frame a block can hold is a
// block minus its headers, and 256 KiB is far beyond any MTU.
const maxSnaplen = 256 << 10

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("capture: handle closed")

// Config describes a capture socket. Zero fields take the defaults above.
type Config struct {
	// Ifindex is the interface to capture on; 0 captures on every
	// interface of the current network namespace with one socket
	// (Frame.Ifindex says which interface a frame was seen on).
	Ifindex int
	// Filter is a classic BPF program run by the kernel on every frame
	// before it is queued; it is attached before the socket is bound.
	// nil accepts every frame.
	Filter []bpf.RawInstruction
	// Snaplen is the number of bytes kept per frame (default 192). It is
	// enforced in the kernel by clamping the filter's return value.
	Snaplen int
	// Promisc lists interfaces made promiscuous for the lifetime of the
	// socket (PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC); the kernel drops
	// the membership, and the promiscuity it added, when the socket closes.
	Promisc []int
	// BlockSize is the size of one ring block in bytes (default 256 KiB,
	// or the next power of two that holds a frame of Snaplen bytes); it
	// must be a multiple of the page size.
	BlockSize int
	// NumBlocks is the number of ring blocks (default 64). The ring uses
	// BlockSize*NumBlocks bytes of kernel memory, mapped into the process,
	// for as long as the Handle is open.
	NumBlocks int
	// BlockTimeout is how long the kernel waits before handing over a
	// partly filled block (tp_retire_blk_tov, default 10ms, millisecond
	// resolution). It bounds delivery latency at low rates, but at high
	// rates blocks are retired about this often, partly filled, so the
	// ring absorbs a reader stall of only about NumBlocks*BlockTimeout
	// (640ms by default) before the kernel drops; raise it, or NumBlocks,
	// where bursts matter more than latency.
	BlockTimeout time.Duration
}

// Frame is one captured frame.
type Frame struct {
	// TS is the kernel's receive timestamp (CLOCK_REALTIME).
	TS time.Time
	// Ifindex is the interface the frame was seen on (sll_ifindex).
	Ifindex int
	// PktType is sll_pkttype: unix.PACKET_HOST, PACKET_BROADCAST,
	// PACKET_MULTICAST, PACKET_OTHERHOST or PACKET_OUTGOING.
	PktType uint8
	// Len is the frame's original length on the wire (tp_len).
	Len int
	// VLAN is the VLAN ID the kernel stripped from the frame
	// (tp_vlan_tci & 0xfff when TP_STATUS_VLAN_VALID), else 0.
	VLAN int
	// Data holds the captured bytes, starting at the link-layer header.
	// It points into the ring and is valid ONLY during the callback.
	Data []byte
}

// Stats are cumulative kernel counters since Open.
type Stats struct {
	// Packets is the number of frames that passed the filter, including
	// those dropped (the kernel's tp_packets).
	Packets uint64
	// Drops is the number of frames that passed the filter but found no
	// room in the ring (tp_drops).
	Drops uint64
	// Freezes is the number of times the ring filled up and the kernel
	// froze the queue (tp_freeze_q_cnt).
	Freezes uint64
}

// Handle is an open capture socket with its ring. Read, Stats and Close
// may be called from different goroutines; Reads are serialised.
type Handle struct {
	cfg    Config
	closed atomic.Bool
	once   sync.Once

	// mu is held by Read for its whole duration and by Close while it
	// unmaps the ring, so the ring is never unmapped under a reader.
	mu   sync.Mutex
	fd   int
	wake int // eventfd written by Close and Wake to interrupt poll
	// wakeMu keeps Wake from writing to the eventfd while Close closes it.
	wakeMu    sync.Mutex
	ring      []byte
	blockSize int
	numBlocks int
	cur       int    // next block to hand to user space
	blocks    uint64 // blocks handed to user space so far (for tests)
	snaplen   int

	statsMu sync.Mutex
	statsFd int // fd for getsockopt; -1 after Close
	total   Stats
}

// Open creates the socket, attaches the filter, sets up and maps the ring,
// adds the promiscuous memberships and finally binds to cfg.Ifindex (all
// protocols). It needs CAP_NET_RAW in the current network namespace.
func Open(cfg Config) (*Handle, error) {
	if cfg.Snaplen <= 0 {
		cfg.Snaplen = DefaultSnaplen
	}
	if cfg.Snaplen > maxSnaplen {
		cfg.Snaplen = maxSnaplen
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
		for tpAlign(tpHdrLen+16+cfg.Snaplen) > cfg.BlockSize-blockHdrLen {
			cfg.BlockSize *= 2 // a large snaplen: blocks of a few frames each
		}
	}
	if cfg.NumBlocks == 0 {
		cfg.NumBlocks = DefaultNumBlocks
	}
	if cfg.BlockTimeout == 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	page := os.Getpagesize()
	switch {
	case cfg.Ifindex < 0:
		return nil, fmt.Errorf("capture: invalid interface index %d (0 = all interfaces)", cfg.Ifindex)
	case cfg.BlockSize <= 0 || cfg.BlockSize%page != 0:
		return nil, fmt.Errorf("capture: BlockSize %d must be a positive multiple of the page size (%d)", cfg.BlockSize, page)
	case cfg.NumBlocks <= 0:
		return nil, fmt.Errorf("capture: NumBlocks %d must be positive", cfg.NumBlocks)
	case cfg.BlockSize*cfg.NumBlocks > 1<<31-1:
		return nil, fmt.Errorf("capture: ring of %d blocks of %d bytes is too large", cfg.NumBlocks, cfg.BlockSize)
	case cfg.BlockTimeout < 0:
		return nil, fmt.Errorf("capture: negative BlockTimeout %v", cfg.BlockTimeout)
	}
	// A frame (headers + snaplen) must fit in a block.
	frameSize := tpAlign(tpHdrLen + 16 + cfg.Snaplen)
	if frameSize > cfg.BlockSize-blockHdrLen {
		return nil, fmt.Errorf("capture: Snaplen %d does not fit in a block of %d bytes", cfg.Snaplen, cfg.BlockSize)
	}
	prog, err := clampSnaplen(cfg.Filter, cfg.Snaplen)
	if err != nil {
		return nil, err
	}

	// Protocol 0: the socket is not hooked into the receive path and
	// queues nothing until bind names a protocol.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("create AF_PACKET socket", err)
	}
	h := &Handle{cfg: cfg, fd: fd, wake: -1, statsFd: fd, snaplen: cfg.Snaplen,
		blockSize: cfg.BlockSize, numBlocks: cfg.NumBlocks}
	ok := false
	defer func() {
		if !ok {
			if h.ring != nil {
				_ = unix.Munmap(h.ring)
			}
			if h.wake >= 0 {
				_ = unix.Close(h.wake)
			}
			_ = unix.Close(fd)
		}
	}()

	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return nil, sysErr("attach BPF filter (SO_ATTACH_FILTER; is the program valid classic BPF?)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, sysErr("select TPACKET_V3 (PACKET_VERSION; kernel >= 3.2 needed)", err)
	}
	tov := cfg.BlockTimeout.Milliseconds()
	if tov < 1 {
		tov = 1 // 0 would ask the kernel to pick its own timeout
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.NumBlocks),
		Frame_size:     uint32(frameSize),
		Frame_nr:       uint32(cfg.BlockSize / frameSize * cfg.NumBlocks),
		Retire_blk_tov: uint32(tov),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, sysErr(fmt.Sprintf("set up RX ring (PACKET_RX_RING, %d blocks of %d bytes)", cfg.NumBlocks, cfg.BlockSize), err)
	}
	h.ring, err = unix.Mmap(fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, sysErr("map RX ring", err)
	}
	for _, ifi := range cfg.Promisc {
		mreq := unix.PacketMreq{Ifindex: int32(ifi), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, ifErr(fmt.Sprintf("make interface %d promiscuous (PACKET_ADD_MEMBERSHIP)", ifi), ifi, err)
		}
	}
	h.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, sysErr("create eventfd", err)
	}
	sll := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: cfg.Ifindex}
	if err := unix.Bind(fd, &sll); err != nil {
		return nil, ifErr(fmt.Sprintf("bind to interface %d", cfg.Ifindex), cfg.Ifindex, err)
	}
	ok = true
	return h, nil
}

// Stats returns the kernel's counters accumulated since Open (the kernel
// resets them on every read). After Close it returns the final totals,
// taken just before the socket was closed.
func (h *Handle) Stats() (Stats, error) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	if h.statsFd < 0 {
		return h.total, nil
	}
	if err := h.pollStatsLocked(); err != nil {
		return h.total, err
	}
	return h.total, nil
}

func (h *Handle) pollStatsLocked() error {
	st, err := unix.GetsockoptTpacketStatsV3(h.statsFd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return sysErr("read PACKET_STATISTICS", err)
	}
	h.total.Packets += uint64(st.Packets)
	h.total.Drops += uint64(st.Drops)
	h.total.Freezes += uint64(st.Freeze_q_cnt)
	return nil
}

// Close interrupts a pending Read, then unmaps the ring and closes the
// socket, which ends the promiscuous memberships. It is idempotent and may
// be called from any goroutine, but not from within a Read callback.
func (h *Handle) Close() error {
	var err error
	h.once.Do(func() {
		h.closed.Store(true)
		one := [8]byte{1}
		_, _ = unix.Write(h.wake, one[:])
		h.mu.Lock() // wait for a Read in progress to notice and return
		defer h.mu.Unlock()
		h.statsMu.Lock()
		_ = h.pollStatsLocked() // keep the final counts for Stats
		h.statsFd = -1
		h.statsMu.Unlock()
		if e := unix.Munmap(h.ring); e != nil {
			err = sysErr("unmap ring", e)
		}
		h.ring = nil
		if e := unix.Close(h.fd); e != nil && err == nil {
			err = sysErr("close socket", e)
		}
		h.wakeMu.Lock()
		_ = unix.Close(h.wake)
		h.fd, h.wake = -1, -1
		h.wakeMu.Unlock()
	})
	return err
}

// Wake makes a Read waiting for a block return at once, with what is
// ready (maybe nothing). Any goroutine may call it, at any time.
func (h *Handle) Wake() {
	h.wakeMu.Lock()
	defer h.wakeMu.Unlock()
	if h.closed.Load() || h.wake < 0 {
		return
	}
	one := [8]byte{1}
	_, _ = unix.Write(h.wake, one[:])
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sysErr wraps a system call error with what was being done and, for
// permission errors, what to do about it.
func sysErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("capture: %s: %w: needs CAP_NET_RAW (run as root or add NET_RAW to the container's capabilities)", what, err)
	}
	if errors.Is(err, unix.ENOMEM) {
		return fmt.Errorf("capture: %s: %w: reduce BlockSize or NumBlocks", what, err)
	}
	return fmt.Errorf("capture: %s: %w", what, err)
}

// ifErr is sysErr that also explains a missing interface.
func ifErr(what string, ifindex int, err error) error {
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("capture: %s: %w: no interface with index %d in this network namespace (check `ip link` in the pod's namespace)", what, err, ifindex)
	}
	if errors.Is(err, unix.ENETDOWN) {
		return fmt.Errorf("capture: %s: %w: interface %d is down", what, err, ifindex)
	}
	return sysErr(what, err)
}

// Ring layout (linux/if_packet.h).
const (
	tpAlignment = 16
	// tpHdrLen is TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where the
	// sockaddr_ll follows each frame header.
	tpHdrLen    = (unix.SizeofTpacket3Hdr + tpAlignment - 1) &^ (tpAlignment - 1)
	blockHdrLen = int(unsafe.Sizeof(unix.TpacketBlockDesc{}))
)

func tpAlign(n int) int { return (n + tpAlignment - 1) &^ (tpAlignment - 1) }
