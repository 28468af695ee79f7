package session

import (
	"fmt"
	"strings"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// What the plugin keeps of one agent's stream, whatever the traffic: at
// most MaxPacketLines packet and change lines, and MaxKeptBytes of lines
// in all (as received). A decoded packet line takes about 1.5 KB of
// memory, so an agent's packet lines hold about 15 MB at most. An agent
// within its default byte budget stays under both bounds in an active
// trace; they hold against an agent without a budget and a hostile one.
// What is set aside is counted, and the trace says so.
const (
	MaxPacketLines = 10000
	MaxKeptBytes   = 32 << 20
	maxStatsLines  = 16
)

// keeper decides which lines of one stream are kept.
type keeper struct {
	in             trace.Intake
	kept           int64 // bytes of the lines kept
	packets, stats int
	hello, bye     bool
}

// keep reports whether to keep line e of n bytes, and counts it if not.
// The first hello and the first bye are always kept: the session and the
// merge depend on them.
func (k *keeper) keep(e *wire.Envelope, n int) bool {
	ok := true
	switch e.Kind {
	case wire.KindHello:
		ok, k.hello = !k.hello, true
	case wire.KindBye:
		ok, k.bye = !k.bye, true
	case wire.KindStats:
		ok = k.stats < maxStatsLines
		k.stats++
	case wire.KindPacket, wire.KindChange:
		ok = k.packets < MaxPacketLines && k.kept+int64(n) <= MaxKeptBytes
		if ok {
			k.packets++
		}
	default:
		ok = k.kept+int64(n) <= MaxKeptBytes
	}
	if !ok {
		k.in.CutLines++
		k.in.CutBytes += uint64(n)
		return false
	}
	k.kept += int64(n)
	return true
}

// note copies the reader's counters into the intake.
func (k *keeper) note(rd *wire.Reader) {
	k.in.ReceivedBytes = rd.Bytes
	k.in.Invalid, k.in.InvalidReason, k.in.Clamped = rd.Skipped, rd.Reason, rd.Clamped
}

// ReceivedLine is the stats line printed after a run: the bytes received
// from every agent, which crossed the API server in a cluster.
func ReceivedLine(streams []trace.Stream) string {
	var total int64
	var each []string
	for _, s := range streams {
		total += s.Intake.ReceivedBytes
		each = append(each, s.Display+" "+trace.FormatBytes(s.Intake.ReceivedBytes))
	}
	return fmt.Sprintf("podtrace: received %s from %d agents (%s)", trace.FormatBytes(total), len(streams), strings.Join(each, ", "))
}
