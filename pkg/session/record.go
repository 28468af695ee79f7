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

// Bounds of what Load reads from a recording. A recording holds what a
// run kept of each agent's stream (at most MaxKeptBytes of lines, and a
// hello and a bye beyond); a run has a handful of agents and at most 1000
// probes (--count).
const (
	maxHeaderBytes = 4 << 20
	maxStreamBytes = 2*MaxKeptBytes + 2*wire.MaxLine
	maxAgents      = 256
	maxNotes       = 64
	maxProbes      = 1000
)

// Load reads a recording back. It opens regular files only (a FIFO, a
// device or a directory in a recording's place is refused, never waited
// on), bounds every size and count it reads, and reads each stream with
// the bounds of a live one.
func Load(dir string) (s trace.Session, streams []trace.Stream, armed time.Duration, notes []string, err error) {
	notRec := func(err error) error {
		return fmt.Errorf("%s is not a recording (kubectl podtrace … --save DIR writes one): %w", dir, err)
	}
	if st, err := os.Stat(dir); err != nil {
		return s, nil, 0, nil, notRec(err)
	} else if !st.IsDir() {
		return s, nil, 0, nil, notRec(errors.New("not a directory"))
	}
	hf, err := openRegular(filepath.Join(dir, "session.json"), maxHeaderBytes)
	if err != nil {
		return s, nil, 0, nil, notRec(err)
	}
	b, err := io.ReadAll(hf)
	hf.Close()
	if err != nil {
		return s, nil, 0, nil, notRec(err)
	}
	var h recordingHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return s, nil, 0, nil, fmt.Errorf("%s: %w", filepath.Join(dir, "session.json"), err)
	}
	if err := h.check(); err != nil {
		return s, nil, 0, nil, fmt.Errorf("%s: %w", filepath.Join(dir, "session.json"), err)
	}
	for _, a := range h.Agents {
		name := filepath.Join(dir, filepath.Base(a.File))
		f, err := openRegular(name, maxStreamBytes)
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
				return s, nil, 0, nil, fmt.Errorf("%s: %w", name, err)
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

// check holds a recording's header to what a run writes: its counts
// bounded, its strings cut to the stream's limits, a probe the plugin
// could have sent.
func (h *recordingHeader) check() error {
	if len(h.Agents) > maxAgents {
		return fmt.Errorf("%d agents: a recording holds at most %d", len(h.Agents), maxAgents)
	}
	if len(h.Notes) > maxNotes {
		return fmt.Errorf("%d notes: a recording holds at most %d", len(h.Notes), maxNotes)
	}
	if p := h.Session.Probe; p != nil {
		switch {
		case p.Count < 1 || p.Count > maxProbes:
			return fmt.Errorf("probe count %d: want 1 to %d", p.Count, maxProbes)
		case p.Proto != "icmp" && p.Proto != "tcp" && p.Proto != "udp":
			return fmt.Errorf("probe protocol %q: want icmp, tcp or udp", wire.Cut(p.Proto, 64))
		case p.Port < 0 || p.Port > 65535:
			return fmt.Errorf("probe port %d: want 0 to 65535", p.Port)
		}
		p.Dst = wire.Cut(p.Dst, wire.MaxString)
	}
	if h.ArmedNs < 0 {
		h.ArmedNs = 0
	}
	for _, e := range []*trace.Endpoint{&h.Session.Src, &h.Session.Dst} {
		for _, p := range []*string{&e.Name, &e.Short, &e.IP, &e.Node, &e.Agent} {
			*p = wire.Cut(*p, wire.MaxString)
		}
	}
	h.Session.Shape = wire.Cut(h.Session.Shape, wire.MaxString)
	if m := h.Session.Mode; m != nil {
		m.Name, m.Why = wire.Cut(m.Name, wire.MaxString), wire.Cut(m.Why, wire.MaxText)
	}
	for i := range h.Notes {
		h.Notes[i] = wire.Cut(h.Notes[i], wire.MaxText)
	}
	for i := range h.Agents {
		a := &h.Agents[i]
		a.ID, a.Display, a.File = wire.Cut(a.ID, wire.MaxString), wire.Cut(a.Display, wire.MaxString), wire.Cut(a.File, wire.MaxString)
		if a.Intake != nil {
			a.Intake.InvalidReason = wire.Cut(a.Intake.InvalidReason, wire.MaxText)
			a.Intake.ReceivedBytes = max(a.Intake.ReceivedBytes, 0)
		}
	}
	return nil
}

// openRegular opens a file of a recording for reading: a regular file of
// at most max bytes. Anything else (a FIFO, a device, a directory, a
// socket) is refused without blocking on it.
func openRegular(name string, max int64) (*boundedFile, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", name, fileKind(st.Mode()))
	}
	f, err := openNonBlocking(name)
	if err != nil {
		return nil, err
	}
	// What was opened is what was checked: not swapped for a FIFO or a
	// device in between.
	fst, err := f.Stat()
	if err != nil || !fst.Mode().IsRegular() || !os.SameFile(st, fst) {
		f.Close()
		return nil, fmt.Errorf("%s changed while it was opened", name)
	}
	if fst.Size() > max {
		f.Close()
		return nil, fmt.Errorf("%s has %s: a recording's file holds at most %s", name, trace.FormatBytes(fst.Size()), trace.FormatBytes(max))
	}
	return &boundedFile{File: f, name: name, max: max, left: max + 1}, nil
}

// boundedFile reads a recording's file within the size checked when it was
// opened: a file that grows while it is read fails the read at max bytes.
type boundedFile struct {
	*os.File
	name      string
	max, left int64 // left: bytes still read, one past max to notice growth
}

func (b *boundedFile) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s grew beyond %s while it was read: a recording's file holds at most that", b.name, trace.FormatBytes(b.max))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.File.Read(p)
	b.left -= int64(n)
	return n, err
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, s)
}
