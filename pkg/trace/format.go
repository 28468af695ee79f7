package trace

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// FormatDuration prints a duration at a scale a human reads at a glance:
// µs below a millisecond, ms with two decimals below a second, else s.
func FormatDuration(d time.Duration) string {
	switch {
	case d == math.MinInt64: // has no positive counterpart: a time span saturated by a hostile timestamp
		return "-" + FormatDuration(math.MaxInt64)
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

// FormatBytes prints a byte count for humans: "812 B", "9.8 KiB", "3.4 MiB".
func FormatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return trim1(float64(n)/(1<<10)) + " KiB"
	case n < 1<<30:
		return trim1(float64(n)/(1<<20)) + " MiB"
	}
	return trim1(float64(n)/(1<<30)) + " GiB"
}

// trim1 prints one decimal below 100 and none above: "9.8", "128".
func trim1(f float64) string {
	if f >= 100 {
		return fmt.Sprintf("%.0f", f)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0")
}
