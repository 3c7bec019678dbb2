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

type flopsTask struct {
	reps  int
	flops [64]float64 // per worker
}

func (t *flopsTask) Run(worker, lo, hi int) {
	k := kern
	for i := lo; i < hi; i++ {
		t.flops[worker%len(t.flops)] += k.fmaPeak(t.reps)
	}
}

// MeasureFLOPS estimates the float32 multiply-add peak in GFLOP/s (2 flops
// per FMA lane): the best of passes timed runs of independent FMAs on
// registers on all pool threads, which no kernel that loads its operands
// can beat. Prefill is compute-bound, so this is its roofline. (Until
// 2026-11-26 this timed MatMul's own 4×3 micro-kernel on L1-resident
// operands, which reaches ~75% of this peak, and so overstated prefill's
// share of the machine.)
func MeasureFLOPS(p *Pool, passes int) float64 {
	passes = max(passes, 1)
	t := &p.fl
	t.reps = 1 << 16
	units := 4 * p.Threads()
	p.Parallel(units, 1, t) // warm up (clock)
	best, flops := math.Inf(1), 0.0
	for range passes {
		t.flops = [64]float64{}
		start := time.Now()
		p.Parallel(units, 1, t)
		if d := time.Since(start).Seconds(); d < best {
			best, flops = d, 0
			for _, f := range t.flops {
				flops += f
			}
		}
	}
	return flops / best / 1e9
}

// fmaPeakGo is the portable fmaPeak: eight independent multiply-add
// chains, compiled as separate multiplies and adds.
func fmaPeakGo(n int) float64 {
	a := [8]float32{}
	x, y := float32(0.999), float32(1e-3)
	for range n {
		for j := range a {
			a[j] = a[j]*x + y
		}
	}
	// a[0]·0 is not folded away (it is NaN for an infinite a[0]), so the
	// chains stay live.
	return float64(n)*8*2 + float64(a[0]*0)
}
