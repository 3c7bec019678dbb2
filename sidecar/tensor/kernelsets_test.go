package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemm checks each set's MatMul micro-kernel (gemmRows × 16) against a
// float64 reference, storing and adding, at k lengths around its unrolling
// and strides that are not vector multiples.
func TestGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	forEachPath(t, func(t *testing.T) {
		rows := kern.gemmRows
		for _, k := range []int{0, 1, 2, 3, 4, 5, 7, 9, 33, 130} {
			for _, add := range []bool{false, true} {
				xs, cs := k+3, 21
				panel := randVec(r, 16*k)
				x := randVec(r, rows*xs)
				c := randVec(r, rows*cs)
				was := append([]float32(nil), c...)
				kern.gemm(panel, k, x, xs, c, cs, add)
				for j := range rows {
					for i := range 16 {
						var ref, mag float64
						for kk := range k {
							p := float64(x[j*xs+kk]) * float64(panel[kk*16+i])
							ref += p
							mag += math.Abs(p)
						}
						if add {
							ref += float64(was[j*cs+i])
							mag += math.Abs(float64(was[j*cs+i]))
						}
						if d := math.Abs(float64(c[j*cs+i]) - ref); d > 1e-5*mag+1e-6 {
							t.Fatalf("k=%d add=%v c[%d][%d] = %g, want %g", k, add, j, i, c[j*cs+i], ref)
						}
					}
					for i := 16; i < cs; i++ { // between rows: untouched
						if c[j*cs+i] != was[j*cs+i] {
							t.Fatalf("k=%d add=%v wrote c[%d][%d] outside the block", k, add, j, i)
						}
					}
				}
			}
		}
	})
}

// TestKernelSetsAgree holds every accelerated set to the first one (avx2)
// bit for bit wherever they promise it: MatMul over every weight type
// (the AVX-512 gemm sums each output in the AVX2 kernel's order) and
// MatVec (the VNNI Q8_0 rows give the AVX2 integer sums). This is what
// keeps greedy output the same whichever set a machine picks.
func TestKernelSetsAgree(t *testing.T) {
	var fast []*kernelSet
	for _, ks := range kernelSets {
		if ks != &genericKernels {
			fast = append(fast, ks)
		}
	}
	if len(fast) < 2 {
		names := "none"
		if len(fast) == 1 {
			names = fast[0].name
		}
		t.Skipf("one accelerated kernel set on this CPU (%s): the AVX-512 sets are checked on an AVX-512 CPU or under emulation (go tool -modfile=tools/go.mod task test:avx512)", names)
	}
	defer SetGeneric(false)
	r := rand.New(rand.NewPCG(23, 24))
	p := NewPool(2)
	defer p.Close()
	for _, dt := range allTypes() {
		for _, sh := range []struct{ rows, cols, n int }{{16, colsFor(dt, 3), 25}, {37, colsFor(dt, 9), 12}, {5, colsFor(dt, 1), 1}, {21, colsFor(dt, 2), 3}} {
			m, _ := makeMatrix(r, dt, sh.rows, sh.cols)
			x := randVec(r, sh.n*sh.cols)
			var want []float32
			for i, ks := range fast {
				kern = ks
				mm := make([]float32, sh.n*sh.rows)
				MatMul(p, mm, m, x, sh.n)
				mv := make([]float32, sh.rows)
				MatVec(p, mv, m, x[:sh.cols])
				got := append(mm, mv...)
				if i == 0 {
					want = got
					continue
				}
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("%v %dx%d n=%d value %d: %s %g, %s %g", dt, sh.rows, sh.cols, sh.n, j, ks.name, got[j], fast[0].name, want[j])
					}
				}
			}
		}
	}
}
