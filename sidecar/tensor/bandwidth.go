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
	reps      int
	w, x, out []float32 // per worker, L1-resident operands and 4×3 results
	sink      [64]float32
}

// flopsK is MatMul's k chunk, so the epilogue weighs as it does there.
const flopsK = mmTileK

func (t *flopsTask) Run(worker, lo, hi int) {
	k := kern
	w := t.w[worker*4*flopsK : (worker+1)*4*flopsK]
	x := t.x[worker*3*flopsK : (worker+1)*3*flopsK]
	out := t.out[worker*12 : (worker+1)*12]
	for i := lo; i < hi; i++ {
		for range t.reps {
			k.gemmAcc(w, flopsK, x, flopsK, flopsK, out, 4)
		}
		t.sink[worker%len(t.sink)] += out[0]
	}
}

// MeasureFLOPS estimates the float32 multiply-add peak in GFLOP/s (2 flops
// per FMA lane): the best of passes timed runs of MatMul's register-blocked
// micro-kernel on L1-resident operands on all pool threads. Prefill is
// compute-bound, so this is its roofline.
func MeasureFLOPS(p *Pool, passes int) float64 {
	passes = max(passes, 1)
	t := &p.fl
	th := p.Threads()
	t.w, t.x, t.out = make([]float32, th*4*flopsK), make([]float32, th*3*flopsK), make([]float32, th*12)
	for i := range t.w {
		t.w[i] = 1e-3
	}
	for i := range t.x {
		t.x[i] = 1e-3
	}
	t.reps = 2000
	units := 4 * th
	p.Parallel(units, 1, t) // warm up (clock, caches)
	best := math.Inf(1)
	for range passes {
		start := time.Now()
		p.Parallel(units, 1, t)
		best = min(best, time.Since(start).Seconds())
	}
	t.w, t.x, t.out = nil, nil, nil
	flops := float64(units) * float64(t.reps) * 2 * 12 * flopsK
	return flops / best / 1e9
}
