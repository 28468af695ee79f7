package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/netsnap"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// An IPv6 echo's conntrack entry is of protocol icmp6 (IPPROTO_ICMPV6),
// while the probe spec, and so the flow reportNAT builds, says icmp for
// both families: the events of an IPv6 ICMP probe are still its own.
func TestFromEventsFindsTheEntryOfEitherFamilysEcho(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	for _, c := range []struct {
		src, dst, vip, ctProto string
	}{
		{"10.244.0.2", "10.96.0.10", "10.244.0.3", "icmp"},
		{"fd00::2", "fd00:96::10", "fd00::3", "icmp6"},
	} {
		f := netsnap.Flow{Proto: "icmp", Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), ICMPID: 4711}
		entry := func(reply bool) *wire.NAT {
			return &wire.NAT{Proto: c.ctProto, DNAT: true, SeenReply: reply,
				Orig:  wire.Tuple{Src: c.src, Dst: c.dst, ICMPID: 4711},
				Reply: wire.Tuple{Src: c.vip, Dst: c.src, ICMPID: 4711}}
		}
		other := entry(false)
		other.Orig.ICMPID = 4712
		events := []netsnap.ConntrackEvent{
			{Type: "new", Seen: t0, Entry: entry(false)},
			{Type: "new", Seen: t0.Add(time.Millisecond), Entry: other},
			{Type: "update", Seen: t0.Add(2 * time.Millisecond), Entry: entry(true)},
			{Type: "destroy", Seen: t0.Add(3 * time.Millisecond), Entry: entry(false)},
		}
		n, seen, alive := fromEvents(events, f)
		if n == nil {
			t.Fatalf("%s: no entry found for an echo %s → %s among %s entries", c.ctProto, c.src, c.dst, c.ctProto)
		}
		if !seen.Equal(t0) || alive || !n.SeenReply || n.Reply.Src != c.vip {
			t.Errorf("%s: seen %v alive %v seenReply %v reply from %s; want first seen %v, gone, a reply seen, from %s",
				c.ctProto, seen, alive, n.SeenReply, n.Reply.Src, t0, c.vip)
		}
	}
}
