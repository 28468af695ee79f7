// Package kdrop follows the kernel's own account of a probe's death: a small
// eBPF program on the skb:kfree_skb tracepoint reports, for the probe's
// packets only, the reason the kernel gave for dropping them (enum
// skb_drop_reason: NETFILTER_DROP, NO_SOCKET, IP_NOROUTE, …) and the kernel
// function that dropped them.
//
// The program is assembled here, at run time, from the instructions in
// prog.go, with the offsets of the kernel structures it reads taken from
// the running kernel's BTF: nothing compiled is shipped, the build stays
// pure Go (CGO_ENABLED=0), and the same agent runs on every kernel that
// describes itself in /sys/kernel/btf/vmlinux (Linux 5.17 or later: the
// tracepoint's reason argument).
//
// The filter runs in the kernel: a drop of any other packet costs the
// program a few reads and writes nothing. Events go through a bounded ring
// buffer; what does not fit is counted, never queued.
//
// It needs CAP_BPF (maps, program load) and CAP_PERFMON (a tracing program
// that reads kernel memory), or CAP_SYS_ADMIN on kernels before 5.8.
package kdrop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Probe is the identity of the probe's packets, as the capture filter has
// it: protocol, the two ends, the ICMP echo id or the TCP/UDP source ports
// ID … ID+Count-1 and the destination port.
type Probe struct {
	Proto    string // icmp, tcp, udp
	Src, Dst netip.Addr
	ID       int
	Count    int
	Port     int
	// NAT: the destination may be translated on the way (a Service): the
	// packets are recognised by the source's side alone.
	NAT bool
}

// Drop is one of the probe's packets the kernel dropped.
type Drop struct {
	TS       time.Time // when the kernel dropped it (CLOCK_REALTIME)
	Code     uint32    // the enum skb_drop_reason value
	Reason   string    // its name in the kernel's BTF, without SKB_DROP_REASON_
	Location string    // the kernel function that dropped it; "" when the kernel could not name it
	Ifindex  int       // the device the skb was on (0: none)
	Iface    string
	NetNS    uint32 // inode of that device's network namespace
	Src, Dst netip.Addr
	Proto    string // icmp, tcp, udp
	SrcPort  int
	DstPort  int
	ICMPType int
	ICMPID   int
	ICMPSeq  int
}

// Counts are the program's counters.
type Counts struct {
	Examined uint64 // skbs the kernel dropped while the program was attached
	Matched  uint64 // the probe's among them
	Lost     uint64 // matched, but the ring buffer was full
}

// RingSize is the ring buffer's size: 64 KiB hold 480 events, far more
// than the few packets of a probe; beyond that events are counted as lost.
const RingSize = 64 << 10

// MaxEvents bounds the events a Tracer keeps.
const MaxEvents = 256

// Tracer is the loaded and attached program.
type Tracer struct {
	// LoadTime is how long building, loading (the kernel's verifier) and
	// attaching took.
	LoadTime time.Duration

	l        *layout
	objs     []interface{ Close() error }
	counters *ebpf.Map
	rd       *ringbuf.Reader
	boot     time.Duration // CLOCK_REALTIME − CLOCK_BOOTTIME
	done     chan struct{}
	stopping atomic.Bool
	closed   bool   // by Close: final holds the last counts
	final    Counts //

	mu     sync.Mutex
	events []Drop
	extra  int
}

// Open builds the program for probe p, loads and attaches it, and starts
// reading its events; fn, when set, is called for each (from one
// goroutine, in order). Close detaches it.
func Open(p Probe, fn func(Drop)) (*Tracer, error) {
	start := time.Now()
	f, err := p.filter()
	if err != nil {
		return nil, err
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	l, err := readLayout(spec)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; the drop
	// reasons need 5.17, which charges it to the memory cgroup. For a
	// kernel that has the one backported without the other, the soft limit
	// goes up to the hard one, which needs no privilege. (cilium/ebpf's
	// rlimit package would find out by creating a BPF map in its package
	// init, at every start of the agent, drops wanted or not.)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim)
	}
	t := &Tracer{l: l, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			t.closeObjs()
		}
	}()
	counters, err := t.newMap(&ebpf.MapSpec{Name: "podtrace_cnt", Type: ebpf.Array, KeySize: 4, ValueSize: countSize, MaxEntries: 1})
	if err != nil {
		return nil, err
	}
	t.counters = counters
	events, err := t.newMap(&ebpf.MapSpec{Name: "podtrace_ev", Type: ebpf.RingBuf, MaxEntries: RingSize})
	if err != nil {
		return nil, err
	}
	format, err := t.newMap(&ebpf.MapSpec{Name: "podtrace_fmt", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1,
		Flags:    unix.BPF_F_RDONLY_PROG,
		Contents: []ebpf.MapKV{{Key: uint32(0), Value: []byte("%ps\x00\x00\x00\x00\x00")}}})
	if err != nil {
		return nil, err
	}
	// bpf_snprintf takes its format from read-only memory only.
	if err := format.Freeze(); err != nil {
		return nil, fmt.Errorf("freeze the format map: %w", err)
	}
	insns := program(l, f)
	for name, m := range map[string]*ebpf.Map{"counters": counters, "events": events, "format": format} {
		if err := insns.AssociateMap(name, m); err != nil {
			return nil, fmt.Errorf("kernel drops program: %w", err)
		}
	}
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name: "podtrace_drop", Type: ebpf.RawTracepoint, Instructions: insns,
		// GPL-compatible: bpf_probe_read_kernel and bpf_snprintf are GPL-only helpers.
		License: "Dual MIT/GPL",
	}, ebpf.ProgramOptions{KernelTypes: spec})
	if err != nil {
		return nil, fmt.Errorf("load the kernel drops program: %w", permHint(err))
	}
	t.objs = append(t.objs, prog)
	lk, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "kfree_skb", Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach to skb:kfree_skb: %w", permHint(err))
	}
	t.objs = append(t.objs, lk)
	if t.rd, err = ringbuf.NewReader(events); err != nil {
		return nil, fmt.Errorf("kernel drops ring buffer: %w", err)
	}
	t.boot = bootOffset()
	t.LoadTime = time.Since(start)
	ok = true
	go t.read(fn)
	return t, nil
}

func (t *Tracer) newMap(s *ebpf.MapSpec) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(s)
	if err != nil {
		return nil, fmt.Errorf("create BPF map %s: %w", s.Name, permHint(err))
	}
	t.objs = append(t.objs, m)
	return m, nil
}

// permHint names the capabilities when the kernel refused for lack of
// them.
func permHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (kernel drops need CAP_BPF and CAP_PERFMON)", err)
	}
	return err
}

func (t *Tracer) read(fn func(Drop)) {
	defer close(t.done)
	var rec ringbuf.Record
	for {
		// A deadline of its own: Close cannot interrupt a read without
		// losing what is still in the ring.
		t.rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
		if err := t.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !t.stopping.Load() {
				continue
			}
			return // the ring is empty after the detach (Close), or closed
		}
		d, ok := t.parse(rec.RawSample)
		if !ok {
			continue
		}
		t.mu.Lock()
		keep := len(t.events) < MaxEvents
		if keep {
			t.events = append(t.events, d)
		} else {
			t.extra++
		}
		t.mu.Unlock()
		if keep && fn != nil {
			fn(d)
		}
	}
}

// Events returns the drops read so far (at most MaxEvents), and how many
// more were read and not kept.
func (t *Tracer) Events() ([]Drop, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Drop(nil), t.events...), t.extra
}

// Counts reads the program's counters (after Close, their last values).
// Not safe to call concurrently with Close.
func (t *Tracer) Counts() (Counts, error) {
	if t.closed {
		return t.final, nil
	}
	var v [countSize]byte
	if err := t.counters.Lookup(uint32(0), v[:]); err != nil {
		return Counts{}, err
	}
	ne := binary.NativeEndian
	return Counts{Examined: ne.Uint64(v[cExamined:]), Matched: ne.Uint64(v[cMatched:]), Lost: ne.Uint64(v[cLost:])}, nil
}

// Close detaches the program, waits until the events it wrote before are
// read, and frees everything (the kernel frees it too when the process
// dies: nothing is pinned).
func (t *Tracer) Close() error {
	if t.rd == nil {
		return nil
	}
	// Detach first, so that nothing is written after what is drained.
	var err error
	for _, o := range t.objs {
		if l, ok := o.(link.Link); ok {
			err = errors.Join(err, l.Close())
		}
	}
	// Read what is there, then stop waiting.
	t.stopping.Store(true)
	<-t.done
	err = errors.Join(err, t.rd.Close())
	if c, cerr := t.Counts(); cerr == nil {
		t.final = c
	} else {
		err = errors.Join(err, cerr)
	}
	t.closed = true
	t.rd = nil
	return errors.Join(err, t.closeObjs())
}

func (t *Tracer) closeObjs() error {
	var err error
	for i := len(t.objs) - 1; i >= 0; i-- {
		if _, ok := t.objs[i].(link.Link); ok {
			continue // closed by Close, or never attached
		}
		err = errors.Join(err, t.objs[i].Close())
	}
	t.objs = nil
	return err
}

// parse reads one event.
func (t *Tracer) parse(b []byte) (Drop, bool) {
	if len(b) < evSize {
		return Drop{}, false
	}
	ne := binary.NativeEndian
	d := Drop{
		Code:    ne.Uint32(b[oReason:]),
		Ifindex: int(ne.Uint32(b[oIfindex:])),
		NetNS:   ne.Uint32(b[oNetns:]),
		Iface:   cString(b[oIfname : oIfname+16]),
		TS:      time.Unix(0, int64(ne.Uint64(b[oTS:]))).Add(t.boot),
	}
	d.Reason = t.l.reasonName(d.Code)
	d.Location = location(cString(b[oSym : oSym+symLen]))
	ip := b[oIP : oIP+20]
	d.Src, _ = netip.AddrFromSlice(ip[12:16])
	d.Dst, _ = netip.AddrFromSlice(ip[16:20])
	l4 := b[oL4 : oL4+8]
	be := binary.BigEndian
	switch ip[9] {
	case 1:
		d.Proto, d.ICMPType, d.ICMPID, d.ICMPSeq = "icmp", int(l4[0]), int(be.Uint16(l4[4:])), int(be.Uint16(l4[6:]))
	case 6, 17:
		d.Proto = "tcp"
		if ip[9] == 17 {
			d.Proto = "udp"
		}
		d.SrcPort, d.DstPort = int(be.Uint16(l4[0:])), int(be.Uint16(l4[2:]))
	}
	return d, true
}

// reasonName is the kernel's name of a drop reason. Reasons of a
// subsystem (the upper 16 bits: mac80211, openvswitch) are not in enum
// skb_drop_reason and are named by their numbers.
func (l *layout) reasonName(code uint32) string {
	if n, ok := l.reasons[code]; ok {
		return n
	}
	if sub := code >> 16; sub != 0 {
		return "subsystem " + strconv.Itoa(int(sub)) + " reason " + strconv.Itoa(int(code&0xffff))
	}
	return "reason " + strconv.Itoa(int(code))
}

// location keeps a symbol name: the kernel prints an address it cannot
// name as a number, and kernel addresses do not leave the agent.
func location(s string) string {
	if s == "" || strings.HasPrefix(s, "0x") || strings.Trim(s, "0123456789abcdefx") == "" {
		return ""
	}
	return s
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// bootOffset is CLOCK_REALTIME − CLOCK_BOOTTIME: what turns the program's
// timestamps into the wall clock the packet timestamps use.
func bootOffset() time.Duration {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(now.UnixNano() - ts.Nano())
}
