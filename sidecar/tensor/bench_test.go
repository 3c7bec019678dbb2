package tensor

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// benchShapes are decode shapes of a small Llama (dim 768, hidden 2048) and
// of a 1B-class one (dim 2048, hidden 5632), written rows×cols.
var benchShapes = []struct{ rows, cols int }{
	{768, 2048},
	{2048, 5632},
}

// BenchmarkMatVec reports weight bytes streamed per second: decode is
// bandwidth-bound, so this compares directly with BenchmarkBandwidth. It also
// reports the fastest single call (best-GB/s), which, like
// MeasureBandwidth's best-of-passes, filters out time stolen by other
// processes on a shared machine.
func BenchmarkMatVec(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	p := NewPool(0)
	defer p.Close()
	for _, dt := range allTypes() {
		for _, sh := range benchShapes {
			m, _ := makeMatrix(r, dt, sh.rows, sh.cols)
			x := randVec(r, sh.cols)
			out := make([]float32, sh.rows)
			b.Run(fmt.Sprintf("%v/%dx%d", dt, sh.rows, sh.cols), func(b *testing.B) {
				b.SetBytes(int64(m.Bytes()))
				b.ReportAllocs()
				best := time.Duration(1 << 62)
				for b.Loop() {
					start := time.Now()
					MatVec(p, out, m, x)
					best = min(best, time.Since(start))
				}
				b.ReportMetric(float64(m.Bytes())/best.Seconds()/1e9, "best-GB/s")
			})
		}
	}
}

// BenchmarkMatMul reports GFLOP/s for a prefill-sized batch.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	p := NewPool(0)
	defer p.Close()
	const n = 64
	for _, dt := range allTypes() {
		rows, cols := 768, 2048
		m, _ := makeMatrix(r, dt, rows, cols)
		x := randVec(r, n*cols)
		out := make([]float32, n*rows)
		b.Run(fmt.Sprintf("%v/%dx%dx%d", dt, rows, cols, n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MatMul(p, out, m, x, n)
			}
			b.ReportMetric(2*float64(rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkBandwidth(b *testing.B) {
	p := NewPool(0)
	defer p.Close()
	var gb float64
	for b.Loop() {
		gb = MeasureBandwidth(p, 256<<20, 3)
	}
	b.ReportMetric(gb, "GB/s")
}

func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{64, 4096} {
		x, y := randVec(r, n), randVec(r, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for b.Loop() {
				Dot(x, y)
			}
		})
	}
}

// BenchmarkMatVecDRAM streams the MatVecs of one 110M-shaped decode step
// (12 layers of dim 768 / hidden 2048 plus a 32000-row output), which far
// exceeds the L3, so it measures decode's weight streaming from DRAM
// against MeasureBandwidth (roofline-%).
func BenchmarkMatVecDRAM(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	p := NewPool(0)
	defer p.Close()
	bw := MeasureBandwidth(p, 256<<20, 3)
	shapes := []struct{ rows, cols int }{{768, 768}, {768, 768}, {768, 768}, {768, 768}, {2048, 768}, {2048, 768}, {768, 2048}}
	for _, dt := range []DType{F32, F16, Q8_0, Q4_K, Q6_K} {
		var ms []*Matrix
		total := 0
		for range 12 {
			for _, sh := range shapes {
				m, _ := makeMatrix(r, dt, sh.rows, sh.cols)
				ms = append(ms, m)
				total += m.Bytes()
			}
		}
		big, _ := makeMatrix(r, dt, 32000, 768)
		ms = append(ms, big)
		total += big.Bytes()
		x := randVec(r, 2048)
		out := make([]float32, 32000)
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(int64(total))
			best := time.Duration(1 << 62)
			cpu0 := cpuTime()
			for b.Loop() {
				start := time.Now()
				for _, m := range ms {
					MatVec(p, out, m, x)
				}
				best = min(best, time.Since(start))
			}
			gbs := float64(total) / best.Seconds() / 1e9
			b.ReportMetric(float64(total)*float64(b.N)/(cpuTime()-cpu0).Seconds()/1e9, "GB/cpu-s")
			b.ReportMetric(gbs, "best-GB/s")
			b.ReportMetric(100*gbs/bw, "roofline-%")
		})
	}
}

// cpuTime is the process's user+system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMaskedSums: the profiler's per-row sums over 256 entries: from a
// kept half-precision row (contiguous, rank-masked) and from logits (exp).
func BenchmarkMaskedSums(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	const n = 256
	x := make([]uint16, n)
	F32ToF16s(x, randVec(r, n))
	rank, pos := make([]int32, n), make([]int32, n)
	for m := range rank {
		rank[m], pos[m] = int32(r.IntN(n)), int32(m)
	}
	b.Run("kept", func(b *testing.B) {
		for b.Loop() {
			SumMaskedF16(x, rank, pos, n/3, n/2)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	})
	logits := randVec(r, n)
	b.Run("exp", func(b *testing.B) {
		for b.Loop() {
			ExpSumMasked(logits, rank, pos, 0, n/3, n, n/2)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	})
}
