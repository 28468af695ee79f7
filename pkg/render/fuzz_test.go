package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/termtest"
	"github.com/podtrace/kubectl-podtrace/pkg/session"
	"github.com/podtrace/kubectl-podtrace/pkg/trace"
	"github.com/podtrace/kubectl-podtrace/pkg/trace/merge"
	"github.com/podtrace/kubectl-podtrace/pkg/wire"
)

// fuzzRecordings are the golden recordings, loaded once: the fuzz
// targets put mutated bytes in the place of one of their streams.
type fuzzRecording struct {
	s       trace.Session
	streams []trace.Stream
	raw     [][]byte // each stream's file, as recorded
	header  []byte   // session.json
	files   []string
}

func loadFuzzRecordings(f *testing.F) []fuzzRecording {
	dirs, err := filepath.Glob("testdata/recordings/*")
	if err != nil || len(dirs) == 0 {
		f.Fatalf("no recordings: %v", err)
	}
	var out []fuzzRecording
	for _, dir := range dirs {
		s, streams, _, _, err := session.Load(dir)
		if err != nil {
			f.Fatal(err)
		}
		r := fuzzRecording{s: s, streams: streams}
		if r.header, err = os.ReadFile(filepath.Join(dir, "session.json")); err != nil {
			f.Fatal(err)
		}
		var h struct{ Agents []struct{ File string } }
		if err := json.Unmarshal(r.header, &h); err != nil {
			f.Fatal(err)
		}
		for _, a := range h.Agents {
			b, err := os.ReadFile(filepath.Join(dir, a.File))
			if err != nil {
				f.Fatal(err)
			}
			r.raw = append(r.raw, b)
			r.files = append(r.files, a.File)
		}
		out = append(out, r)
	}
	return out
}

// checkRendered renders a trace as text (plain and colored) and JSON:
// no panic, and nothing in the output that acts on a terminal.
func checkRendered(t *testing.T, tr *trace.Trace, h Header) {
	t.Helper()
	var plain, colored, js bytes.Buffer
	if err := Text(&plain, tr, h, false); err != nil {
		t.Fatal(err)
	}
	if err := Text(&colored, tr, h, true); err != nil {
		t.Fatal(err)
	}
	if err := JSON(&js, tr, h); err != nil {
		t.Fatal(err)
	}
	if r := termtest.RawUnsafe(plain.String()); r != "" {
		t.Fatalf("%q raw in the plain trace:\n%s", r, plain.String())
	}
	if r := termtest.RawUnsafe(string(stripANSI(colored.Bytes()))); r != "" {
		t.Fatalf("%q raw in the colored trace", r)
	}
	if !bytes.Equal(stripANSI(colored.Bytes()), plain.Bytes()) {
		t.Fatalf("without its colors, the colored trace differs from the plain one")
	}
	if r := termtest.RawUnsafe(js.String()); r != "" {
		t.Fatalf("%q raw in the JSON trace", r)
	}
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("not a JSON line: %q", line)
		}
	}
}

// FuzzStreamTrace: go test -run '^$' -fuzz '^FuzzStreamTrace$' ./pkg/render/
// The live path of an agent's bytes: one stream of a recording replaced
// by the fuzzer's bytes, read by the bounded stream reader, merged with
// the others and printed. Seeded with every stream of every recording.
func FuzzStreamTrace(f *testing.F) {
	recs := loadFuzzRecordings(f)
	nft, err := json.Marshal(&wire.Envelope{V: wire.Version, Seq: 1 << 20, Kind: wire.KindNFTrace, NFTrace: hostileRule})
	if err != nil {
		f.Fatal(err)
	}
	for i, r := range recs {
		for j, b := range r.raw {
			f.Add(uint8(i), uint8(j), b)
			// The same stream with a netfilter verdict on the probe.
			f.Add(uint8(i), uint8(j), append(append(bytes.Clone(b), nft...), '\n'))
		}
	}
	f.Fuzz(func(t *testing.T, rec, agent uint8, stream []byte) {
		r := recs[int(rec)%len(recs)]
		streams := append([]trace.Stream(nil), r.streams...)
		k := int(agent) % len(streams)
		st := trace.Stream{Agent: streams[k].Agent, Display: streams[k].Display}
		rd := wire.NewReader(bytes.NewReader(stream))
		for {
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the reader ended the stream: %v", err)
			}
			st.Lines = append(st.Lines, e)
		}
		st.Intake = trace.Intake{ReceivedBytes: rd.Bytes, Invalid: rd.Skipped, InvalidReason: rd.Reason, Clamped: rd.Clamped}
		streams[k] = st
		checkRendered(t, merge.Merge(r.s, streams), Header{})
	})
}

// FuzzReplay: go test -run '^$' -fuzz '^FuzzReplay$' ./pkg/render/
// The replay loader on a recording whose session.json and one stream
// are the fuzzer's: it loads or says why not, and what it loads merges
// and prints. Seeded with every recording.
func FuzzReplay(f *testing.F) {
	recs := loadFuzzRecordings(f)
	for i, r := range recs {
		f.Add(uint8(i), r.header, r.raw[0])
	}
	f.Fuzz(func(t *testing.T, rec uint8, header, stream []byte) {
		r := recs[int(rec)%len(recs)]
		dir := t.TempDir()
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write("session.json", header)
		for i, name := range r.files {
			b := r.raw[i]
			if i == 0 {
				b = stream
			}
			write(filepath.Base(name), b)
		}
		s, streams, armed, notes, err := session.Load(dir)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") {
				t.Fatalf("a load error of more than one line: %q", msg)
			}
			return
		}
		checkRendered(t, merge.Merge(s, streams), Header{Armed: armed, Notes: notes})
	})
}

// A time span saturated by a hostile timestamp (year 1 against 2026)
// prints as the longest span; the shortest used to recurse forever,
// -math.MinInt64 being math.MinInt64 (found by FuzzStreamTrace).
func TestDurOfTheExtremes(t *testing.T) {
	for d, want := range map[time.Duration]string{
		math.MaxInt64: "9223372036.855 s",
		math.MinInt64: "-9223372036.855 s",
		-time.Second:  "-1.000 s",
	} {
		if got := Dur(d); got != want {
			t.Errorf("Dur(%d) = %q; want %q", int64(d), got, want)
		}
	}
}
