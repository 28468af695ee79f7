package session

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/podtrace/kubectl-podtrace/pkg/launch"
)

// stopRecorder wraps the fake launcher's agents and notes each Stop (where
// the cluster launcher deletes the node pods) in a shared log.
type stopRecorder struct {
	*fakeLauncher
	mu  sync.Mutex
	log []string
}

type recordedAgent struct {
	launch.Agent
	id  string
	rec *stopRecorder
}

func (a recordedAgent) Stop(ctx context.Context) error {
	a.rec.note("stop " + a.id)
	return a.Agent.Stop(ctx)
}

func (r *stopRecorder) note(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *stopRecorder) Start(ctx context.Context, s launch.Spec) (launch.Agent, error) {
	a, err := r.fakeLauncher.Start(ctx, s)
	if err != nil {
		return nil, err
	}
	return recordedAgent{Agent: a, id: s.ID, rec: r}, nil
}

// The verdict is on screen before the teardown: Show gets the finished
// trace while every agent is still to be stopped (their node pods still
// to be deleted), and the agents are stopped after it, also when Show
// reports an error (a lost probe's exit code).
func TestTheTraceIsShownBeforeTheAgentsAreStopped(t *testing.T) {
	for _, showErr := range []error{nil, io.ErrUnexpectedEOF} {
		rec := &stopRecorder{fakeLauncher: &fakeLauncher{written: map[string]*atomic.Int64{}, play: func(id string, w io.Writer) {
			io.WriteString(w, line(1, id, "hello", `{"role":"pod","netnsInode":1,"pid":1,"filter":"","snaplen":192,"deadline":"2026-12-01T10:01:00Z","links":[],"clock":"realtime"}`))
			if id == "pod-a" {
				io.WriteString(w, line(2, id, "probe", `{"id":"icmp/1","seq":1,"event":"reply","ts":"2026-12-01T10:00:00Z","done":true}`))
			}
			io.WriteString(w, line(3, id, "bye", `{"reason":"stopped"}`))
		}}}
		var shownWith int
		res, err := Run(context.Background(), rec, plan(), Options{Show: func(r *Result) error {
			shownWith = len(r.Streams)
			rec.note("show")
			return showErr
		}})
		if err != showErr {
			t.Fatalf("Run returned %v; want Show's error %v", err, showErr)
		}
		if res == nil || shownWith != 2 {
			t.Fatalf("Show saw %d streams (result %v); want both agents'", shownWith, res)
		}
		slices.Sort(rec.log[1:])
		if want := []string{"show", "stop pod-a", "stop pod-b"}; !slices.Equal(rec.log, want) {
			t.Errorf("order of events %q; want %q", rec.log, want)
		}
	}
}
