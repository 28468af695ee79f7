package capture

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read waits up to timeout for at least one ready block, calls fn for
// every frame of every ready block (at most one pass over the ring),
// returns the blocks to the kernel and returns the number of frames.
// It returns (0, nil) when nothing arrived within timeout; a negative
// timeout waits indefinitely. It returns ErrClosed once Close has been
// called, and Close interrupts a Read that is waiting.
//
// fn receives frames by value; Frame.Data points into the ring and must
// not be retained after fn returns. fn must not call Close.
func (h *Handle) Read(timeout time.Duration, fn func(Frame)) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return 0, ErrClosed
	}
	if !h.blockReady(h.cur) {
		if err := h.wait(timeout); err != nil {
			return 0, err
		}
	}
	n := 0
	for i := 0; i < h.numBlocks && h.blockReady(h.cur); i++ {
		n += h.walkBlock(h.cur, fn)
		h.blocks++
		h.cur++
		if h.cur == h.numBlocks {
			h.cur = 0
		}
		if h.closed.Load() {
			break
		}
	}
	return n, nil
}

// blockStatus points at block b's block_status word.
func (h *Handle) blockStatus(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&h.ring[b*h.blockSize+8])) // after version, offset_to_priv
}

func (h *Handle) blockReady(b int) bool {
	return atomic.LoadUint32(h.blockStatus(b))&unix.TP_STATUS_USER != 0
}

// wait polls the socket and the wakeup eventfd until a block is ready,
// Close is called or timeout passes.
func (h *Handle) wait(timeout time.Duration) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		ms := -1
		if timeout == 0 {
			ms = 0
		} else if timeout > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return nil
			}
			ms = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		fds := []unix.PollFd{
			{Fd: int32(h.fd), Events: unix.POLLIN | unix.POLLERR},
			{Fd: int32(h.wake), Events: unix.POLLIN},
		}
		_, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return sysErr("poll", err)
		}
		if h.closed.Load() {
			return ErrClosed
		}
		if fds[1].Revents != 0 { // Wake
			var b [8]byte
			_, _ = unix.Read(h.wake, b[:])
			return nil
		}
		if fds[0].Revents&unix.POLLERR != 0 {
			// e.g. ENETDOWN when the bound interface went away.
			if serr, gerr := unix.GetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && serr != 0 {
				return ifErr(fmt.Sprintf("capture on interface %d", h.cfg.Ifindex), h.cfg.Ifindex, unix.Errno(serr))
			}
		}
		if h.blockReady(h.cur) || timeout == 0 {
			return nil
		}
	}
}

// DrainedBy reports whether Read has handed out every frame the kernel
// captured up to t: no retired block waits to be read, and the block the
// kernel fills now holds no frame or was opened after t. The kernel opens
// a block when it retires the one before, and writes the time it opened
// it into the block's header (ts_first_pkt, prb_open_block); it retires a
// block when it is full or, holding a frame, every BlockTimeout.
func (h *Handle) DrainedBy(t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return true
	}
	if h.blockReady(h.cur) {
		return false
	}
	bd := (*unix.TpacketHdrV1)(unsafe.Pointer(&h.ring[h.cur*h.blockSize+8]))
	if atomic.LoadUint32(&bd.Num_pkts) == 0 {
		return true
	}
	// TPACKET_V3 keeps nanoseconds in the field x/sys names Usec.
	opened := time.Unix(int64(atomic.LoadUint32(&bd.Ts_first_pkt.Sec)), int64(atomic.LoadUint32(&bd.Ts_first_pkt.Usec)))
	return opened.After(t) && !h.blockReady(h.cur)
}

// walkBlock hands every frame of ready block b to fn and returns the
// block to the kernel.
func (h *Handle) walkBlock(b int, fn func(Frame)) int {
	base := b * h.blockSize
	blk := h.ring[base : base+h.blockSize : base+h.blockSize]
	bd := (*unix.TpacketHdrV1)(unsafe.Pointer(&blk[8]))
	num := int(bd.Num_pkts)
	off := int(bd.Offset_to_first_pkt)
	n := 0
	for ; n < num; n++ {
		if off < blockHdrLen || off+tpHdrLen+unix.SizeofSockaddrLinklayer > len(blk) {
			break // corrupt offset: never read outside the block
		}
		hdr := (*unix.Tpacket3Hdr)(unsafe.Pointer(&blk[off]))
		sll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(&blk[off+tpHdrLen]))
		start := off + int(hdr.Mac)
		end := start + int(hdr.Snaplen)
		if end > len(blk) || start > end {
			break
		}
		vlan := 0
		if hdr.Status&unix.TP_STATUS_VLAN_VALID != 0 {
			vlan = int(hdr.Hv1.Vlan_tci & 0xfff)
		}
		fn(Frame{
			TS:      time.Unix(int64(hdr.Sec), int64(hdr.Nsec)),
			Ifindex: int(sll.Ifindex),
			PktType: sll.Pkttype,
			Len:     int(hdr.Len),
			VLAN:    vlan,
			Data:    blk[start:end:end],
		})
		if hdr.Next_offset == 0 {
			n++
			break
		}
		off += int(hdr.Next_offset)
	}
	atomic.StoreUint32(h.blockStatus(b), unix.TP_STATUS_KERNEL)
	return n
}
