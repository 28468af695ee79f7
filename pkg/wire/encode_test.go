package wire

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/podtrace/kubectl-podtrace/internal/nettest"
)

var testStrings = []string{"", "eth0", "10.244.0.2", "fd00::2", "0a:58:0a:f4:00:02", "SYN,ACK",
	"ICMP echo request 10.244.0.2 → 10.244.0.3 id 4711 seq 1", `quote " backslash \ slash /`,
	"<script>&amp;</script>", "ctl \x00\x01\x08\x0c\n\r\t\x1f\x7f", "bad utf8 \xff\xfe\xc3", "sep \u2028 \u2029 end",
	"emoji 😀 and é", strings.Repeat("long ", 40)}

var testZones = []*time.Location{time.UTC, time.Local, time.FixedZone("a", 0), time.FixedZone("b", 5*3600+30*60),
	time.FixedZone("c", -8*3600), time.FixedZone("d", 23*3600+59*60+59), time.FixedZone("e", 3601)}

// fill sets every field of v (a struct, through pointers) to a random
// value; it fails the test on a field type it does not know, so that a
// field added to Packet is noticed here.
func fill(t *testing.T, r *rand.Rand, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			ts := time.Unix(r.Int63n(1<<34)-1<<32, r.Int63n(2e9)).In(testZones[r.Intn(len(testZones))])
			if r.Intn(4) == 0 {
				ts = ts.Round(time.Second) // no fraction: RFC3339Nano drops it
			}
			v.Set(reflect.ValueOf(ts))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fill(t, r, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Pointer:
		if r.Intn(3) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, r, v.Elem(), path)
	case reflect.String:
		v.SetString(testStrings[r.Intn(len(testStrings))])
	case reflect.Int, reflect.Int64:
		v.SetInt([]int64{0, 0, 1, -1, 4789, 1 << 31, -(1 << 40), r.Int63()}[r.Intn(8)])
	case reflect.Uint32, reflect.Uint64:
		u := []uint64{0, 0, 1, 77, 1<<32 - 1, r.Uint64()}[r.Intn(6)]
		if v.Kind() == reflect.Uint32 {
			u &= 1<<32 - 1
		}
		v.SetUint(u)
	case reflect.Bool:
		v.SetBool(r.Intn(2) == 0)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			t.Fatalf("%s: %s not handled", path, v.Type())
		}
		switch r.Intn(4) {
		case 0:
			v.SetZero()
		case 1:
			v.SetBytes([]byte{})
		default:
			b := make([]byte, r.Intn(200))
			r.Read(b)
			v.SetBytes(b)
		}
	default:
		t.Fatalf("%s: %s not handled", path, v.Type())
	}
}

// TestPacketLineMatchesJSON compares the packet appender with
// encoding/json's Encoder on random packets that set every field.
func TestPacketLineMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	for i := 0; i < 20000; i++ {
		var p Packet
		fill(t, r, reflect.ValueOf(&p).Elem(), "Packet")
		e := Envelope{V: Version, Seq: r.Uint64(), Agent: testStrings[r.Intn(len(testStrings))], Kind: KindPacket, Packet: &p}
		fill(t, r, reflect.ValueOf(&e.TS).Elem(), "TS")
		got, ok := appendPacketLine(nil, &e)
		if !ok {
			t.Fatalf("packet %d not encoded: %+v", i, e)
		}
		want.Reset()
		if err := enc.Encode(&e); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("packet %d:\n got  %s\n want %s", i, got, want.Bytes())
		}
		var back Envelope
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("packet %d does not decode: %v\n%s", i, err, got)
		}
	}
}

// TestPacketLineOutOfRange: timestamps RFC 3339 cannot hold are left to
// encoding/json, which refuses them as before (a gap in the sequence).
func TestPacketLineOutOfRange(t *testing.T) {
	for _, ts := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 24*3600))} {
		e := Envelope{V: Version, Kind: KindPacket, Packet: &Packet{TS: ts}}
		if _, ok := appendPacketLine(nil, &e); ok {
			t.Errorf("%v encoded", ts)
		}
		if _, err := json.Marshal(&e); err == nil {
			t.Errorf("encoding/json accepts %v", ts)
		}
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, "a")
	if err := w.Emit(&Packet{TS: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("Emit accepted a packet of year 10000")
	}
	if err := w.Emit(&Packet{Summary: "x"}); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if !strings.Contains(buf.String(), `"seq":2,`) {
		t.Errorf("want the refused line's seq skipped: %s", buf.String())
	}
}

// TestWriterPacketLines: packet lines through the Writer, held and not,
// are what encoding/json writes for the same envelope.
func TestWriterPacketLines(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, hold := range []bool{false, true} {
		var buf, want bytes.Buffer
		w := NewWriter(&buf, "pod-a")
		w.now = func() time.Time { return now }
		if hold {
			w.Hold(1 << 20)
		}
		enc := json.NewEncoder(&want)
		for i := 1; i <= 200; i++ {
			var p Packet
			fill(t, r, reflect.ValueOf(&p).Elem(), "Packet")
			if err := w.Emit(&p); err != nil {
				t.Fatal(err)
			}
			_ = enc.Encode(&Envelope{V: Version, Seq: uint64(i), Agent: "pod-a", Kind: KindPacket, TS: now, Packet: &p})
		}
		if hold {
			if err := w.Release(); err != nil {
				t.Fatal(err)
			}
		}
		_ = w.Flush()
		if !bytes.Equal(buf.Bytes(), want.Bytes()) {
			t.Fatalf("hold %v: writer output differs from encoding/json", hold)
		}
	}
}

func benchPacket() *Packet {
	frame := make([]byte, 106)
	return &Packet{TS: time.Now(), Index: 2, Iface: "eth0", Dir: "in", PktType: "otherhost", Len: 106, CapLen: 106, Frame: frame,
		Eth: &Eth{Src: "0a:58:0a:f4:00:02", Dst: "02:00:00:00:00:99", Type: "ipv4"},
		IP:  &IP{Version: 4, Src: "10.203.0.1", Dst: "10.203.0.2", ID: 4711, TTL: 64, Proto: "udp", Len: 92},
		L4:  &L4{Proto: "udp", SrcPort: 40000, DstPort: 9000, Payload: 64}, Summary: "UDP 10.203.0.1:40000 → 10.203.0.2:9000 len 64", FP: "0123456789abcdef"}
}

func BenchmarkEmitPacket(b *testing.B) {
	w := NewWriter(discard{}, "bench")
	p := benchPacket()
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; i < b.N; i++ {
		_ = w.Emit(p)
	}
}

func BenchmarkEmitPacketJSON(b *testing.B) {
	enc := json.NewEncoder(discard{})
	p := benchPacket()
	b.ReportAllocs()
	defer nettest.CPUPerOp(b)()
	for i := 0; i < b.N; i++ {
		_ = enc.Encode(&Envelope{V: Version, Seq: uint64(i), Agent: "bench", Kind: KindPacket, TS: time.Now(), Packet: p})
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
