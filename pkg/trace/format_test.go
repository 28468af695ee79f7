package trace

import (
	"testing"
	"time"
)

// Byte counts in IEC units (1 KiB = 1024 B), one decimal below 100.
func TestFormatBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {10035, "9.8 KiB"},
		{128 << 10, "128 KiB"}, {1 << 20, "1 MiB"}, {3565158, "3.4 MiB"}, {5 << 30, "5 GiB"},
	} {
		if got := FormatBytes(c.n); got != c.want {
			t.Errorf("FormatBytes(%d) = %q; want %q", c.n, got, c.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0 µs"}, {999 * time.Microsecond, "999 µs"}, {1500 * time.Microsecond, "1.50 ms"},
		{2500 * time.Millisecond, "2.500 s"}, {-42 * time.Microsecond, "-42 µs"},
	} {
		if got := FormatDuration(c.d); got != c.want {
			t.Errorf("FormatDuration(%v) = %q; want %q", c.d, got, c.want)
		}
	}
}
