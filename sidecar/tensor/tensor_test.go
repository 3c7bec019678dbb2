package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// forEachPath runs f once with each kernel set this CPU can run: the
// portable one, then every accelerated one (avx2, avx512…).
func forEachPath(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, ks := range kernelSets {
		kern = ks
		t.Run(ks.name, f)
	}
	SetGeneric(false)
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func allTypes() []DType { return []DType{F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K} }

func TestDTypeMetadata(t *testing.T) {
	tests := []struct {
		t          DType
		id         uint32
		name       string
		block, sz  int
		parseAlias string
	}{
		{F32, 0, "f32", 1, 4, "F32"},
		{F16, 1, "f16", 1, 2, "F16"},
		{Q4_0, 2, "q4_0", 32, 18, "Q4_0"},
		{Q8_0, 8, "q8_0", 32, 34, "Q8_0"},
		{Q4_K, 12, "q4_k", 256, 144, "Q4_K"},
		{Q6_K, 14, "q6_k", 256, 210, "Q6_K"},
		{BF16, 30, "bf16", 1, 2, " BF16"},
	}
	for _, tc := range tests {
		if uint32(tc.t) != tc.id || tc.t.String() != tc.name || tc.t.BlockSize() != tc.block || tc.t.BlockBytes() != tc.sz || !tc.t.Valid() {
			t.Errorf("%v: id %d name %q block %d bytes %d", tc.t, uint32(tc.t), tc.t.String(), tc.t.BlockSize(), tc.t.BlockBytes())
		}
		if got := tc.t.RowBytes(tc.block * 3); got != 3*tc.sz {
			t.Errorf("%v.RowBytes(%d) = %d", tc.t, tc.block*3, got)
		}
		for _, s := range []string{tc.name, tc.parseAlias} {
			if got, err := ParseDType(s); err != nil || got != tc.t {
				t.Errorf("ParseDType(%q) = %v, %v", s, got, err)
			}
		}
	}
	if _, err := ParseDType("q5_1"); err == nil {
		t.Error("ParseDType(q5_1) succeeded")
	}
	if DType(3).Valid() {
		t.Error("DType(3) valid")
	}
}

func TestF16KnownValues(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},                 // largest finite
		{65520, 0x7c00},                 // halfway to 2^16: ties to even = Inf
		{65519.996, 0x7bff},             // just below the tie
		{float32(math.Inf(1)), 0x7c00},  // +Inf
		{float32(math.Inf(-1)), 0xfc00}, // -Inf
		{6.103515625e-05, 0x0400},       // smallest normal
		{5.9604645e-08, 0x0001},         // smallest subnormal 2^-24
		{2.9802322e-08, 0x0000},         // 2^-25: tie rounds to even (0)
		{2.9802326e-08, 0x0001},         // just above 2^-25
		{8.940697e-08, 0x0002},          // 1.5·2^-24: tie to even (2)
		{6.0975552e-05, 0x03ff},         // largest subnormal
		{1 + 1.0/2048, 0x3c00},          // tie between 1 and next: even
		{1 + 3.0/2048, 0x3c02},          // tie: rounds up to even
		{0.333333343, 0x3555},           // 1/3
		{1e-10, 0x0000},                 // underflow
		{1e10, 0x7c00},                  // overflow
	}
	for _, tc := range tests {
		if got := F32ToF16(tc.f); got != tc.h {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	if h := F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
	if !math.IsNaN(float64(F16ToF32(0x7e00))) || !math.IsInf(float64(F16ToF32(0xfc00)), -1) {
		t.Error("F16ToF32 special values")
	}
	// Every finite half must survive a round trip, exercising all subnormals.
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := F32ToF16(f); got != uint16(h) {
			t.Fatalf("round trip %#04x -> %g -> %#04x", h, f, got)
		}
	}
}

func TestBF16KnownValues(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie: even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie: odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // max float rounds to Inf
		{float32(math.Inf(-1)), 0xff80},
		{math.Float32frombits(0x00000001), 0x0000}, // tiny subnormal
		{math.Float32frombits(0x00018000), 0x0002}, // subnormal tie to even
	}
	for _, tc := range tests {
		if got := F32ToBF16(tc.f); got != tc.h {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(tc.f), got, tc.h)
		}
	}
	if h := F32ToBF16(math.Float32frombits(0x7f800001)); !math.IsNaN(float64(BF16ToF32(h))) {
		t.Errorf("F32ToBF16(sNaN) = %#04x, not a NaN", h)
	}
	if BF16ToF32(0x4049) != math.Float32frombits(0x40490000) {
		t.Error("BF16ToF32")
	}
}

func TestF16SliceConversions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	forEachPath(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 7, 8, 15, 16, 33, 100} {
			// The specials (overflow, subnormals, NaN) land in the
			// vector tail as well as in whole vectors.
			src := randVec(r, n)
			specials := []float32{float32(math.Inf(1)), 1e-6, -3e-8, 70000, float32(math.NaN())}
			for i := range min(n, len(specials)) {
				src[n-1-i] = specials[i]
			}
			// dst is longer than src: nothing past n may be written.
			h := make([]uint16, n+9)
			for i := range h {
				h[i] = 0xbeef
			}
			F32ToF16s(h, src)
			for i := n; i < len(h); i++ {
				if h[i] != 0xbeef {
					t.Fatalf("n=%d: F32ToF16s wrote dst[%d]", n, i)
				}
			}
			h = h[:n]
			back := make([]float32, n)
			F16ToF32s(back, h)
			for i := range n {
				if want := F32ToF16(src[i]); h[i] != want {
					t.Fatalf("n=%d F32ToF16s[%d] = %#04x, want %#04x", n, i, h[i], want)
				}
				if math.Float32bits(back[i]) != math.Float32bits(F16ToF32(h[i])) {
					t.Fatalf("n=%d F16ToF32s[%d] = %g", n, i, back[i])
				}
			}
		}
	})
}

// TestRoundTrip bounds the quantization error of each format.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		t DType
		// maxErr bounds |x−x̂| relative to the block's max |x|; rmsErr bounds
		// the RMS error relative to RMS(x).
		maxErr, rmsErr float64
	}{
		{F32, 0, 0},
		{F16, 1.0 / 2048, 1.0 / 2048},
		{BF16, 1.0 / 256, 1.0 / 256},
		{Q8_0, 0.5/127 + 1e-3, 0.01},
		{Q4_0, 1.0/8 + 1e-3, 0.12},
		{Q4_K, 0.25, 0.12},
		{Q6_K, 0.06, 0.03},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range tests {
		t.Run(tc.t.String(), func(t *testing.T) {
			n := 4 * 256
			x := randVec(r, n)
			x[5] = 0 // exact zeros and an all-zero block must survive
			clear(x[256:512])
			q, err := Quantize(tc.t, x)
			if err != nil {
				t.Fatal(err)
			}
			if len(q) != tc.t.RowBytes(n) {
				t.Fatalf("encoded %d bytes, want %d", len(q), tc.t.RowBytes(n))
			}
			y := make([]float32, n)
			Dequantize(tc.t, q, y)
			bs := max(tc.t.BlockSize(), 32)
			var se, sx float64
			for b := 0; b < n; b += bs {
				var amax float64
				for _, v := range x[b : b+bs] {
					amax = max(amax, math.Abs(float64(v)))
				}
				for i := b; i < b+bs; i++ {
					e := math.Abs(float64(x[i] - y[i]))
					se += e * e
					sx += float64(x[i]) * float64(x[i])
					lim := tc.maxErr * amax
					if tc.t == F16 || tc.t == BF16 {
						lim = tc.maxErr * math.Abs(float64(x[i]))
					}
					if e > lim {
						t.Fatalf("x[%d]=%g decoded %g, error %g > %g", i, x[i], y[i], e, lim)
					}
				}
			}
			if rms := math.Sqrt(se / sx); rms > tc.rmsErr {
				t.Errorf("relative RMS error %g > %g", rms, tc.rmsErr)
			} else {
				t.Logf("relative RMS error %.4g", rms)
			}
			if _, err := Quantize(tc.t, x[:n-1]); tc.t.BlockSize() > 1 && err == nil {
				t.Error("quantizing a partial block succeeded")
			}
		})
	}
}

// TestBlockLayouts decodes hand-built blocks, pinning the GGML byte layouts.
func TestBlockLayouts(t *testing.T) {
	// Q4_0: d=2; byte j holds element j (low) and j+16 (high); value (q-8)·d.
	q40 := make([]byte, q4_0Bytes)
	put16(q40, F32ToF16(2))
	q40[2] = 0x9f // element 0: 15 → 14, element 16: 9 → 2
	// Q8_0: d=0.5, int8 values.
	q80 := make([]byte, q8_0Bytes)
	put16(q80, F32ToF16(0.5))
	q80[2+31] = 0x80 // -128 → -64
	// Q4_K: d=1, dmin=0.5; sub-block 0 scale 3 min 2; sub-block 5 scale
	// 0b110001 (49) min 0b100111 (39) packed across the high bits.
	q4k := make([]byte, q4KBytes)
	put16(q4k[0:], F32ToF16(1))
	put16(q4k[2:], F32ToF16(0.5))
	sc := q4k[4:16]
	sc[0], sc[4] = 3, 2
	sc[9] = 0x1 | 0x7<<4    // scale 5 low nibble 1, min 5 low nibble 7
	sc[1] |= 0x3 << 6       // scale 5 high bits 3
	sc[5] |= 0x2 << 6       // min 5 high bits 2
	q4k[16+0] = 0x5         // element 0 (sub-block 0) = 5
	q4k[16+64+3] = 0x7 << 4 // element 128+32+3 (sub-block 5) = 7
	// Q6_K: d=0.25, scale[0]=-4, scale[7]=2; element 0 = 33 (→1),
	// element 96+20 (q4 of first half, scale index 1+6=7) = 63 (→31).
	q6k := make([]byte, q6KBytes)
	put16(q6k[208:], F32ToF16(0.25))
	q6k[192] = byte(0xfc) // int8 -4
	q6k[192+7] = 2
	q6k[0] = 0x1           // ql[0] low nibble: element 0 low bits
	q6k[128] = 0x2         // qh[0] bits 0-1: element 0 high bits → 0x21 = 33
	q6k[32+20] = 0xf << 4  // ql[52] high nibble: element 96+20 low bits
	q6k[128+20] = 0x3 << 6 // qh[20] bits 6-7: element 116 high bits → 63

	tests := []struct {
		t    DType
		blk  []byte
		n    int
		want map[int]float32
	}{
		{Q4_0, q40, 32, map[int]float32{0: 14, 16: 2, 1: -16, 31: -16}},
		{Q8_0, q80, 32, map[int]float32{31: -64, 0: 0}},
		{Q4_K, q4k, 256, map[int]float32{0: 3*5 - 0.5*2, 1: -1, 160 + 3: 49*7 - 0.5*39, 160: -0.5 * 39, 32: 0}},
		{Q6_K, q6k, 256, map[int]float32{0: 0.25 * -4 * 1, 116: 0.25 * 2 * 31, 112: 0.25 * 2 * -32, 1: 0.25 * -4 * -32}},
	}
	for _, tc := range tests {
		y := make([]float32, tc.n)
		Dequantize(tc.t, tc.blk, y)
		for i, w := range tc.want {
			if y[i] != w {
				t.Errorf("%v element %d = %g, want %g", tc.t, i, y[i], w)
			}
		}
	}
}

func refDot(w, x []float32) (dot, absW float64) {
	for i := range w {
		dot += float64(w[i]) * float64(x[i])
		absW += math.Abs(float64(w[i]))
	}
	return
}

func maxAbs(x []float32) float64 {
	var m float64
	for _, v := range x {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}

// tolerance bounds |got−ref| for one output: float weights see only float32
// rounding; quantized weights also see x rounded to 8 bits, at most
// max|x|/254 per element.
func tolerance(t DType, w, x []float32) float64 {
	_, absW := refDot(w, x)
	var sumWX float64
	for i := range w {
		sumWX += math.Abs(float64(w[i]) * float64(x[i]))
	}
	tol := 1e-5*sumWX + 1e-5
	if t.BlockSize() > 1 {
		tol += absW * maxAbs(x) / 254
	}
	return tol
}

func TestDotAxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	forEachPath(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 3, 8, 17, 31, 64, 100, 257, 1000} {
			a, b := randVec(r, n), randVec(r, n)
			ref, _ := refDot(a, b)
			tol := 1e-5 * float64(n+1)
			if got := Dot(a, b); math.Abs(float64(got)-ref) > tol {
				t.Errorf("Dot n=%d = %g, want %g", n, got, ref)
			}
			ah := make([]uint16, n)
			F32ToF16s(ah, a)
			af := make([]float32, n)
			F16ToF32s(af, ah)
			refH, _ := refDot(af, b)
			if got := DotF16(ah, b); math.Abs(float64(got)-refH) > tol {
				t.Errorf("DotF16 n=%d = %g, want %g", n, got, refH)
			}
			y0 := append([]float32(nil), b...)
			y1 := append([]float32(nil), b...)
			Axpy(0.75, a, y0)
			AxpyF16(-1.5, ah, y1)
			for i := range n {
				if w := float64(b[i]) + 0.75*float64(a[i]); math.Abs(float64(y0[i])-w) > 1e-5 {
					t.Fatalf("Axpy n=%d [%d] = %g, want %g", n, i, y0[i], w)
				}
				if w := float64(b[i]) - 1.5*float64(af[i]); math.Abs(float64(y1[i])-w) > 1e-5 {
					t.Fatalf("AxpyF16 n=%d [%d] = %g, want %g", n, i, y1[i], w)
				}
			}
		}
	})
}

// testShapes have row counts that are not multiples of the vector width,
// the MatMul tile, or the worker split.
var testShapes = []struct{ rows, blocks int }{
	{1, 1}, {3, 2}, {13, 3}, {37, 5}, {70, 4},
}

func makeMatrix(r *rand.Rand, dt DType, rows, cols int) (*Matrix, []float32) {
	x := randVec(r, rows*cols)
	data, err := Quantize(dt, x)
	if err != nil {
		panic(err)
	}
	deq := make([]float32, rows*cols)
	Dequantize(dt, data, deq)
	return &Matrix{Type: dt, Rows: rows, Cols: cols, Data: data}, deq
}

func colsFor(dt DType, blocks int) int {
	if dt.BlockSize() == 1 {
		return blocks*32 + 5 // float rows need not be vector multiples
	}
	return blocks * dt.BlockSize()
}

func TestMatVec(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, threads := range []int{1, 3} {
		p := NewPool(threads)
		forEachPath(t, func(t *testing.T) {
			for _, dt := range allTypes() {
				for _, sh := range testShapes {
					cols := colsFor(dt, sh.blocks)
					m, deq := makeMatrix(r, dt, sh.rows, cols)
					x := randVec(r, cols)
					out := make([]float32, sh.rows)
					MatVec(p, out, m, x)
					for i := range sh.rows {
						w := deq[i*cols : (i+1)*cols]
						ref, _ := refDot(w, x)
						if tol := tolerance(dt, w, x); math.Abs(float64(out[i])-ref) > tol {
							t.Fatalf("threads=%d %v %dx%d row %d: %g, want %g ± %g", threads, dt, sh.rows, cols, i, out[i], ref, tol)
						}
					}
				}
			}
		})
		p.Close()
	}
}

// TestMatVecs checks matrices dotted together (the rows of several
// matrices in one pool operation, chunks straddling their boundaries)
// against float64, for every type and path, and that each matrix's rows
// land in its own output.
func TestMatVecs(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	p := NewPool(3)
	defer p.Close()
	forEachPath(t, func(t *testing.T) {
		for _, dt := range allTypes() {
			cols := colsFor(dt, 2)
			var ws [4]*Matrix
			var deq [4][]float32
			x := randVec(r, cols)
			for i, rows := range []int{37, 5, 64, 130} {
				ws[i], deq[i] = makeMatrix(r, dt, rows, cols)
			}
			for nw := 1; nw <= 4; nw++ {
				var use [4]*Matrix
				var outs [4][]float32
				for i := range nw {
					use[i], outs[i] = ws[i], make([]float32, ws[i].Rows)
				}
				MatVecs(p, outs, use, x)
				for i := range nw {
					for row := range ws[i].Rows {
						w := deq[i][row*cols : (row+1)*cols]
						ref, _ := refDot(w, x)
						if tol := tolerance(dt, w, x); math.Abs(float64(outs[i][row])-ref) > tol {
							t.Fatalf("%v, %d matrices: matrix %d row %d: %g, want %g ± %g", dt, nw, i, row, outs[i][row], ref, tol)
						}
					}
				}
			}
		}
	})
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	p := NewPool(3)
	defer p.Close()
	forEachPath(t, func(t *testing.T) { checkMatMul(t, r, p) })
	// MatMul's handling of twelve-row groups (padding, partial tiles) on
	// any CPU, through the portable twelve-row kernel.
	twelve := genericKernels
	twelve.name, twelve.gemmRows, twelve.gemm = "generic-12", 12, gemm12x16Go
	kern = &twelve
	t.Run(twelve.name, func(t *testing.T) { checkMatMul(t, r, p) })
	SetGeneric(false)
}

func checkMatMul(t *testing.T, r *rand.Rand, p *Pool) {
	for _, dt := range allTypes() {
		for _, sh := range []struct{ rows, blocks int }{{1, 1}, {13, 3}, {37, 2}, {70, 3}} {
			for _, n := range []int{1, 2, 3, 4, 5, 7, 11, 12, 19, 25} {
				cols := colsFor(dt, sh.blocks)
				switch {
				case dt.BlockSize() == 1 && sh.blocks == 3:
					cols = 2*mmTileK + 9 // crosses K tiles with a tail
				case sh.blocks == 3:
					cols = mmTileK + colsFor(dt, 3) // a whole K tile and a short one
				}
				m, deq := makeMatrix(r, dt, sh.rows, cols)
				x := randVec(r, n*cols)
				out := make([]float32, n*sh.rows)
				for i := range out {
					out[i] = float32(math.NaN()) // MatMul must overwrite, not add to, what it finds
				}
				MatMul(p, out, m, x, n)
				for j := range n {
					xj := x[j*cols : (j+1)*cols]
					for i := range sh.rows {
						w := deq[i*cols : (i+1)*cols]
						ref, _ := refDot(w, xj)
						if tol := tolerance(dt, w, xj); math.Abs(float64(out[j*sh.rows+i])-ref) > tol {
							t.Fatalf("%v %dx%d n=%d out[%d][%d] = %g, want %g ± %g", dt, sh.rows, cols, n, j, i, out[j*sh.rows+i], ref, tol)
						}
					}
				}
			}
		}
	}
}

// TestPathsAgree checks the assembly kernels against the generic ones on the
// same quantized activations, far tighter than the float64 reference test.
func TestPathsAgree(t *testing.T) {
	if bestKernels.name == genericKernels.name {
		t.Skip("no accelerated kernels on this CPU")
	}
	r := rand.New(rand.NewPCG(11, 12))
	p := NewPool(1)
	defer p.Close()
	for _, dt := range allTypes() {
		for _, blocks := range []int{1, 2, 3, 7} {
			cols := colsFor(dt, blocks)
			m, _ := makeMatrix(r, dt, 5, cols)
			x := randVec(r, cols)
			got, want := make([]float32, 5), make([]float32, 5)
			MatVec(p, got, m, x)
			SetGeneric(true)
			MatVec(p, want, m, x)
			SetGeneric(false)
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Errorf("%v cols=%d row %d: %s %g, generic %g", dt, cols, i, KernelName(), got[i], want[i])
				}
			}
		}
	}
}

func TestElementwise(t *testing.T) {
	x := []float32{1, -2, 3, 0.5}
	w := []float32{1, 2, 0.5, -1}
	out := make([]float32, 4)
	RMSNorm(out, x, w, 1e-6)
	ms := (1 + 4 + 9 + 0.25) / 4.0
	for i := range x {
		want := float64(x[i]) * float64(w[i]) / math.Sqrt(ms+1e-6)
		if math.Abs(float64(out[i])-want) > 1e-6 {
			t.Errorf("RMSNorm[%d] = %g, want %g", i, out[i], want)
		}
	}
	sm := []float32{1000, 1001, 999, float32(math.Inf(-1))}
	Softmax(sm)
	e := []float64{math.Exp(-1), 1, math.Exp(-2), 0}
	s := e[0] + e[1] + e[2]
	for i := range sm {
		if math.Abs(float64(sm[i])-e[i]/s) > 1e-6 {
			t.Errorf("Softmax[%d] = %g, want %g", i, sm[i], e[i]/s)
		}
	}
	masked := []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}
	Softmax(masked)
	if masked[0] != 0 || masked[1] != 0 {
		t.Errorf("Softmax of a masked row = %v", masked)
	}
	lx := []float32{-1, 0, -2, float32(math.Inf(-1))}
	if got, want := SoftmaxLSE(lx), math.Log(s); math.Abs(float64(got)-want) > 1e-6 || math.Abs(float64(lx[1])-1/s) > 1e-6 {
		t.Errorf("SoftmaxLSE = %g (row %v), want %g", got, lx, want)
	}
	if got := SoftmaxLSE([]float32{float32(math.Inf(-1))}); !math.IsInf(float64(got), -1) {
		t.Errorf("SoftmaxLSE of a masked row = %g, want −Inf", got)
	}
	g := []float32{-1, 0, 2}
	u := []float32{2, 3, 0.5}
	sw := make([]float32, 3)
	SwiGLU(sw, g, u)
	SiLU(g)
	for i := range g {
		v := []float64{-1, 0, 2}[i]
		want := v / (1 + math.Exp(-v))
		if math.Abs(float64(g[i])-want) > 1e-6 || math.Abs(float64(sw[i])-want*float64(u[i])) > 1e-6 {
			t.Errorf("SiLU/SwiGLU[%d] = %g, %g", i, g[i], sw[i])
		}
	}
	sc := []float32{1, 2}
	Scale(3, sc)
	if sc[0] != 3 || sc[1] != 6 {
		t.Errorf("Scale = %v", sc)
	}
}

func TestMatrixRow(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, dt := range allTypes() {
		m, deq := makeMatrix(r, dt, 3, colsFor(dt, 2))
		if m.Bytes() != len(m.Data) {
			t.Errorf("%v Bytes %d, data %d", dt, m.Bytes(), len(m.Data))
		}
		row := make([]float32, m.Cols)
		m.Row(2, row)
		for i, v := range row {
			if v != deq[2*m.Cols+i] {
				t.Fatalf("%v Row(2)[%d] = %g, want %g", dt, i, v, deq[2*m.Cols+i])
			}
		}
	}
}

// TestZeroAlloc holds the kernels to the steady-state no-allocation contract.
// TestZeroAlloc: no weight product allocates, on any kernel set — one
// activation row (the rows kernels), two (one row kernel call per row and
// activation) and a batch (MatMul's tiles).
func TestZeroAlloc(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	p := NewPool(2)
	defer p.Close()
	forEachPath(t, func(t *testing.T) {
		for _, dt := range allTypes() {
			m, _ := makeMatrix(r, dt, 64, 512)
			x := randVec(r, 512*6)
			out := make([]float32, 64*6)
			for _, n := range []int{1, 2, 6} {
				MatMul(p, out, m, x, n) // n = 1 is MatVec
				if a := testing.AllocsPerRun(20, func() { MatMul(p, out, m, x, n) }); a != 0 {
					t.Errorf("%v, %d activation rows: %v allocs", dt, n, a)
				}
			}
		}
	})
}

func TestPoolCoversRange(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		p := NewPool(threads)
		for _, n := range []int{1, 2, 7, 100, 1001} {
			c := &countTask{hits: make([]int, n)}
			p.Parallel(n, 3, c)
			for i, h := range c.hits {
				if h != 1 {
					t.Fatalf("threads=%d n=%d index %d run %d times", threads, n, i, h)
				}
			}
		}
		p.Close()
		p.Close()
	}
}

type countTask struct{ hits []int }

func (c *countTask) Run(_, lo, hi int) {
	for i := lo; i < hi; i++ {
		c.hits[i]++
	}
}

func TestBandwidth(t *testing.T) {
	p := NewPool(0)
	defer p.Close()
	if gb := MeasureBandwidth(p, 1<<20, 2); gb <= 0 || math.IsInf(gb, 0) {
		t.Errorf("MeasureBandwidth = %g", gb)
	}
}

// TestMeasureFLOPS: every worker's flops are counted once, on both paths.
func TestMeasureFLOPS(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	forEachPath(t, func(t *testing.T) {
		if f := kern.fmaPeak(10); f != 10*kern.fmaPeak(1) || f <= 0 {
			t.Errorf("fmaPeak(10) = %g flops, fmaPeak(1) = %g", f, kern.fmaPeak(1))
		}
		if g := MeasureFLOPS(p, 2); g <= 0 || math.IsInf(g, 0) || math.IsNaN(g) {
			t.Errorf("MeasureFLOPS = %g", g)
		}
	})
}

func ExampleMatVec() {
	p := NewPool(2)
	defer p.Close()
	data, _ := Quantize(F16, []float32{1, 2, 3, 4})
	w := &Matrix{Type: F16, Rows: 2, Cols: 2, Data: data}
	out := make([]float32, 2)
	MatVec(p, out, w, []float32{1, 1})
	fmt.Println(out)
	// Output: [3 7]
}

// TestPoolBackToBack runs many short operations in a row, so workers woken
// late meet later generations (run with -race).
func TestPoolBackToBack(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	c := &countTask{hits: make([]int, 64)}
	for i := 0; i < 20000; i++ {
		p.Parallel(len(c.hits), 1, c)
	}
	for i, h := range c.hits {
		if h != 20000 {
			t.Fatalf("index %d run %d times, want 20000", i, h)
		}
	}
}

// TestQuantRows checks the multi-row Q8_0, Q4_0, Q4_K and Q6_K kernels at several row
// counts: against the float64 reference on both paths, and bit for bit
// against the single-row kernel of the same path (a row that starts from
// the last row's accumulators or offset shows).
func TestQuantRows(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	p := NewPool(1)
	defer p.Close()
	forEachPath(t, func(t *testing.T) {
		k := kern
		for _, c := range []struct {
			dt     DType
			blocks []int
		}{{Q8_0, []int{1, 2, 3, 4, 5, 6, 7, 24}}, {Q4_0, []int{1, 2, 3, 24}}, {Q4_K, []int{1, 2, 3}}, {Q6_K, []int{1, 2, 3}}} {
			for _, blocks := range c.blocks {
				cols := blocks * c.dt.BlockSize()
				for _, rows := range []int{1, 2, 3, 4, 5, 6, 7, 9, 11, 13} {
					m, deq := makeMatrix(r, c.dt, rows, cols)
					x := randVec(r, cols)
					p.prepareActivations(m, x, 1)
					a := &p.act
					rb := c.dt.RowBytes(cols)
					got := make([]float32, rows)
					var one func(row []byte) float32
					switch c.dt {
					case Q8_0:
						qs, ax, d := a.qs[:cols], a.ax[:cols], a.d[:blocks]
						k.vdQ8_0Rows(got, m.Data, rb, qs, ax, d)
						one = func(row []byte) float32 { return k.vdQ8_0(row, qs, ax, d) }
					case Q4_0:
						qs, d := a.qs[:cols], a.d[:blocks]
						k.vdQ4_0Rows(got, m.Data, rb, qs, d)
						one = func(row []byte) float32 { return k.vdQ4_0(row, qs, d) }
					case Q4_K:
						qs, d, bs := a.qs[:cols], a.d[:blocks], a.bs32[:blocks*8]
						k.vdQ4KRows(got, m.Data, rb, qs, d, bs)
						one = func(row []byte) float32 { return k.vdQ4K(row, qs, d, bs) }
					case Q6_K:
						qs, d, bs := a.qs[:cols], a.d[:blocks], a.bs16[:blocks*16]
						k.vdQ6KRows(got, m.Data, rb, qs, d, bs)
						one = func(row []byte) float32 { return k.vdQ6K(row, qs, d, bs) }
					}
					for i := range rows {
						if want := one(m.Data[i*rb : (i+1)*rb]); got[i] != want {
							t.Errorf("%s %d rows × %d cols, row %d: %g, single-row kernel %g", c.dt, rows, cols, i, got[i], want)
						}
						w := deq[i*cols : (i+1)*cols]
						ref, _ := refDot(w, x)
						if tol := tolerance(c.dt, w, x); math.Abs(float64(got[i])-ref) > tol {
							t.Errorf("%s %d rows × %d cols, row %d: %g, want %g ± %g", c.dt, rows, cols, i, got[i], ref, tol)
						}
					}
				}
			}
		}
	})
}

// TestMatVecRowKernels checks MatVec's f32/f16/bf16 row kernels against
// the float64 reference on both paths, and rows of 256 values or more,
// which stream end to end, bit for bit against one call per row, so a row
// boundary slipped by a value shows. (Shorter f32/f16 rows take DotRows'
// eight-row groups, whose leftover rows sum in another order.)
func TestMatVecRowKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	forEachPath(t, func(t *testing.T) {
		k := kern
		for _, cols := range []int{8, 37, 40, 256, 300, 768} {
			for _, rows := range []int{1, 7, 9, 15, 17, 30} {
				w := randVec(r, rows*cols)
				wh, wb := make([]uint16, len(w)), make([]uint16, len(w))
				F32ToF16s(wh, w)
				wf, wbf := make([]float32, len(w)), make([]float32, len(w))
				F16ToF32s(wf, wh)
				for i, v := range w {
					wb[i] = F32ToBF16(v)
					wbf[i] = BF16ToF32(wb[i])
				}
				x := randVec(r, cols)
				for _, c := range []struct {
					name string
					deq  []float32 // the weights' exact values
					mv   func(out []float32, lo, hi int)
				}{
					{"f32", w, func(out []float32, lo, hi int) { k.matVecF32(out, w[lo*cols:hi*cols], cols, x, 1) }},
					{"f16", wf, func(out []float32, lo, hi int) { k.matVecF16(out, wh[lo*cols:hi*cols], cols, x, 1) }},
					{"bf16", wbf, func(out []float32, lo, hi int) { k.matVecBF16(out, wb[lo*cols:hi*cols], cols, x, 1) }},
				} {
					got := make([]float32, rows)
					c.mv(got, 0, rows)
					for i := range rows {
						var one [1]float32
						c.mv(one[:], i, i+1)
						if cols >= 256 && got[i] != one[0] {
							t.Errorf("%s %dx%d row %d: %g, one row %g", c.name, rows, cols, i, got[i], one[0])
						}
						row := c.deq[i*cols : (i+1)*cols]
						ref, _ := refDot(row, x)
						if tol := tolerance(F32, row, x); math.Abs(float64(got[i])-ref) > tol {
							t.Errorf("%s %dx%d row %d: %g, want %g ± %g", c.name, rows, cols, i, got[i], ref, tol)
						}
					}
				}
			}
		}
	})
}

// TestQuantAct checks the activation quantizer: on every path each value
// is the float64 reference's round(x·127/amax) (or one off where x·id sits
// on a rounding boundary in float32), and the vector path's int8 values,
// magnitudes and scales are bit for bit the portable ones, on blocks of 32
// and 256 including an all-zero block, exact halves and mixed magnitudes.
func TestQuantAct(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, bs := range []int{32, 256} {
		for _, nb := range []int{1, 2, 3, 8} {
			x := randVec(r, nb*bs)
			for i := range x {
				x[i] *= float32(math.Pow(10, float64(r.IntN(7)-3)))
			}
			clear(x[:bs]) // an all-zero block
			if nb > 1 {
				// Values whose x·id lands on .5: 127·k/254 against amax 1.
				for i := range bs {
					x[bs+i] = float32(i-bs/2) / 254
				}
				x[bs] = 1
			}
			var want struct {
				qs []int8
				ax []uint8
				d  []float32
			}
			forEachPath(t, func(t *testing.T) {
				qs, ax, d := make([]int8, len(x)), make([]uint8, len(x)), make([]float32, nb)
				kern.quantAct(x, qs, ax, d, bs)
				for b := range nb {
					var amax float64
					for _, v := range x[b*bs : (b+1)*bs] {
						amax = math.Max(amax, math.Abs(float64(v)))
					}
					if math.Abs(float64(d[b])-amax/127) > amax/127*1e-6 {
						t.Fatalf("bs %d block %d: scale %g, want %g", bs, b, d[b], amax/127)
					}
					for i := b * bs; i < (b+1)*bs; i++ {
						ref := 0.0
						if amax > 0 {
							ref = float64(x[i]) * 127 / amax
						}
						if math.Abs(float64(qs[i])-ref) > 0.5+1e-4 || int(ax[i]) != max(int(qs[i]), -int(qs[i])) {
							t.Fatalf("bs %d value %d (%g): q %d |q| %d, want %.4f", bs, i, x[i], qs[i], ax[i], ref)
						}
					}
				}
				if want.qs == nil {
					want.qs, want.ax, want.d = qs, ax, d
					return
				}
				for i := range qs {
					if qs[i] != want.qs[i] || ax[i] != want.ax[i] {
						t.Fatalf("bs %d value %d: %s gives %d/%d, generic %d/%d", bs, i, KernelName(), qs[i], ax[i], want.qs[i], want.ax[i])
					}
				}
				for b := range d {
					if math.Float32bits(d[b]) != math.Float32bits(want.d[b]) {
						t.Fatalf("bs %d block %d: %s scale %g, generic %g", bs, b, KernelName(), d[b], want.d[b])
					}
				}
			})
		}
	}
}

// TestDequantTile: MatMul's tile conversion gives, on the vector path, the
// very values Dequantize does (the panel then multiplies exact weights), for
// every type and a few blocks of each.
func TestDequantTile(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, dt := range allTypes() {
		for _, blocks := range []int{1, 2, 5} {
			cols := colsFor(dt, blocks)
			m, _ := makeMatrix(r, dt, 1, cols)
			want := make([]float32, cols)
			Dequantize(dt, m.Data, want)
			forEachPath(t, func(t *testing.T) {
				got := make([]float32, cols)
				dequantTile(kern, dt, m.Data, got)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v %d cols, value %d: %g, Dequantize %g", dt, cols, i, got[i], want[i])
					}
				}
			})
		}
	}
}

// TestExpSum: exponentials and their sum against float64 on every path,
// from a few values to a vocabulary's worth, where a float32 running sum
// would drift.
func TestExpSum(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	forEachPath(t, func(t *testing.T) {
		for _, n := range []int{1, 7, 129, 32000} {
			x := randVec(r, n)
			for i := range x {
				x[i] *= 4
			}
			mx := x[Argmax(x)]
			var want float64
			ref := make([]float64, n)
			for i, v := range x {
				ref[i] = math.Exp(float64(v) - float64(mx))
				want += ref[i]
			}
			arg := make([]float64, n)
			for i, v := range x {
				arg[i] = float64(v - mx) // the float32 argument each exp sees
			}
			got := ExpSum(x, mx)
			if math.Abs(got-want) > 1e-6*want {
				t.Errorf("n=%d: sum %v, want %v (relative error %.2g)", n, got, want, math.Abs(got-want)/want)
			}
			for i, v := range x {
				// A few ulp of e^r, plus the float32 rounding of x−mx,
				// which moves e^(x−mx) by |x−mx|·2⁻²⁴ relatively.
				if tol := (4e-7 + math.Abs(arg[i])*1.2e-7) * ref[i]; math.Abs(float64(v)-ref[i]) > tol {
					t.Fatalf("n=%d: e^x[%d] = %v, want %v", n, i, v, ref[i])
				}
			}
		}
	})
}
