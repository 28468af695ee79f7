package merge_test

import (
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// Agents that said nothing, or only lines without a hello (a stream cut
// short, an agent that failed to start): the trace is empty and says why,
// it does not fail.
func TestMergeOfAgentsThatSaidLittle(t *testing.T) {
	s := trace.Session{
		Src: trace.Endpoint{Name: "pod-a", Short: "pod-a", IP: "10.244.0.2", Agent: "pod-a"},
		Dst: trace.Endpoint{Name: "pod-b", Short: "pod-b", IP: "10.244.0.3", Agent: "pod-b"},
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lines := []*wire.Envelope{
		{Kind: wire.KindError, Error: &wire.Error{Msg: "capture: operation not permitted"}},
		{Kind: wire.KindPacket, Packet: &wire.Packet{TS: t0, Index: 7, Iface: "eth0", Dir: "out", FP: "x",
			IP: &wire.IP{Version: 4, Src: "10.244.0.2", Dst: "10.244.0.3", Proto: "icmp"}}},
		{Kind: wire.KindBye, Bye: &wire.Bye{Reason: wire.ByeError}},
	}
	for _, c := range []struct {
		name    string
		probe   *wire.ProbeSpec
		streams []trace.Stream
		result  string
	}{
		{"active, no streams", &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 1}, nil, "lost"},
		{"passive, no streams", nil, nil, "observed"},
		{"active, no hello", &wire.ProbeSpec{Proto: "icmp", Count: 1, ID: 1}, []trace.Stream{{Agent: "pod-a", Display: "pod-a", Lines: lines}}, "lost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.Probe = c.probe
			tr := merge.Merge(s, c.streams)
			t.Logf("verdict %+v, warnings %q", tr.Verdict, tr.Warnings)
			if tr.Verdict.Result != c.result {
				t.Errorf("result %q; want %q", tr.Verdict.Result, c.result)
			}
			if len(c.streams) > 0 && (len(tr.Warnings) == 0 || tr.Warnings[0] != "pod-a: capture: operation not permitted") {
				t.Errorf("warnings %q; want the agent's error first", tr.Warnings)
			}
			if c.probe != nil && len(c.streams) > 0 && (len(tr.Verdict.Evidence) != 1 || tr.Verdict.Evidence[0] != "pod-a: capture: operation not permitted") {
				t.Errorf("evidence %q; want the agent's error, the reason no probe was sent", tr.Verdict.Evidence)
			}
		})
	}
}
