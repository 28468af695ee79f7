package wire

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestStreamRoundTripAndGaps(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "pod-a")
	if err := w.Emit(&Hello{Role: RolePod, Name: "default/pod-a"}); err != nil {
		t.Fatal(err)
	}
	_ = w.Emit(&Packet{Iface: "eth0", Summary: "x"})
	_ = w.Emit(&Packet{Iface: "eth0", Summary: "y"})
	_ = w.Emit(&Bye{Reason: "done"})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d:\n%s", len(lines), buf.String())
	}
	// Drop line 2 and add a runtime message: the reader reports one gap and keeps the noise aside.
	in := lines[0] + "\nunable to upgrade connection\n" + lines[2] + "\n" + lines[3] + "\n"
	r := NewReader(strings.NewReader(in))
	var kinds []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, ",") != "hello,packet,bye" || r.Gaps != 1 || len(r.Noise) != 1 {
		t.Fatalf("kinds %v gaps %d noise %q", kinds, r.Gaps, r.Noise)
	}
}

func TestReaderSkipsLinesOfVersionsItDoesNotRead(t *testing.T) {
	in := `{"v":99,"seq":1,"kind":"hello","hello":{"role":"pod"}}` + "\n" + `{"seq":2,"kind":"bye","bye":{"reason":"x"}}` + "\n" +
		`{"v":1,"seq":3,"agent":"a","kind":"bye","bye":{"reason":"stopped"}}` + "\n"
	r := NewReader(strings.NewReader(in))
	e, err := r.Next()
	if err != nil || e.Seq != 3 {
		t.Fatalf("got %+v, %v; want the version 1 line after two skipped ones", e, err)
	}
	if r.Skipped != 2 || !strings.Contains(r.Reason, "version 99 is not supported") {
		t.Fatalf("skipped %d (%q); want 2, the first for version 99", r.Skipped, r.Reason)
	}
}

func TestHoldKeepsLinesUntilReleaseAndDropsBeyondItsBound(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "a")
	w.Hold(1000)
	_ = w.Emit(&Hello{Role: RolePod})
	for i := 0; i < 20; i++ {
		_ = w.Emit(&Packet{Iface: "eth0"})
	}
	if buf.Len() != 0 {
		t.Fatalf("held lines were written: %q", buf.String())
	}
	if err := w.Release(); err != nil {
		t.Fatal(err)
	}
	_ = w.Emit(&Bye{Reason: "done"})
	r := NewReader(&buf)
	var n int
	var last *Envelope
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		last = e
	}
	if n < 3 || n > 10 || last.Kind != KindBye || r.Gaps == 0 {
		t.Fatalf("read %d lines, last %v, gaps %d: want the first lines, a gap, then bye", n, last.Kind, r.Gaps)
	}
}
