package tensor

import (
	"math"
	"time"
)

type bandwidthTask struct {
	buf  []float32
	unit int
	sink [64]float32 // per worker; keeps the sums observable
}

func (t *bandwidthTask) Run(worker, lo, hi int) {
	lo, hi = lo*t.unit, min(hi*t.unit, len(t.buf))
	t.sink[worker%len(t.sink)] += kern.sum(t.buf[lo:hi])
}

// MeasureBandwidth estimates sustained memory read bandwidth in GB/s (1e9
// bytes per second): the best of passes timed sums of a bytes-sized buffer
// on all pool threads with the fastest vector kernel. It is the roofline
// for memory-bound decode; use a buffer well beyond the last-level cache.
func MeasureBandwidth(p *Pool, bytes int, passes int) float64 {
	n := max(bytes/4, 1024)
	passes = max(passes, 1)
	t := &p.bw
	t.buf = make([]float32, n)
	for i := range t.buf {
		t.buf[i] = 1
	}
	// 16 KiB units: large enough that claiming one costs nothing, small
	// enough to balance threads.
	t.unit = 4096
	units := (n + t.unit - 1) / t.unit
	p.Parallel(units, 1, t) // fault the pages in before timing
	best := math.Inf(1)
	for range passes {
		start := time.Now()
		p.Parallel(units, 1, t)
		best = min(best, time.Since(start).Seconds())
	}
	t.buf = nil
	return float64(n*4) / best / 1e9
}
