package trace

import (
	"fmt"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Summarized is what one agent counted in summary lines instead of
// streaming each frame, once its capture went over its threshold.
type Summarized struct {
	Agent     *AgentInfo
	Since     time.Time     // when it switched (the first summarized frame)
	Until     time.Time     // end of its last summary
	Above     int           // the threshold crossed, frames per second
	Interval  time.Duration // between summaries
	Summaries int
	// Packets and Bytes count every summarized frame; Drops the frames
	// the kernel dropped meanwhile.
	Packets, Bytes uint64
	Drops          uint64
	// Records is the number of flow records (flow × interface ×
	// direction) the summaries listed; Other* what they summed beyond
	// their largest records; Untracked the frames that found the agent's
	// flow table full.
	Records                                           int
	OtherRecords, OtherPackets, OtherBytes, Untracked uint64
}

// FlowHop is one flow at one interface in one direction, summed over an
// agent's summaries.
type FlowHop struct {
	Agent          *AgentInfo
	If             *Iface
	Dir            string
	Encap          string
	VNI            uint32
	Packets, Bytes uint64
	First, Last    time.Time
	Flags          string // TCP flags seen
}

// Flow is one summarized flow and the hops that counted it: along the
// expected path when they are on it, else in the order they first saw it.
type Flow struct {
	wire.Flow
	Toward  bool // from src toward dst
	Hops    []*FlowHop
	Packets uint64 // the most frames any hop counted
	Bytes   uint64
	First   time.Time
}

// Text says what the agent summarized, relative to the trace start.
func (sm *Summarized) Text(start time.Time) string {
	since := sm.Since.Sub(start)
	sign := "+"
	if since < 0 {
		sign = ""
	}
	every := ""
	if sm.Interval > 0 {
		every = " every " + FormatDuration(sm.Interval)
	}
	msg := fmt.Sprintf("%s summarized from %s%s on (over %d frames/s): %d frames, %s, in %d flow records, %d summaries%s; those frames are counted per flow and hop, not shown one by one, not in --pcap",
		sm.Agent.Name, sign, FormatDuration(since), sm.Above, sm.Packets, FormatBytes(int64(sm.Bytes)), sm.Records, sm.Summaries, every)
	if sm.OtherPackets > 0 {
		msg += fmt.Sprintf("; %d frames (%s) of %d smaller flow records summed as \"other\"", sm.OtherPackets, FormatBytes(int64(sm.OtherBytes)), sm.OtherRecords)
		if sm.Untracked > 0 {
			msg += fmt.Sprintf(", %d of them found the flow table full", sm.Untracked)
		}
	}
	return msg + fmt.Sprintf("; kernel drops meanwhile: %d", sm.Drops)
}
