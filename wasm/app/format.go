package app

import (
	"fmt"
	"math"
)

// Bytes formats a byte count with binary units.
func Bytes(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := ""
	switch {
	case n < 1<<10:
		s = fmt.Sprintf("%d B", n)
	case n < 1<<20:
		s = fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		s = fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		s = fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	if neg {
		return "-" + s
	}
	return s
}

// Pct formats a ratio as a percentage; NaN shows as a dash.
func Pct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*r)
}

// Num formats a float with the given decimals; NaN shows as a dash.
func Num(f float64, decimals int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	return fmt.Sprintf("%.*f", decimals, f)
}
