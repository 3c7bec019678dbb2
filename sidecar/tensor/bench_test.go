package tensor

import (
	"fmt"
	"math/rand/v2"
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
