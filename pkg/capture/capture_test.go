package capture

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

var pktTypeName = map[uint8]string{
	unix.PACKET_HOST: "HOST", unix.PACKET_BROADCAST: "BROADCAST", unix.PACKET_MULTICAST: "MULTICAST",
	unix.PACKET_OTHERHOST: "OTHERHOST", unix.PACKET_OUTGOING: "OUTGOING",
}

// Every datagram sent across a veth pair is seen once on each side, with
// the side's ifindex, OUTGOING on the sender and HOST on the receiver,
// in order with non-decreasing timestamps, truncated to Snaplen in the
// kernel, and without drops. The datagrams go out in rounds of fewer
// frames than the ring has blocks, each round read on both sides before
// the next is sent: the ring can never fill, however slowly a loaded
// machine retires blocks, so a drop is a bug and not a figure.
func TestVethBothSides(t *testing.T) {
	nsA, nsB, a, b := pair(t)
	const port, n, round, size, snap = 9000, 2048, 32, 100, 64
	cfg := func(ifi int) Config {
		return Config{Ifindex: ifi, Filter: udpPortFilter(t, port), Snaplen: snap}
	}
	ia, ib := ifindex(t, nsA, a), ifindex(t, nsB, b)
	ha, hb := openIn(t, nsA, cfg(ia)), openIn(t, nsB, cfg(ib))
	listenUDP(t, nsB, "10.200.0.2:9000")
	c := dialUDP(t, nsA, "10.200.0.2:9000")

	sides := []struct {
		name    string
		h       *Handle
		ifindex int
		pkttype uint8
		got     []seen
	}{{"sender " + a, ha, ia, unix.PACKET_OUTGOING, nil}, {"receiver " + b, hb, ib, unix.PACKET_HOST, nil}}
	start := time.Now()
	buf := make([]byte, size)
	for i := 0; i < n; i += round {
		for j := i; j < i+round; j++ {
			buf[0], buf[1], buf[2], buf[3] = byte(j>>24), byte(j>>16), byte(j>>8), byte(j)
			if _, err := c.Write(buf); err != nil {
				t.Fatalf("send %d: %v", j, err)
			}
		}
		for k := range sides {
			s := &sides[k]
			// A generous bound: only a capture that lost frames takes it.
			s.got = append(s.got, collect(t, s.h, i+round-len(s.got), time.Minute)...)
			if len(s.got) != i+round {
				t.Fatalf("%s: captured %d frames of the first %d sent", s.name, len(s.got), i+round)
			}
		}
	}
	for _, side := range sides {
		got := side.got
		var prev time.Time
		for i, f := range got {
			if f.Ifindex != side.ifindex || f.PktType != side.pkttype || f.seq != i {
				t.Fatalf("%s frame %d: ifindex %d pkttype %s seq %d; want ifindex %d pkttype %s seq %d",
					side.name, i, f.Ifindex, pktTypeName[f.PktType], f.seq, side.ifindex, pktTypeName[side.pkttype], i)
			}
			if f.Len != 14+20+8+size || f.data != snap {
				t.Fatalf("%s frame %d: Len %d, %d bytes captured; want %d, %d", side.name, i, f.Len, f.data, 14+20+8+size, snap)
			}
			if f.TS.Before(prev) || f.TS.Before(start.Add(-time.Second)) || f.TS.After(time.Now()) {
				t.Fatalf("%s frame %d: timestamp %v after %v (start %v)", side.name, i, f.TS, prev, start)
			}
			prev = f.TS
		}
		st, err := side.h.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Drops != 0 || st.Packets != n {
			t.Fatalf("%s: stats %+v, want %d packets and no drops", side.name, st, n)
		}
		t.Logf("%s: %d frames, all %s on ifindex %d, %v from first to last, stats %+v",
			side.name, len(got), pktTypeName[side.pkttype], side.ifindex, got[n-1].TS.Sub(got[0].TS), st)
	}
}

// A filter that matches nothing keeps the kernel's packet counter at 0
// while an unfiltered socket on the same interface sees the traffic: the
// filter runs in the kernel before anything is queued.
func TestFilterRunsInKernel(t *testing.T) {
	nsA, nsB, _, b := pair(t)
	ib := ifindex(t, nsB, b)
	none := openIn(t, nsB, Config{Ifindex: ib, Filter: dropAll(t)})
	all := openIn(t, nsB, Config{Ifindex: ib})
	listenUDP(t, nsB, "10.200.0.2:9000")
	sendSeq(t, dialUDP(t, nsA, "10.200.0.2:9000"), 500, 100)

	if got := collect(t, all, 500, time.Minute); len(got) < 500 {
		t.Fatalf("unfiltered socket saw %d frames, want >= 500", len(got))
	}
	n, err := none.Read(100*time.Millisecond, func(Frame) {})
	if err != nil || n != 0 {
		t.Fatalf("filtered Read = %d, %v; want 0, nil", n, err)
	}
	sn, _ := none.Stats()
	sa, _ := all.Stats()
	if sn.Packets != 0 || sn.Drops != 0 {
		t.Fatalf("drop-all filter: stats %+v, want zero", sn)
	}
	t.Logf("drop-all filter stats %+v; unfiltered socket on the same veth %+v", sn, sa)
}

// Ifindex 0 captures every interface of the namespace with one socket.
func TestAllInterfaces(t *testing.T) {
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	nsA, nsB, nsC := nettest.NS(t, p+"A"), nettest.NS(t, p+"B"), nettest.NS(t, p+"C")
	nettest.Veth(t, nsA, p+"ab", nsB, p+"ba")
	nettest.Veth(t, nsA, p+"ac", nsC, p+"ca")
	nettest.Run(t, "ip", "-n", nsA, "addr", "add", "10.200.1.1/24", "dev", p+"ab")
	nettest.Run(t, "ip", "-n", nsB, "addr", "add", "10.200.1.2/24", "dev", p+"ba")
	nettest.Run(t, "ip", "-n", nsA, "addr", "add", "10.200.2.1/24", "dev", p+"ac")
	nettest.Run(t, "ip", "-n", nsC, "addr", "add", "10.200.2.2/24", "dev", p+"ca")
	iab, iac := ifindex(t, nsA, p+"ab"), ifindex(t, nsA, p+"ac")

	h := openIn(t, nsA, Config{Filter: udpPortFilter(t, 9000)})
	listenUDP(t, nsB, "10.200.1.2:9000")
	listenUDP(t, nsC, "10.200.2.2:9000")
	// Loopback traffic inside nsA too, to show how lo appears.
	listenUDP(t, nsA, "127.0.0.1:9000")
	sendSeq(t, dialUDP(t, nsA, "10.200.1.2:9000"), 100, 64)
	sendSeq(t, dialUDP(t, nsA, "10.200.2.2:9000"), 100, 64)
	sendSeq(t, dialUDP(t, nsA, "127.0.0.1:9000"), 100, 64)

	got := collect(t, h, 400, time.Minute)
	count := map[int]map[string]int{}
	for _, f := range got {
		if count[f.Ifindex] == nil {
			count[f.Ifindex] = map[string]int{}
		}
		count[f.Ifindex][pktTypeName[f.PktType]]++
	}
	t.Logf("Ifindex=0 in the sender's namespace, frames by ifindex and pkttype: %v (%s=%d, %s=%d, lo=1)", count, p+"ab", iab, p+"ac", iac)
	if count[iab]["OUTGOING"] != 100 || count[iac]["OUTGOING"] != 100 {
		t.Fatalf("want 100 OUTGOING frames on each of ifindex %d and %d, got %v", iab, iac, count)
	}
}

// Promisc on a bridge raises its promiscuity while the socket is open, so
// that the bridge device also sees unicast frames it only forwards, and
// the kernel reverts it when the socket closes.
//
// Absence is shown by events, not by waiting: the bridge passes a frame up
// to its own device right after forwarding it, in the same softirq, before
// the frame can reach the far end's socket; so once nsC received the
// datagrams, any copy the bridge device got is already in its capture. A
// datagram to the bridge's own address, which the bridge device does
// receive, closes each burst and shows the capture reads what arrives.
func TestPromiscBridge(t *testing.T) {
	nettest.RequireRoot(t)
	p := nettest.Prefix()
	nsA, nsB, nsC := nettest.NS(t, p+"A"), nettest.NS(t, p+"B"), nettest.NS(t, p+"C")
	br := p + "br"
	nettest.Run(t, "ip", "-n", nsB, "link", "add", br, "type", "bridge")
	nettest.Veth(t, nsA, p+"a", nsB, p+"pa")
	nettest.Veth(t, nsC, p+"c", nsB, p+"pc")
	nettest.Run(t, "ip", "-n", nsB, "link", "set", p+"pa", "master", br)
	nettest.Run(t, "ip", "-n", nsB, "link", "set", p+"pc", "master", br)
	nettest.Run(t, "ip", "-n", nsB, "addr", "add", "10.200.3.2/24", "dev", br)
	nettest.Run(t, "ip", "-n", nsB, "link", "set", br, "up")
	nettest.Run(t, "ip", "-n", nsA, "addr", "add", "10.200.3.1/24", "dev", p+"a")
	nettest.Run(t, "ip", "-n", nsC, "addr", "add", "10.200.3.3/24", "dev", p+"c")
	ibr, ipa, ipc := ifindex(t, nsB, br), ifindex(t, nsB, p+"pa"), ifindex(t, nsB, p+"pc")
	atC := listenUDP(t, nsC, "10.200.3.3:9000")
	atBridge := listenUDP(t, nsB, "10.200.3.2:9000")
	c := dialUDP(t, nsA, "10.200.3.3:9000")
	mark := dialUDP(t, nsA, "10.200.3.2:9000")
	// Resolve ARP both ways and let the bridge learn both MACs: the
	// datagrams arrive once A's request and C's reply crossed it.
	sendSeq(t, c, 10, 64)
	receive(t, atC, 10)
	sendSeq(t, mark, 1, 64)
	receive(t, atBridge, 1)
	const sentinel = 1 << 30
	closeBurst := func() {
		t.Helper()
		buf := make([]byte, 64)
		buf[0] = sentinel >> 24
		if _, err := mark.Write(buf); err != nil {
			t.Fatal(err)
		}
		receive(t, atBridge, 1)
	}
	sawSentinel := func(out []seen) bool {
		for _, f := range out {
			if f.seq == sentinel {
				return true
			}
		}
		return false
	}

	before := promiscuity(t, nsB, br)
	plain := openIn(t, nsB, Config{Ifindex: ibr, Filter: udpPortFilter(t, 9000)})
	every := openIn(t, nsB, Config{Filter: udpPortFilter(t, 9000)})
	sendSeq(t, c, 100, 64)
	receive(t, atC, 100)
	closeBurst()
	got := collectUntil(t, plain, sawSentinel, time.Minute)
	if !sawSentinel(got) {
		t.Fatal("the bridge's capture never saw the datagram to the bridge's own address")
	}
	if forwarded := len(got) - 1; forwarded != 0 {
		t.Fatalf("non-promiscuous bridge saw %d forwarded unicast frames", forwarded)
	}
	var h *Handle
	if err := inNS(nsB, func() (err error) {
		h, err = Open(Config{Ifindex: ibr, Filter: udpPortFilter(t, 9000), Promisc: []int{ibr}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	during := promiscuity(t, nsB, br)
	sendSeq(t, c, 100, 64)
	receive(t, atC, 100)
	closeBurst()
	got = collectUntil(t, h, sawSentinel, time.Minute)
	types := map[string]int{}
	for _, f := range got {
		if f.seq != sentinel {
			types[pktTypeName[f.PktType]]++
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	after := promiscuity(t, nsB, br)
	t.Logf("bridge promiscuity before %d, open %d, after Close %d; promiscuous bridge saw %d forwarded frames %v",
		before, during, after, len(got)-1, types)
	if during != before+1 || after != before {
		t.Fatalf("promiscuity before %d, open %d, after %d", before, during, after)
	}
	if types["OTHERHOST"] != 100 || len(types) != 1 {
		t.Fatalf("promiscuous bridge: %v, want 100 OTHERHOST", types)
	}

	// Ifindex 0 in the bridge namespace: every port. Both bursts left
	// port C, 200 datagrams.
	leftC := func(out []seen) bool {
		n := 0
		for _, f := range out {
			if f.Ifindex == ipc && f.seq != sentinel {
				n++
			}
		}
		return n >= 200
	}
	all := collectUntil(t, every, leftC, time.Minute)
	names := map[int]string{ibr: "bridge", ipa: "port A", ipc: "port C"}
	byIf := map[string]int{}
	for _, f := range all {
		byIf[names[f.Ifindex]+" "+pktTypeName[f.PktType]]++
	}
	t.Logf("Ifindex=0 in the bridge namespace over both bursts (200 datagrams A->C, 2 to the bridge): %v", byIf)
	if !leftC(all) {
		t.Errorf("a capture of every interface saw fewer than the 200 datagrams leave port C: %v", byIf)
	}
}

// Close from another goroutine makes a pending Read return ErrClosed
// promptly; Read after Close and a second Close behave.
func TestCloseUnblocksRead(t *testing.T) {
	nsA, _, a, _ := pair(t)
	h := openIn(t, nsA, Config{Ifindex: ifindex(t, nsA, a), Filter: dropAll(t)})
	done := make(chan error, 1)
	var returned time.Time
	go func() {
		_, err := h.Read(time.Minute, func(Frame) {})
		returned = time.Now()
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Read returned %v, want ErrClosed", err)
		}
		t.Logf("pending Read returned %q %v after Close was called (Close itself took %v)", err, returned.Sub(t0), time.Since(t0))
	case <-time.After(time.Minute): // only a hang takes this long
		t.Fatal("Read still blocked a minute after Close")
	}
	if _, err := h.Read(0, func(Frame) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := h.Stats(); err != nil {
		t.Fatalf("Stats after Close: %v", err)
	}
}

// A missing interface is reported clearly, for bind and for promisc.
func TestBadIfindex(t *testing.T) {
	nsA, _, _, _ := pair(t)
	for _, cfg := range []Config{{Ifindex: 9999}, {Promisc: []int{9999}}} {
		err := inNS(nsA, func() error {
			h, err := Open(cfg)
			if err == nil {
				h.Close()
			}
			return err
		})
		if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "no interface with index 9999") {
			t.Fatalf("Open(%+v) = %v, want ENODEV explained", cfg, err)
		}
		t.Logf("%v", err)
	}
	if _, err := Open(Config{Ifindex: -1}); err == nil {
		t.Fatal("negative ifindex accepted")
	}
	if _, err := Open(Config{BlockSize: 1000}); err == nil || !strings.Contains(err.Error(), "page size") {
		t.Fatalf("BlockSize 1000: %v", err)
	}
}

// The filter rewrite keeps the user's verdicts and enforces the snap
// length, including for "ret a".
func TestClampSnaplen(t *testing.T) {
	// Returns the packet's first byte as length if non-zero, else 1000.
	user := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 1},
		bpf.RetA{},
		bpf.RetConstant{Val: 1000},
	}
	raw, err := bpf.Assemble(user)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := clampSnaplen(raw, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []bpf.RawInstruction
	for _, ins := range prog {
		out = append(out, bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K})
	}
	insns, ok := bpf.Disassemble(out)
	if !ok {
		t.Fatalf("rewritten program does not disassemble: %v", insns)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 300)
	for _, c := range []struct{ first, want int }{{0, 100}, {50, 50}, {100, 100}, {200, 100}} {
		pkt[0] = byte(c.first)
		if got, err := vm.Run(pkt); err != nil || got != c.want {
			t.Errorf("first byte %d: ret %d, %v; want %d", c.first, got, err, c.want)
		}
	}
	none, _ := clampSnaplen(nil, 192)
	if len(none) != 1 || none[0].Code != opRetK || none[0].K != 192 {
		t.Errorf("nil filter became %+v", none)
	}
}

// Wake makes a pending Read return, with nothing, and the handle keeps
// working; DrainedBy is false while a frame captured up to its time is
// unread (in the block the kernel fills or in a retired one), and true
// once they are all read and the kernel's block holds nothing.
func TestWakeAndDrainedBy(t *testing.T) {
	nsA, nsB, a, _ := pair(t)
	const port, n = 9001, 20
	h := openIn(t, nsA, Config{Ifindex: ifindex(t, nsA, a), Filter: udpPortFilter(t, port)})
	if !h.DrainedBy(time.Now()) {
		t.Fatal("DrainedBy false on a ring that captured nothing")
	}
	done := make(chan int, 1)
	go func() {
		n, err := h.Read(time.Minute, func(Frame) {})
		if err != nil {
			t.Errorf("woken Read: %v", err)
		}
		done <- n
	}()
	time.Sleep(100 * time.Millisecond)
	h.Wake()
	select {
	case got := <-done:
		if got != 0 {
			t.Fatalf("woken Read handed out %d frames; nothing was sent", got)
		}
	case <-time.After(time.Minute): // only a hang takes this long
		t.Fatal("Read still blocked a minute after Wake")
	}

	listenUDP(t, nsB, "10.200.0.2:9001")
	c := dialUDP(t, nsA, "10.200.0.2:9001")
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	if h.DrainedBy(sent) {
		t.Fatalf("DrainedBy true with %d frames sent and none read", n)
	}
	got := 0
	deadline := time.Now().Add(time.Minute)
	for got < n && time.Now().Before(deadline) {
		k, err := h.Read(time.Second, func(Frame) {})
		if err != nil {
			t.Fatal(err)
		}
		got += k
		if got < n && h.DrainedBy(sent) {
			t.Fatalf("DrainedBy true after %d of %d frames were read", got, n)
		}
	}
	if got != n {
		t.Fatalf("read %d frames of %d", got, n)
	}
	if !h.DrainedBy(sent) {
		t.Fatal("DrainedBy false once every frame sent was read and nothing else was captured")
	}
	// More frames, in the block the kernel opened when it retired the one
	// read above (after sent): every frame up to sent is read, not those
	// up to now.
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	again := time.Now()
	drained := h.DrainedBy(sent)
	h.mu.Lock()
	retired := h.blockReady(h.cur) // by the kernel's timer meanwhile: then not drained, rightly
	h.mu.Unlock()
	if !drained && !retired {
		t.Fatal("DrainedBy(sent) false: the unread frames came after sent, in a block opened after it")
	}
	if h.DrainedBy(again) {
		t.Fatal("DrainedBy true with frames sent before its time unread")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h.Wake() // after Close, a no-op
	if !h.DrainedBy(time.Now()) {
		t.Fatal("DrainedBy false on a closed handle: nothing more can be read")
	}
}
