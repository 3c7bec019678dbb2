package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttnRows checks the row-block attention kernels against float64 on
// awkward head dims (vector tails, dims below one vector) on every path.
func TestAttnRows(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, d := range []int{1, 3, 8, 12, 16, 24, 40, 64, 72, 96, 128, 136, 200} {
			for _, n := range []int{1, 2, 7, 16, 33} {
				k, q, p := randVec(r, n*d), randVec(r, d), randVec(r, n)
				kh := make([]uint16, n*d)
				F32ToF16s(kh, k)
				k16 := make([]float32, n*d)
				F16ToF32s(k16, kh)
				const scale = 0.37
				// A next block shorter than these rows: prefetching past
				// its end must neither fault nor change a result.
				next, next16 := randVec(r, 3), make([]uint16, 3)
				got, got16 := make([]float32, n), make([]float32, n)
				DotRows(got, k, d, q, scale, next)
				DotRowsF16(got16, kh, d, q, scale, next16)
				for j := range n {
					for _, c := range []struct {
						got float32
						k   []float32
					}{{got[j], k}, {got16[j], k16}} {
						want, abs := refDot(c.k[j*d:(j+1)*d], q)
						if diff := math.Abs(float64(c.got) - scale*want); diff > 1e-5*scale*abs+1e-6 {
							t.Fatalf("d=%d n=%d row %d: got %g, want %g", d, n, j, c.got, scale*want)
						}
					}
				}
				base := randVec(r, d)
				out, out16 := append([]float32(nil), base...), append([]float32(nil), base...)
				AxpyRows(out, k, d, p, nil)
				AxpyRowsF16(out16, kh, d, p, nil)
				for i := range d {
					for _, c := range []struct {
						got float32
						v   []float32
					}{{out[i], k}, {out16[i], k16}} {
						want, abs := float64(base[i]), math.Abs(float64(base[i]))
						for j := range n {
							want += float64(p[j]) * float64(c.v[j*d+i])
							abs += math.Abs(float64(p[j]) * float64(c.v[j*d+i]))
						}
						if diff := math.Abs(float64(c.got) - want); diff > 1e-5*abs+1e-6 {
							t.Fatalf("d=%d n=%d col %d: got %g, want %g", d, n, i, c.got, want)
						}
					}
				}
			}
		}
	})
}

func TestExpf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200000; i++ {
		x := float32(r.Float64()*190 - 100)
		got, want := float64(expf(x)), math.Exp(float64(x))
		if want < 1.2e-38 {
			if got > 1.2e-38 {
				t.Fatalf("expf(%g) = %g, want ≈ %g", x, got, want)
			}
			continue
		}
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("expf(%g) = %g, want +Inf", x, got)
			}
			continue
		}
		if rel := math.Abs(got-want) / want; rel > 4e-7 {
			t.Fatalf("expf(%g) = %g, want %g (rel %g)", x, got, want, rel)
		}
	}
	if expf(float32(math.Inf(-1))) != 0 {
		t.Fatal("expf(-Inf) != 0")
	}
}

// TestSoftmaxSizes checks Softmax against float64 on rows of awkward
// lengths with masked (−Inf) and very negative entries, on every path.
func TestSoftmaxSizes(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range []int{1, 5, 8, 9, 31, 64, 257} {
			x := randVec(r, n)
			for i := range x {
				x[i] *= 20
				if i%7 == 3 {
					x[i] = float32(math.Inf(-1))
				}
				if i%11 == 5 {
					x[i] = -200
				}
			}
			mx := math.Inf(-1)
			for _, v := range x {
				mx = max(mx, float64(v))
			}
			want := make([]float64, n)
			var sum float64
			for i, v := range x {
				want[i] = math.Exp(float64(v) - mx)
				sum += want[i]
			}
			got := append([]float32(nil), x...)
			Softmax(got)
			for i := range got {
				w := want[i] / sum
				if math.Abs(float64(got[i])-w) > 2e-6*w+1e-9 || (w == 0 && got[i] != 0) {
					t.Fatalf("n=%d: Softmax[%d] = %g, want %g", n, i, got[i], w)
				}
			}
		}
	})
}

// TestDequantTileQ8_0 checks MatMul's Q8_0 tile conversion against the
// portable Dequantize on every path.
func TestDequantTileQ8_0(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, blocks := range []int{1, 2, 7, 16} {
			src, err := Quantize(Q8_0, randVec(r, blocks*qk8_0))
			if err != nil {
				t.Fatal(err)
			}
			want, got := make([]float32, blocks*qk8_0), make([]float32, blocks*qk8_0)
			Dequantize(Q8_0, src, want)
			dequantTile(kern, Q8_0, src, got)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%d blocks: value %d = %g, want %g", blocks, i, got[i], want[i])
				}
			}
		}
	})
}

// TestDotRowsIdx checks the gathered-row scores against float64 on awkward
// head dims, index counts (vector, quad and chunk tails, repeated rows) and
// query counts (the kernel's query pairs and a leftover single).
func TestDotRowsIdx(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, d := range []int{1, 5, 8, 16, 24, 64, 72, 128, 136} {
			const rows = 37
			k := randVec(r, rows*d)
			for _, n := range []int{0, 1, 3, 4, 5, 8, 13, 33, 70} {
				for _, nq := range []int{1, 2, 3, 8} {
					q := randVec(r, nq*d)
					idx := make([]int32, n)
					for m := range idx {
						idx[m] = int32(r.IntN(rows))
					}
					got := make([]float32, nq*n)
					const scale = 0.61
					DotRowsIdxN(got, k, d, idx, q, nq, scale)
					for c := range nq {
						for m, j := range idx {
							want, abs := refDot(k[int(j)*d:(int(j)+1)*d], q[c*d:(c+1)*d])
							if g := got[c*n+m]; math.Abs(float64(g)-scale*want) > 1e-5*scale*abs+1e-6 {
								t.Fatalf("d=%d n=%d nq=%d query %d entry %d (row %d): got %g, want %g", d, n, nq, c, m, j, g, scale*want)
							}
						}
					}
				}
			}
		}
	})
}

func TestDotRowsIdxRejectsBadRows(t *testing.T) {
	for _, idx := range [][]int32{{-1}, {4}, {0, 1, 2, 9}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("DotRowsIdxN(%v) over 4 rows did not panic", idx)
				}
			}()
			DotRowsIdxN(make([]float32, len(idx)), make([]float32, 4*8), 8, idx, make([]float32, 8), 1, 1)
		}()
	}
}

// TestExpSumMasked checks the masked, split exp sums against float64 on
// lengths with vector tails and bounds that cut inside every vector.
func TestExpSumMasked(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, n := range []int{0, 1, 7, 8, 9, 16, 31, 100} {
			x := make([]float32, n)
			rank, pos := make([]int32, n), make([]int32, n)
			for m := range x {
				x[m] = float32(r.NormFloat64() * 3)
				if m%13 == 5 {
					x[m] = -200 // below expf's clamp: contributes 0
				}
				rank[m], pos[m] = int32(r.IntN(50)), int32(r.IntN(60))-5
			}
			for _, b := range [][3]int32{{49, 60, 0}, {20, 30, 10}, {-1, 60, 0}, {49, -10, 0}, {25, 25, math.MinInt32}, {25, 25, math.MaxInt32}} {
				const shift = 1.5
				lo, hi := ExpSumMasked(x, rank, pos, shift, b[0], b[1], b[2])
				var wlo, whi float64
				for m := range x {
					if rank[m] > b[0] || pos[m] > b[1] || x[m] < -100 {
						continue
					}
					if e := math.Exp(float64(x[m]) - shift); pos[m] >= b[2] {
						whi += e
					} else {
						wlo += e
					}
				}
				if math.Abs(float64(lo)-wlo) > 1e-5*wlo+1e-30 || math.Abs(float64(hi)-whi) > 1e-5*whi+1e-30 {
					t.Fatalf("n=%d bounds %v: lo %g hi %g, want %g %g", n, b, lo, hi, wlo, whi)
				}
			}
		}
	})
}

// TestSumMaskedF16 checks the masked contiguous sums against float64 on
// every path, at lengths around the vector width, with and without
// capacity for whole vectors, where the values past the length (NaN here)
// must be ignored.
func TestSumMaskedF16(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, n := range []int{0, 1, 7, 8, 9, 16, 31, 100} {
			for _, padded := range []bool{true, false} {
				c := n
				if padded {
					c = (n + 7) &^ 7
				}
				x, rank, pos := make([]uint16, n, c), make([]int32, n, c), make([]int32, n, c)
				for j := range c {
					x = x[:j+1]
					x[j] = 0x7e00 // NaN: must never be summed
					if j < n {
						x[j] = F32ToF16(float32(r.NormFloat64()))
					}
					rank, pos = rank[:j+1], pos[:j+1]
					rank[j], pos[j] = int32(r.IntN(50)), int32(r.IntN(60))-5
				}
				x, rank, pos = x[:n], rank[:n], pos[:n]
				for _, b := range [][2]int32{{49, 0}, {20, 10}, {-1, 0}, {25, math.MinInt32}, {25, math.MaxInt32}} {
					lo, hi := SumMaskedF16(x, rank, pos, b[0], b[1])
					var wlo, whi float64
					for j := range x {
						if rank[j] > b[0] {
							continue
						}
						if v := float64(F16ToF32(x[j])); pos[j] >= b[1] {
							whi += v
						} else {
							wlo += v
						}
					}
					// Negated so that a NaN (a value past n summed) fails.
					if !(math.Abs(float64(lo)-wlo) <= 1e-5 && math.Abs(float64(hi)-whi) <= 1e-5) {
						t.Fatalf("n=%d padded=%v bounds %v: lo %g hi %g, want %g %g", n, padded, b, lo, hi, wlo, whi)
					}
				}
			}
		}
	})
}

// TestSwiGLU checks the gated activation against float64 on every path, at
// lengths with vector tails, gates far into both tails of the sigmoid, and
// with out aliasing gate (as the forward pass calls it); SwiGLUParallel
// must give the same bits as the serial kernel.
func TestSwiGLU(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		pool := NewPool(2)
		defer pool.Close()
		for _, n := range []int{1, 7, 8, 9, 33, 20000} {
			g, u := randVec(r, n), randVec(r, n)
			for i := range g {
				g[i] *= 6
				switch i % 17 {
				case 3:
					g[i] = -120 // e^−g overflows: the product is 0
				case 5:
					g[i] = 95 // e^−g underflows: the product is g·u
				}
			}
			out := append([]float32(nil), g...)
			SwiGLU(out, out, u)
			par := make([]float32, n)
			SwiGLUParallel(pool, par, g, u)
			for i := range g {
				x := float64(g[i])
				want := x / (1 + math.Exp(-x)) * float64(u[i])
				if d := math.Abs(float64(out[i]) - want); d > 2e-6*math.Abs(want)+1e-30 {
					t.Fatalf("n=%d [%d]: SwiGLU(%g, %g) = %g, want %g", n, i, g[i], u[i], out[i], want)
				}
				if par[i] != out[i] {
					t.Fatalf("n=%d [%d]: parallel %g, serial %g", n, i, par[i], out[i])
				}
			}
		}
	})
}

// TestRMSNormSizes checks RMSNorm against float64 on every path at lengths
// with vector tails, out aliasing x as the forward pass never does and
// separate as it does.
func TestRMSNormSizes(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, n := range []int{1, 5, 8, 17, 288, 771} {
			x, w := randVec(r, n), randVec(r, n)
			var ss float64
			for _, v := range x {
				ss += float64(v) * float64(v)
			}
			s := 1 / math.Sqrt(ss/float64(n)+1e-5)
			out := make([]float32, n)
			RMSNorm(out, x, w, 1e-5)
			in := append([]float32(nil), x...)
			RMSNorm(in, in, w, 1e-5)
			for i := range x {
				want := float64(x[i]) * s * float64(w[i])
				if d := math.Abs(float64(out[i]) - want); d > 1e-6*math.Abs(want)+1e-7 || in[i] != out[i] {
					t.Fatalf("n=%d [%d]: %g (in place %g), want %g", n, i, out[i], in[i], want)
				}
			}
		}
	})
}
