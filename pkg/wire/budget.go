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

// budget is a token bucket of bytes. It holds at most one second of its
// rate; tokens are kept in byte-nanoseconds so that frequent small refills
// lose nothing to rounding.
type budget struct {
	rate   int64 // bytes per second; 0: no limit
	tokens int64 // byte·ns
	last   time.Time
	lines  uint64 // cut
	bytes  uint64
}

func (b *budget) set(rate int64, now time.Time) {
	rate = min(max(rate, 0), maxBudget)
	b.rate, b.tokens, b.last = rate, rate*int64(time.Second), now
}

// spend takes n bytes from the bucket, or counts a cut line and reports
// false when it holds fewer.
func (b *budget) spend(n int, now time.Time) bool {
	if b.rate == 0 {
		return true
	}
	if el := now.Sub(b.last); el > 0 {
		el = min(el, time.Second)
		b.tokens = min(b.tokens+b.rate*int64(el), b.rate*int64(time.Second))
		b.last = now
	}
	cost := int64(n) * int64(time.Second)
	if cost > b.tokens {
		b.lines++
		b.bytes += uint64(n)
		return false
	}
	b.tokens -= cost
	return true
}
