package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/session"
)

// What the plugin says of the lingering agents after a run: until when
// they stay warm when every one went back to waiting (the earliest end of
// a lifetime bounds it), and no such claim when one did not.
func TestLingerLineClaimsWarmOnlyWhenEveryAgentWaits(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	for _, c := range []struct {
		name string
		left []session.Lingering
		want string
	}{{
		name: "all waiting",
		left: []session.Lingering{{ID: "pod-a", Waiting: true, Cap: later}, {ID: "node-1", Waiting: true, Cap: later}},
		want: "the agents stay warm until 18:02:00 UTC (--linger 2m0s) for reruns; `kubectl podtrace cleanup` ends them now",
	}, {
		name: "a lifetime ends first",
		left: []session.Lingering{{ID: "pod-a", Waiting: true, Cap: now.Add(90 * time.Second)}, {ID: "node-1", Waiting: true}},
		want: "the agents stay warm until 18:01:30 UTC (the end of their lifetime: --linger 2m0s, at most 10 times it from their start) for reruns; `kubectl podtrace cleanup` ends them now",
	}, {
		name: "one did not say bye",
		left: []session.Lingering{{ID: "pod-a", Waiting: true, Cap: later}, {ID: "node-1"}},
		want: "agents node-1 did not say they went back to waiting for a rerun",
	}, {
		name: "none known",
		want: "the agents did not say they went back to waiting for a rerun",
	}} {
		t.Run(c.name, func(t *testing.T) {
			got := lingerLine(c.left, 2*time.Minute, now)
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("got %q; want it to start %q", got, c.want)
			}
			if strings.Contains(c.want, "did not") && strings.Contains(got, "stay warm") {
				t.Errorf("%q claims the agents stay warm", got)
			}
		})
	}
}
