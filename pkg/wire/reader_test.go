package wire

import (
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func readKinds(t *testing.T, in string) (*Reader, []*Envelope) {
	t.Helper()
	r := NewReader(strings.NewReader(in))
	var out []*Envelope
	for {
		e, err := r.Next()
		if err == io.EOF {
			return r, out
		}
		if err != nil {
			t.Fatalf("a hostile line must be skipped, not end the stream: %v", err)
		}
		out = append(out, e)
	}
}

func TestReaderSkipsAndCountsLinesOverMaxLine(t *testing.T) {
	long := `{"v":1,"seq":2,"agent":"a","kind":"error","error":{"msg":"` + strings.Repeat("x", MaxLine) + `"}}`
	in := `{"v":1,"seq":1,"agent":"a","kind":"hello","hello":{"role":"pod"}}` + "\n" + long + "\n" +
		`{"v":1,"seq":3,"agent":"a","kind":"bye","bye":{"reason":"stopped"}}` + "\n"
	r, got := readKinds(t, in)
	if len(got) != 2 || got[0].Kind != KindHello || got[1].Kind != KindBye {
		t.Fatalf("got %d lines; want hello and bye around the skipped one", len(got))
	}
	if r.Skipped != 1 || !strings.Contains(r.Reason, "longer than 4 MiB") {
		t.Errorf("skipped %d (%q); want 1, too long", r.Skipped, r.Reason)
	}
	if r.Bytes != int64(len(in)) {
		t.Errorf("counted %d bytes; the stream has %d", r.Bytes, len(in))
	}
	if r.Gaps != 1 {
		t.Errorf("gaps %d: the skipped line's number is missing from what was accepted", r.Gaps)
	}
}

func TestReaderRejectsKindsWithoutTheirPayload(t *testing.T) {
	var in strings.Builder
	kinds := []string{KindHello, KindTopology, KindPacket, KindChange, KindProbe, KindStats, KindError, KindBye, KindSummary}
	for i, k := range kinds {
		in.WriteString(`{"v":1,"seq":` + string(rune('1'+i)) + `,"agent":"a","kind":"` + k + `"}` + "\n")
	}
	// The payload of another kind is no substitute, nor welcome beside
	// the right one, nor on a line of a kind this build does not know.
	in.WriteString(`{"v":1,"seq":9,"agent":"a","kind":"probe","hello":{"role":"pod"}}` + "\n")
	in.WriteString(`{"v":1,"seq":10,"agent":"a","kind":"bye","bye":{"reason":"stopped"},"error":{"msg":"x"}}` + "\n")
	in.WriteString(`{"v":1,"seq":11,"agent":"a","kind":"future-kind","packet":{"iface":"eth0"}}` + "\n")
	r, got := readKinds(t, in.String())
	if len(got) != 0 || r.Skipped != uint64(len(kinds)+3) {
		t.Fatalf("accepted %d lines, skipped %d; want every payload-less line skipped", len(got), r.Skipped)
	}
	if !strings.Contains(r.Reason, `"hello" line without its "hello" payload`) {
		t.Errorf("reason %q", r.Reason)
	}
}

func TestReaderSkipsLinesThatAreNotJSON(t *testing.T) {
	in := "{not json\n" + `{"v":1,"seq":1,"kind":"packet","packet":{"iface":3}}` + "\n" + // wrong type
		`{"v":1,"seq":2,"agent":"a","kind":"bye","bye":{"reason":"stopped"}}` + "\n"
	r, got := readKinds(t, in)
	if len(got) != 1 || got[0].Kind != KindBye || r.Skipped != 2 || !strings.HasPrefix(r.Reason, "not JSON") {
		t.Fatalf("got %d lines, skipped %d (%q)", len(got), r.Skipped, r.Reason)
	}
}

func TestReaderCapsStringsAndLists(t *testing.T) {
	huge := strings.Repeat("é", 50000) // 100 KB, two bytes a rune
	routes := strings.TrimSuffix(strings.Repeat(`{"dst":"10.0.0.0/8"},`, MaxList+100), ",")
	in := `{"v":1,"seq":1,"agent":"` + huge + `","kind":"packet","packet":{"iface":"` + huge + `","summary":"` + huge + `"}}` + "\n" +
		`{"v":1,"seq":2,"agent":"a","kind":"topology","topology":{"when":"before","routes":[` + routes + `]}}` + "\n" +
		`{"v":1,"seq":3,"agent":"a","kind":"error","error":{"msg":"` + huge + `"}}` + "\n" +
		`{"v":1,"seq":4,"agent":"a","kind":"future-kind","future":{"x":1}}` + "\n"
	r, got := readKinds(t, in)
	if len(got) != 4 || r.Clamped != 3 {
		t.Fatalf("got %d lines, %d clamped; want 4 and 3", len(got), r.Clamped)
	}
	p := got[0].Packet
	for _, s := range []string{got[0].Agent, p.Iface, p.Summary} {
		if len(s) > MaxString || !utf8.ValidString(s) || !strings.HasSuffix(s, "…") {
			t.Errorf("a string of %d bytes (valid UTF-8 %v) passed; want at most %d, cut at a rune, marked", len(s), utf8.ValidString(s), MaxString)
		}
	}
	if n := len(got[1].Topology.Routes); n != MaxList {
		t.Errorf("%d routes kept; want %d", n, MaxList)
	}
	if n := len(got[2].Error.Msg); n > MaxText {
		t.Errorf("error message of %d bytes", n)
	}
	if got[3].Kind != "future-kind" {
		t.Errorf("a kind this build does not know: %+v", got[3])
	}
}

// A drop line carries its drop and nothing else, and its strings (the
// kernel's reason and function names, the device) are held to their cap;
// a hello's reason for not following kernel drops too.
func TestReaderBoundsDropLines(t *testing.T) {
	huge := strings.Repeat("\u202e", 20000) // 60 KB of bidi overrides
	in := `{"v":1,"seq":1,"agent":"n","kind":"drop"}` + "\n" +
		`{"v":1,"seq":2,"agent":"n","kind":"drop","drop":{"reason":"X"},"packet":{"iface":"eth0"}}` + "\n" +
		`{"v":1,"seq":3,"agent":"n","kind":"packet","drop":{"reason":"X"}}` + "\n" +
		`{"v":1,"seq":4,"agent":"n","kind":"drop","drop":{"reason":"` + huge + `","location":"` + huge + `","iface":"` + huge + `","probe":"udp/1","src":"10.0.0.1","dst":"10.0.0.2","proto":"udp"}}` + "\n" +
		`{"v":1,"seq":5,"agent":"n","kind":"hello","hello":{"role":"node","kernelDrops":{"armed":false,"why":"` + strings.Repeat(huge, 2) + `"}}}` + "\n"
	r, got := readKinds(t, in)
	if len(got) != 2 || r.Skipped != 3 || r.Clamped != 2 {
		t.Fatalf("got %d lines, skipped %d, clamped %d; want 2, 3 (no drop, a packet beside it, a drop on a packet line), 2", len(got), r.Skipped, r.Clamped)
	}
	d := got[0].Drop
	for _, s := range []string{d.Reason, d.Location, d.Iface} {
		if len(s) > MaxString || !utf8.ValidString(s) {
			t.Errorf("a drop string of %d bytes passed; want at most %d", len(s), MaxString)
		}
	}
	if d.Probe != "udp/1" || d.Src != "10.0.0.1" {
		t.Errorf("drop %+v: the short fields must pass as they are", d)
	}
	if n := len(got[1].Hello.KernelDrops.Why); n > MaxText {
		t.Errorf("hello kernelDrops.why of %d bytes; want at most %d", n, MaxText)
	}
}
