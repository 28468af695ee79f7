//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestClusterWatchThreeRoundsAsLimitedUser: `kubectl podtrace pod-a pod-b
// --watch --count 3 -o json` as the limited user: the agents are armed
// once, and the output is the trace line, three round lines (1, 2, 3),
// each delivered across the five hops of the same-node bridge each way
// (pod eth0, host veth, cni0, host veth, pod eth0), and a delivered
// verdict of three rounds whose table has those ten rows, each seen in
// every round. Nothing is left on the node.
func TestClusterWatchThreeRoundsAsLimitedUser(t *testing.T) {
	r := kubectl(t, userConfig, podtraceArgs("e2e/pod-a", "e2e/pod-b", "--watch", "--count", "3", "-o", "json")...)
	t.Logf("%s", r)
	if r.err != nil {
		t.Fatalf("watch failed: %v", r.err)
	}
	var lines []watchLine
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var j watchLine
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		lines = append(lines, j)
	}
	if len(lines) != 5 || lines[0].Kind != "trace" || lines[4].Kind != "verdict" {
		t.Fatalf("%d lines; want the trace line, 3 rounds and the verdict", len(lines))
	}
	want := "pod eth0,host veth,bridge,host veth,pod eth0"
	for i, l := range lines[1:4] {
		if l.Kind != "round" || l.Round != i+1 || l.Result != "delivered" {
			t.Errorf("line %d: %s round %d %s; want round %d delivered", i+2, l.Kind, l.Round, l.Result, i+1)
		}
		roles := map[bool][]string{}
		for _, h := range l.Hops {
			if h.Seen {
				roles[h.Toward] = append(roles[h.Toward], h.Role)
			}
		}
		for _, toward := range []bool{true, false} {
			if got := strings.Join(roles[toward], ","); got != want {
				t.Errorf("round %d hops (toward %v) %s; want %s", l.Round, toward, got, want)
			}
		}
	}
	v := lines[4]
	if v.Result != "delivered" || v.Sent != 3 || v.Delivered != 3 || v.Watch == nil || v.Watch.Rounds != 3 || len(v.Watch.Hops) != 10 {
		t.Fatalf("verdict %+v; want delivered, 3 of 3 rounds, 10 hops", v)
	}
	for _, h := range v.Watch.Hops {
		if h.Sent != 3 || h.Seen != 3 {
			t.Errorf("hop %s: sent %d seen %d; want 3 and 3", h.Role, h.Sent, h.Seen)
		}
	}
	noNodePodsEventually(t)
}

// watchLine is a line of a watch's JSON output (docs/trace-json.md).
type watchLine struct {
	Kind      string `json:"kind"`
	Round     int    `json:"round"`
	Result    string `json:"result"`
	Sent      int    `json:"sent"`
	Delivered int    `json:"delivered"`
	Hops      []struct {
		Role   string `json:"role"`
		Toward bool   `json:"toward"`
		Seen   bool   `json:"seen"`
	} `json:"hops"`
	Watch *struct {
		Rounds int `json:"rounds"`
		Hops   []struct {
			Role string `json:"role"`
			Sent int    `json:"sent"`
			Seen int    `json:"seen"`
		} `json:"hops"`
	} `json:"watch"`
}
