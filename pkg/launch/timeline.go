package launch

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Timeline records when the steps of one run happened, from the
// command's start: what --timing prints, and what the end-to-end timing
// tests read to say where the time to a verdict goes. A nil Timeline
// records nothing.
type Timeline struct {
	start time.Time
	mu    sync.Mutex
	marks []Mark
}

// Mark is one step: who did it (an agent ID, or "" for the run), what,
// and when, from the start.
type Mark struct {
	Who  string
	What string
	At   time.Duration
}

// NewTimeline starts a timeline now.
func NewTimeline() *Timeline { return &Timeline{start: time.Now()} }

// Mark records a step now.
func (t *Timeline) Mark(who, what string) {
	if t == nil {
		return
	}
	at := time.Since(t.start)
	t.mu.Lock()
	t.marks = append(t.marks, Mark{Who: who, What: what, At: at})
	t.mu.Unlock()
}

// Marks returns the steps in the order they were recorded.
func (t *Timeline) Marks() []Mark {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Mark(nil), t.marks...)
}

// Write prints the steps, one per line, each with its time from the start
// and from the step before it.
func (t *Timeline) Write(w io.Writer) {
	var prev time.Duration
	for _, m := range t.Marks() {
		who := m.Who
		if who == "" {
			who = "run"
		}
		fmt.Fprintf(w, "podtrace: timing: %7.3f s (+%5.0f ms) %-8s %s\n", m.At.Seconds(), float64(m.At-prev)/float64(time.Millisecond), who, m.What)
		prev = m.At
	}
}
