package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podtrace/kubectl-podtrace/pkg/outfile"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// A recording is a run's raw material: the session and every agent's
// observation stream, as a directory (session.json and one AGENT.jsonl per
// agent). It replays into the same trace anywhere, later — for a support
// case, or as a golden test.
type recordingHeader struct {
	Session trace.Session `json:"session"`
	ArmedNs time.Duration `json:"armedNs"`
	Notes   []string      `json:"notes,omitempty"`
	Agents  []recAgent    `json:"agents"`
}

type recAgent struct {
	ID      string `json:"id"`
	Display string `json:"display"`
	Gaps    uint64 `json:"gaps,omitempty"`
	File    string `json:"file"`
	// Intake is what the plugin received and set aside during the run.
	Intake *trace.Intake `json:"intake,omitempty"`
}

// Save writes a recording of the result into dir (created if missing).
// What agents saw of the cluster's traffic is the user's alone: the files
// are 0600, a directory created is 0700, and a symbolic link at dir or at
// a file's name is refused (package outfile).
func Save(dir string, s trace.Session, r *Result, notes []string) error {
	if _, err := outfile.Dir(dir); err != nil {
		return err
	}
	write := func(name string, fill func(f *os.File) error) error {
		f, err := outfile.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fill(f.File); err != nil {
			f.Abort()
			return err
		}
		return f.Commit()
	}
	h := recordingHeader{Session: s, ArmedNs: r.Armed, Notes: notes}
	for i, st := range r.Streams {
		file := fmt.Sprintf("%02d-%s.jsonl", i+1, safeName(st.Agent))
		in := st.Intake
		h.Agents = append(h.Agents, recAgent{ID: st.Agent, Display: st.Display, Gaps: st.Gaps, File: file, Intake: &in})
		err := write(file, func(f *os.File) error {
			enc := json.NewEncoder(f)
			for _, e := range st.Lines {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return write("session.json", func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// Load reads a recording back.
func Load(dir string) (s trace.Session, streams []trace.Stream, armed time.Duration, notes []string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "session.json"))
	if err != nil {
		return s, nil, 0, nil, fmt.Errorf("%s is not a recording (kubectl podtrace … --save DIR writes one): %w", dir, err)
	}
	var h recordingHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return s, nil, 0, nil, fmt.Errorf("%s/session.json: %w", dir, err)
	}
	for _, a := range h.Agents {
		f, err := os.Open(filepath.Join(dir, filepath.Base(a.File)))
		if err != nil {
			return s, nil, 0, nil, err
		}
		st := trace.Stream{Agent: a.ID, Display: a.Display, Gaps: a.Gaps}
		// A recording is read within the same bounds as a live stream.
		var k keeper
		rd := wire.NewReader(f)
		for {
			e, err := rd.Next()
			if err != nil {
				f.Close()
				if errors.Is(err, io.EOF) {
					break
				}
				return s, nil, 0, nil, fmt.Errorf("%s: %w", a.File, err)
			}
			if k.keep(e, rd.LineBytes) {
				st.Lines = append(st.Lines, e)
			}
		}
		k.note(rd)
		st.Intake = k.in
		if a.Intake != nil { // what the live run received and set aside
			st.Intake = *a.Intake
			st.Intake.CutLines += k.in.CutLines
			st.Intake.CutBytes += k.in.CutBytes
			st.Intake.Invalid += k.in.Invalid
			st.Intake.Clamped += k.in.Clamped
			if st.Intake.InvalidReason == "" {
				st.Intake.InvalidReason = k.in.InvalidReason
			}
		}
		streams = append(streams, st)
	}
	return h.Session, streams, h.ArmedNs, h.Notes, nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, s)
}
