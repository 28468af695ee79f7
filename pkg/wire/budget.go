package wire

import (
	"errors"
	"time"
)

// DefaultBudget is the bytes per second an agent streams unless told
// otherwise: 128 KiB/s, about 200 packet lines a second.
//
// The stream of an agent in a cluster crosses the API server and the
// kubelet (pods/attach), like `kubectl logs -f` of a container. A chatty
// pod logging 1,000 lines of ~300 bytes a second costs them ~300 KB/s and
// is followed that way every day; so is an ingress controller's access
// log. At 128 KiB/s an agent stays well below that, and a trace with
// three agents moves at most ~400 KB/s for the few seconds it runs. An
// active trace needs a few dozen packet lines (~30 KB for the whole
// run), far below one second of budget; a flood that reaches user space
// is cut instead of being shipped through the control plane.
const DefaultBudget = 128 << 10

// maxBudget bounds a budget so that its arithmetic cannot overflow.
const maxBudget = 1 << 32

// ErrOverBudget is returned by Emit for a packet or change line that the
// byte budget cut: it was not written and took no sequence number; the
// Writer counts it (Cut).
var ErrOverBudget = errors.New("wire: line cut: the byte budget is spent")

// A quarter of the bucket is kept for small flows: a flow (addresses,
// protocol, ports, ICMP id) that wrote fewer than smallFlow lines in the
// current second. A flood is one big flow, or a few: it spends three
// quarters of the budget and is cut; a probe's frames, an ARP exchange,
// a neighbour change are small flows and still pass. At most maxFlows
// flows are told apart per second; flows beyond count as big.
const (
	reserveShare = 4
	smallFlow    = 32
	maxFlows     = 4096
)

// budget is a token bucket of bytes. It holds at most one second of its
// rate; tokens are kept in byte-nanoseconds so that frequent small refills
// lose nothing to rounding.
type budget struct {
	rate   int64 // bytes per second; 0: no limit
	tokens int64 // byte·ns
	last   time.Time
	lines  uint64 // cut
	bytes  uint64
	window time.Time         // start of the second flows are counted in
	flows  map[uint64]uint32 // lines per flow in this second
}

func (b *budget) set(rate int64, now time.Time) {
	rate = min(max(rate, 0), maxBudget)
	b.rate, b.tokens, b.last = rate, rate*int64(time.Second), now
}

// spend takes n bytes for a line of the given flow from the bucket, or
// counts a cut line and reports false when it holds fewer (fewer above the
// reserve, for a big flow).
func (b *budget) spend(n int, now time.Time, flow uint64) bool {
	if b.rate == 0 {
		return true
	}
	capacity := b.rate * int64(time.Second)
	if el := now.Sub(b.last); el > 0 {
		el = min(el, time.Second)
		b.tokens = min(b.tokens+b.rate*int64(el), capacity)
		b.last = now
	}
	if b.flows == nil || now.Sub(b.window) >= time.Second || now.Before(b.window) {
		if b.flows == nil {
			b.flows = make(map[uint64]uint32)
		}
		clear(b.flows)
		b.window = now
	}
	c, known := b.flows[flow]
	if known || len(b.flows) < maxFlows {
		b.flows[flow] = c + 1
	}
	floor := int64(0)
	if c >= smallFlow || !known && len(b.flows) >= maxFlows {
		floor = capacity / reserveShare
	}
	cost := int64(n) * int64(time.Second)
	if b.tokens-cost < floor {
		b.lines++
		b.bytes += uint64(n)
		return false
	}
	b.tokens -= cost
	return true
}

// packetFlow is the flow a packet line counts against: FNV-1a of its
// addresses, protocol, ports and ICMP id (of the ARP operation's
// addresses for ARP), without allocating.
func packetFlow(p *Packet) uint64 {
	h := uint64(14695981039346656037)
	str := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * 1099511628211
		}
		h = (h ^ 0) * 1099511628211
	}
	num := func(v int) {
		for i := 0; i < 4; i++ {
			h = (h ^ uint64(byte(v>>(8*i)))) * 1099511628211
		}
	}
	switch {
	case p.ARP != nil:
		str("arp")
		str(p.ARP.SenderIP)
		str(p.ARP.TargetIP)
	case p.IP != nil:
		str(p.IP.Src)
		str(p.IP.Dst)
		str(p.IP.Proto)
		if l := p.L4; l != nil {
			num(l.SrcPort)
			num(l.DstPort)
			num(l.ICMPID)
			str(l.Type)
		}
	default:
		if p.Eth != nil {
			str(p.Eth.Src)
			str(p.Eth.Dst)
			str(p.Eth.Type)
		}
	}
	return h
}

// changeFlow is the flow change lines count against: one per kind of
// change (neighbour, FDB, link).
func changeFlow(c *Change) uint64 {
	p := Packet{Eth: &Eth{Type: "change/" + c.What}}
	return packetFlow(&p)
}
