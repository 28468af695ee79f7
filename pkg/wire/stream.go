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
// bye) and whenever the buffer fills. Safe for concurrent use.
type Writer struct {
	mu    sync.Mutex
	agent string
	seq   uint64
	bw    *bufio.Writer
	enc   *json.Encoder
	now   func() time.Time

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
	w.lineEnc = json.NewEncoder(&w.line)
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

// NewWriter returns a Writer for the agent with the given id.
func NewWriter(w io.Writer, agent string) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Writer{agent: agent, bw: bw, enc: json.NewEncoder(bw), now: time.Now}
}

// Emit writes one observation. The payload type selects the kind.
func (w *Writer) Emit(payload any) error {
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
	case *Error:
		e.Kind, e.Error = KindError, p
	case *Bye:
		e.Kind, e.Bye = KindBye, p
	default:
		return fmt.Errorf("wire: cannot emit %T", payload)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	e.Seq = w.seq
	e.TS = w.now()
	if e.Kind == KindPacket {
		// Packet lines are most of a busy stream: encoded without
		// reflection, to the same bytes.
		var ok bool
		if w.pkt, ok = appendPacketLine(w.pkt[:0], &e); ok {
			if w.held {
				if w.holdBuf.Len()+len(w.pkt) <= w.holdMax {
					w.holdBuf.Write(w.pkt)
				}
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
	if w.held {
		w.line.Reset()
		if err := w.lineEnc.Encode(&e); err != nil {
			return err
		}
		if w.holdBuf.Len()+w.line.Len() <= w.holdMax {
			w.holdBuf.Write(w.line.Bytes())
		}
		return nil
	}
	if err := w.enc.Encode(&e); err != nil {
		return err
	}
	if e.Kind != KindPacket && e.Kind != KindChange {
		return w.bw.Flush()
	}
	return nil
}

// Flush writes buffered lines out.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bw.Flush()
}

// Reader reads a stream line by line, checks the version and reports gaps
// in the sequence numbers.
type Reader struct {
	sc   *bufio.Scanner
	last uint64
	// Gaps counts lines missing from the sequence so far.
	Gaps uint64
	// Noise collects lines that are not observations (e.g. a runtime's own
	// messages interleaved with the agent's output); at most 20 are kept.
	Noise []string
}

// NewReader returns a Reader.
func NewReader(r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	return &Reader{sc: sc}
}

// Next returns the next observation, or io.EOF at the end of the stream.
func (r *Reader) Next() (*Envelope, error) {
	for r.sc.Scan() {
		line := bytes.TrimSpace(r.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if line[0] != '{' {
			if len(r.Noise) < 20 {
				r.Noise = append(r.Noise, string(line))
			}
			continue
		}
		var e Envelope
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("observation stream: bad line %q: %w", truncate(line, 120), err)
		}
		if e.V < 1 || e.V > Version {
			return nil, fmt.Errorf("observation stream version %d is not supported (this plugin reads 1..%d): use a plugin and agent of the same release", e.V, Version)
		}
		if r.last != 0 && e.Seq > r.last+1 {
			r.Gaps += e.Seq - r.last - 1
		}
		if e.Seq > r.last {
			r.last = e.Seq
		}
		return &e, nil
	}
	if err := r.sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
