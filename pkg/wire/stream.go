package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Writer writes one agent's stream. It numbers lines, buffers them and
// flushes on Flush, on the kinds that others wait for (hello, probe, error,
// bye) and whenever the buffer fills. With a budget (SetBudget) it writes
// packet and change lines only while the budget lasts and counts the rest;
// every other kind is written whatever the budget. Safe for concurrent use.
type Writer struct {
	mu    sync.Mutex
	agent string
	run   string
	seq   uint64
	bw    *bufio.Writer
	enc   *json.Encoder
	now   func() time.Time
	bud   budget

	// While held, encoded lines wait in memory (at most holdMax bytes;
	// lines beyond are dropped and show as a sequence gap).
	held    bool
	holdBuf bytes.Buffer
	holdMax int
	line    bytes.Buffer
	lineEnc *json.Encoder

	pkt []byte // a packet line being written
}

// Hold keeps every line in memory, up to max bytes, until Release: an
// agent whose reader attaches after it started (a container's stdout
// through the API server) loses nothing before that.
func (w *Writer) Hold(max int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held, w.holdMax = true, max
}

// Release writes the held lines out and stops holding.
func (w *Writer) Release() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.held {
		return nil
	}
	w.held = false
	if _, err := w.bw.Write(w.holdBuf.Bytes()); err != nil {
		return err
	}
	w.holdBuf = bytes.Buffer{}
	return w.bw.Flush()
}

// SetBudget limits the packet and change lines to bytesPerSec bytes a
// second (a bucket that holds one second's worth; 0: no limit). Lines over
// the budget are not written: Emit returns ErrOverBudget and Cut counts
// them. A quarter of the budget is kept for small flows, so that a probe's
// frames pass beside a flood that spent the rest. Hello, topology, probe, stats, error and bye lines are never cut
// and do not spend the budget: an agent writes a handful of them.
func (w *Writer) SetBudget(bytesPerSec int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bud.set(bytesPerSec, w.now())
}

// Budget is the budget in bytes per second (0: none).
func (w *Writer) Budget() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bud.rate
}

// Cut reports the lines the budget cut so far and their encoded size.
func (w *Writer) Cut() (lines, bytes uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bud.lines, w.bud.bytes
}

// NewWriter returns a Writer for the agent with the given id.
func NewWriter(w io.Writer, agent string) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Writer{agent: agent, bw: bw, enc: json.NewEncoder(bw), now: time.Now}
}

// SetRun sets the run token of the lines written from now on (Envelope.Run).
func (w *Writer) SetRun(run string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.run = run
}

// Emit writes one observation. The payload type selects the kind. A packet
// or change line over the budget is not written: ErrOverBudget.
func (w *Writer) Emit(payload any) error {
	return w.emit(payload, nil)
}

// EmitFor writes one observation under another run's token, outside this
// writer's sequence (seq 0): an agent's answer to a start line it refuses
// (wire.Busy) reaches the reader of that other run and no one else.
func (w *Writer) EmitFor(run string, payload any) error {
	return w.emit(payload, &run)
}

func (w *Writer) emit(payload any, other *string) error {
	e := Envelope{V: Version, Agent: w.agent}
	switch p := payload.(type) {
	case *Hello:
		e.Kind, e.Hello = KindHello, p
	case *Topology:
		e.Kind, e.Topology = KindTopology, p
	case *Packet:
		e.Kind, e.Packet = KindPacket, p
	case *Change:
		e.Kind, e.Change = KindChange, p
	case *Probe:
		e.Kind, e.Probe = KindProbe, p
	case *Stats:
		e.Kind, e.Stats = KindStats, p
	case *Summary:
		e.Kind, e.Summary = KindSummary, p
	case *NAT:
		e.Kind, e.NAT = KindNAT, p
	case *NFTrace:
		e.Kind, e.NFTrace = KindNFTrace, p
	case *Drop:
		e.Kind, e.Drop = KindDrop, p
	case *Error:
		e.Kind, e.Error = KindError, p
	case *Bye:
		e.Kind, e.Bye = KindBye, p
	default:
		return fmt.Errorf("wire: cannot emit %T", payload)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if other != nil {
		e.Run, e.TS = *other, w.now()
		return w.encodeLocked(e)
	}
	e.Run = w.run
	w.seq++
	e.Seq = w.seq
	e.TS = w.now()
	if e.Kind == KindPacket {
		// Packet lines are most of a busy stream: encoded without
		// reflection, to the same bytes.
		var ok bool
		if w.pkt, ok = appendPacketLine(w.pkt[:0], &e); ok {
			if w.bud.rate > 0 && !w.bud.spend(len(w.pkt), e.TS, packetFlow(e.Packet)) {
				w.seq-- // a cut line is not a gap in transit: the stats count it
				return ErrOverBudget
			}
			if w.held {
				w.holdLocked(w.pkt)
				return nil
			}
			_, err := w.bw.Write(w.pkt)
			return err
		}
	}
	return w.encodeLocked(e)
}

// encodeLocked writes e through encoding/json (e is a copy: only this
// path moves it to the heap).
func (w *Writer) encodeLocked(e Envelope) error {
	budgeted := (e.Kind == KindPacket || e.Kind == KindChange) && w.bud.rate > 0
	if w.held || budgeted {
		if w.lineEnc == nil {
			w.lineEnc = json.NewEncoder(&w.line)
		}
		w.line.Reset()
		if err := w.lineEnc.Encode(&e); err != nil {
			return err
		}
		if budgeted && !w.bud.spend(w.line.Len(), e.TS, flowOf(&e)) {
			w.seq--
			return ErrOverBudget
		}
		if w.held {
			w.holdLocked(w.line.Bytes())
			return nil
		}
		if _, err := w.bw.Write(w.line.Bytes()); err != nil {
			return err
		}
	} else if err := w.enc.Encode(&e); err != nil {
		return err
	}
	if e.Kind != KindPacket && e.Kind != KindChange {
		return w.bw.Flush()
	}
	return nil
}

func flowOf(e *Envelope) uint64 {
	if e.Packet != nil {
		return packetFlow(e.Packet)
	}
	return changeFlow(e.Change)
}

// holdLocked keeps a line until Release, within the hold bound.
func (w *Writer) holdLocked(line []byte) {
	if w.holdBuf.Len()+len(line) <= w.holdMax {
		w.holdBuf.Write(line)
	}
}

// Flush writes buffered lines out.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bw.Flush()
}

// MaxLine is the longest line a Reader accepts, newline excluded. The
// longest lines are topology snapshots: a node with 500 pods (1,000 links,
// their routes, neighbour and FDB entries) writes about 1 MB; 4 MiB leaves
// room for four times that. A longer line is skipped and counted.
const MaxLine = 4 << 20

// Reader reads a stream line by line, checks the version, reports gaps in
// the sequence numbers, and bounds what it hands on: lines longer than
// MaxLine, lines that are not JSON, lines of a version it does not read
// and lines whose payloads do not match their kind are skipped and
// counted (Skipped, Reason); strings and lists of an accepted line are cut
// to the limits of Sanitize (Clamped). A bad line never ends the stream.
type Reader struct {
	br   *bufio.Reader
	buf  []byte
	last uint64
	// Gaps counts lines missing from the sequence so far.
	Gaps uint64
	// Noise collects lines that are not observations (e.g. a runtime's own
	// messages interleaved with the agent's output); at most 20 are kept.
	Noise []string
	// Bytes counts every byte read, newlines and noise included.
	Bytes int64
	// LineBytes is the length of the line Next returned last, newline
	// included.
	LineBytes int
	// Skipped counts observation lines set aside as invalid; Reason says
	// why the first one was.
	Skipped uint64
	Reason  string
	// Clamped counts the lines whose strings or lists were shortened.
	Clamped uint64
	// Run, when set, is the run this reader reads: lines of other runs
	// (another plugin attached to the same agent) are passed over without
	// a trace; lines without a run token (written before any start line
	// was read, or by an agent that serves one run) are read.
	Run string
	// OnSkip, if set, is called from Next after each line it skipped
	// (Skipped and Reason are then up to date): a reader still waiting
	// for its first good line can say why none came.
	OnSkip func()
}

// NewReader returns a Reader.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// readLine returns the next line without its newline; a line longer than
// MaxLine is read to its end, counted as skipped and reported as too long.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	n := 0
	for {
		chunk, err := r.br.ReadSlice('\n')
		n += len(chunk)
		if !tooLong {
			if len(r.buf)+len(chunk) > MaxLine+1 {
				tooLong, r.buf = true, r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && n > 0:
			err = nil
		}
		r.Bytes += int64(n)
		r.LineBytes = n
		return r.buf, tooLong, err
	}
}

func (r *Reader) skip(why string) {
	r.Skipped++
	if r.Reason == "" {
		r.Reason = why
	}
	if r.OnSkip != nil {
		r.OnSkip()
	}
}

// Next returns the next observation, or io.EOF at the end of the stream.
func (r *Reader) Next() (*Envelope, error) {
	for {
		raw, tooLong, err := r.readLine()
		if err != nil {
			return nil, err
		}
		if tooLong {
			r.skip(fmt.Sprintf("a line longer than %d MiB", MaxLine>>20))
			continue
		}
		line := bytes.TrimSpace(raw)
		if len(line) == 0 {
			continue
		}
		if line[0] != '{' {
			if len(r.Noise) < 20 {
				r.Noise = append(r.Noise, truncate(line, 512))
			}
			continue
		}
		var e Envelope
		if err := json.Unmarshal(line, &e); err != nil {
			r.skip(fmt.Sprintf("not JSON: %q: %v", truncate(line, 80), err))
			continue
		}
		if r.Run != "" && e.Run != "" && e.Run != r.Run {
			continue
		}
		if e.V < 1 || e.V > Version {
			r.skip(fmt.Sprintf("stream version %d is not supported (this plugin reads 1..%d): use a plugin and agent of the same release", e.V, Version))
			continue
		}
		clamped, err := Sanitize(&e)
		if err != nil {
			r.skip(err.Error())
			continue
		}
		if clamped {
			r.Clamped++
		}
		if r.last != 0 && e.Seq > r.last+1 {
			r.Gaps += e.Seq - r.last - 1
		}
		if e.Seq > r.last {
			r.last = e.Seq
		}
		return &e, nil
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
