package trace

import (
	"fmt"
	"time"
)

// ClockEstimate is the offset of one node's clock from the reference
// node's (the source's), estimated NTP-style from a request seen leaving
// the reference node (t1) and arriving on the other (t2), and its reply
// leaving the other (t3) and arriving back (t4):
//
//	offset = ((t2 − t1) + (t3 − t4)) / 2
//	bound  = ((t4 − t1) − (t3 − t2)) / 2
//
// The true offset lies within offset ± bound whatever the two one-way
// delays are (bound is half the round trip on the wire between the two
// nodes, the other node's processing time taken out). Of several pairs
// the one with the smallest bound is kept.
type ClockEstimate struct {
	Ref     string        `json:"ref"`  // reference clock domain (node)
	Node    string        `json:"node"` // this node's clock − the reference's
	Offset  time.Duration `json:"offsetNs"`
	Bound   time.Duration `json:"boundNs"` // ± error bound
	Pairs   int           `json:"pairs"`   // request/reply pairs seen on both nodes
	Applied bool          `json:"applied"` // timestamps of Node were corrected by Offset
}

// String is "node2 − node1 = +3 µs ± 20 µs (1 request/reply pair, applied)".
func (c ClockEstimate) String() string {
	if c.Pairs == 0 {
		return fmt.Sprintf("%s vs %s: no request/reply pair seen on both nodes, clocks assumed in sync", c.Node, c.Ref)
	}
	sign := "+"
	if c.Offset < 0 {
		sign = ""
	}
	how := "within its error bound: not applied"
	if c.Applied {
		how = "applied to " + c.Node + "'s timestamps"
	}
	pl := "pair"
	if c.Pairs > 1 {
		pl = "pairs"
	}
	return fmt.Sprintf("%s − %s = %s%s ± %s (%d request/reply %s, %s)", c.Node, c.Ref, sign, FormatDuration(c.Offset), FormatDuration(c.Bound), c.Pairs, pl, how)
}
