package tensor

// kernelSet is one implementation of every hot loop. Kernels are reached
// through function values chosen once at start-up so the choice costs one
// indirect call per row, not a feature test.
type kernelSet struct {
	name string

	dot       func(a, b []float32) float32
	axpy      func(a float32, x, y []float32)
	dotF16    func(a []uint16, b []float32) float32
	axpyF16   func(a float32, x []uint16, y []float32)
	f16ToF32s func(dst []float32, src []uint16)
	f32ToF16s func(dst []uint16, src []float32)
	sum       func(x []float32) float32

	// Row kernels: Σ w[c]·x[c] for one encoded weight row.
	vdF32  func(w []byte, x []float32) float32
	vdF16  func(w []byte, x []float32) float32
	vdBF16 func(w []byte, x []float32) float32
	// The Q8_0 kernels take the activation as int8 values qs, their
	// magnitudes ax (prepared once, not once per row) and a scale per 32.
	vdQ8_0 func(w []byte, qs []int8, ax []uint8, d []float32) float32
	vdQ4_0 func(w []byte, qs []int8, d []float32) float32
	// vdQ8_0Rows is vdQ8_0 over len(out) rows rb bytes apart, with
	// results identical to one vdQ8_0 call per row.
	vdQ8_0Rows func(out []float32, w []byte, rb int, qs []int8, ax []uint8, d []float32)
	vdQ4_0Rows func(out []float32, w []byte, rb int, qs []int8, d []float32)
	vdQ4K      func(w []byte, qs []int8, d []float32, bs32 []int16) float32
	// vdQ4_0Rows, vdQ4KRows and vdQ6KRows are vdQ4_0, vdQ4K and vdQ6K
	// likewise.
	vdQ4KRows func(out []float32, w []byte, rb int, qs []int8, d []float32, bs32 []int16)
	vdQ6K     func(w []byte, qs []int8, d []float32, bs16 []int16) float32
	vdQ6KRows func(out []float32, w []byte, rb int, qs []int8, d []float32, bs16 []int16)

	// gemm6x16 adds (add) or stores a 6×16 block of products into c:
	// c[j*cs+i] (+)= Σ_kk x[j*xs+kk]·wp[kk*16+i], six activation rows (xs
	// apart) against a panel of 16 weight rows packed k-major (Gemm6x16:
	// prompt attention, whose buffers are sized for six rows).
	gemm6x16 func(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool)
	// gemm is MatMul's micro-kernel: gemm6x16 for gemmRows (6 or 12)
	// activation rows, each output summed in the same order whatever the
	// row count. Twelve rows need 32 vector registers (AVX-512).
	gemmRows int
	gemm     func(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool)
	// packPanel writes gemm6x16's panel from 16 row-major weight rows ss
	// apart: panel[kk*16+i] = src[i*ss+kk] for kk < k.
	packPanel func(panel, src []float32, ss, k int)
	// deqBlocks dequantizes whole blocks of a quantized type (MatMul's
	// weight tiles) exactly as Dequantize does, and reports false for a
	// type it has no faster code for (the portable set: all of them).
	deqBlocks func(t DType, dst []float32, src []byte) bool
	// bf16ToF32s widens len(dst) bfloat16 values.
	bf16ToF32s func(dst []float32, src []uint16)
	// quantAct rounds activations to int8 in blocks of bs (32 or 256)
	// with a symmetric scale each (quantizeActBlock): qs, their magnitudes
	// ax, one scale per block in d.
	quantAct func(x []float32, qs []int8, ax []uint8, d []float32, bs int)
	// fmaPeak runs n rounds of independent multiply-adds on registers and
	// returns the flops done (MeasureFLOPS).
	fmaPeak func(n int) float64

	// Attention over a block of cached rows (attn.go); next is the block
	// the caller reads after it, prefetched meanwhile where that pays.
	dotRows    func(out, k []float32, d int, q []float32, scale float32, next []float32)
	dotRowsF16 func(out []float32, k []uint16, d int, q []float32, scale float32, next []uint16)
	axpyRows   func(out, v []float32, d int, p []float32, next []float32)
	dotRowsIdx func(out, k []float32, d int, idx []int32, q []float32, nq int, scale float32)
	// matVecF32/F16/BF16 dot MatVec's rows of float weights, laid end to
	// end, with q; a row's result does not depend on its neighbours once
	// rows are 256 values or more.
	matVecF32   func(out, k []float32, d int, q []float32, scale float32)
	matVecF16   func(out []float32, k []uint16, d int, q []float32, scale float32)
	matVecBF16  func(out []float32, k []uint16, d int, q []float32, scale float32)
	axpyRowsF16 func(out []float32, v []uint16, d int, p []float32, next []uint16)
	expSum      func(x []float32, mx float32) float32 // x[i] = e^(x[i]−mx), returns Σ
	swiglu      func(out, gate, up []float32)         // len(out), len(up) ≥ len(gate)
	mulScale    func(out, x, w []float32, s float32)  // out[i] = x[i]·s·w[i]
	// expSumMasked is ExpSumMasked (attn.go).
	expSumMasked func(x []float32, rank, pos []int32, shift float32, maxRank, maxPos, split int32) (lo, hi float32)
	// sumMaskedF16 is SumMaskedF16 (attn.go).
	sumMaskedF16 func(x []uint16, rank, pos []int32, maxRank, split int32) (lo, hi float32)
	max          func(x []float32) float32 // len(x) > 0
	scale        func(a float32, x []float32)
}

var genericKernels = kernelSet{
	name:       "generic",
	dot:        dotGo,
	axpy:       axpyGo,
	dotF16:     dotF16Go,
	axpyF16:    axpyF16Go,
	f16ToF32s:  f16ToF32sGo,
	f32ToF16s:  f32ToF16sGo,
	sum:        sumGo,
	vdF32:      vdF32Go,
	vdF16:      vdF16Go,
	vdBF16:     vdBF16Go,
	vdQ8_0:     vdQ8_0Go,
	vdQ8_0Rows: vdQ8_0RowsGo,
	vdQ4_0Rows: vdQ4_0RowsGo,
	vdQ4_0:     vdQ4_0Go,
	vdQ4K:      vdQ4KGo,
	vdQ4KRows:  vdQ4KRowsGo,
	vdQ6KRows:  vdQ6KRowsGo,
	vdQ6K:      vdQ6KGo,
	gemm6x16:   gemm6x16Go,
	gemmRows:   6,
	gemm:       gemm6x16Go,
	packPanel:  packPanelGo,
	deqBlocks:  func(DType, []float32, []byte) bool { return false },
	bf16ToF32s: bf16ToF32sGo,
	quantAct:   quantActGo,
	fmaPeak:    fmaPeakGo,

	dotRows:      dotRowsGo,
	dotRowsF16:   dotRowsF16Go,
	matVecF32:    matVecGo,
	matVecF16:    matVecF16Go,
	matVecBF16:   matVecBF16Go,
	axpyRows:     axpyRowsGo,
	dotRowsIdx:   dotRowsIdxGo,
	max:          maxGo,
	scale:        scaleGo,
	expSum:       expSumGo,
	expSumMasked: expSumMaskedGo,
	sumMaskedF16: sumMaskedF16Go,
	swiglu:       swigluGo,
	mulScale:     mulScaleGo,
	axpyRowsF16:  axpyRowsF16Go,
}

// bestKernels is replaced by an architecture file's init when the CPU has
// something faster.
var bestKernels = genericKernels

// kernelSets lists every set this CPU can run, the portable one first (an
// architecture file's init adds its own), so tests cover each path.
var kernelSets = []*kernelSet{&genericKernels}

var kern = &bestKernels

// SetGeneric forces the portable Go kernels (true) or restores the fastest
// ones the CPU supports (false). It exists so tests and benchmarks can cover
// both paths; it must not be called while kernels are running.
func SetGeneric(on bool) {
	if on {
		kern = &genericKernels
	} else {
		kern = &bestKernels
	}
}

// KernelName names the kernel set in use, e.g. "avx2" or "generic".
func KernelName() string { return kern.name }

func packPanelGo(panel, src []float32, ss, k int) { packPanelCols(panel, src, ss, 0, k) }

// packPanelCols packs columns [k0, k) of the panel.
func packPanelCols(panel, src []float32, ss, k0, k int) {
	for i := range 16 {
		for kk, v := range src[i*ss+k0 : i*ss+k] {
			panel[(k0+kk)*16+i] = v
		}
	}
}

// gemm12x16Go is gemm6x16Go twice: the same sums in the same order.
func gemm12x16Go(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool) {
	gemm6x16Go(wp, k, x, xs, c, cs, add)
	gemm6x16Go(wp, k, x[6*xs:], xs, c[6*cs:], cs, add)
}

func gemm6x16Go(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool) {
	for j := range 6 {
		xj, cj := x[j*xs:j*xs+k], c[j*cs:j*cs+16]
		var acc [16]float32
		for kk, v := range xj {
			for i, w := range wp[kk*16 : kk*16+16] {
				acc[i] += v * w
			}
		}
		for i, v := range acc {
			if add {
				cj[i] += v
			} else {
				cj[i] = v
			}
		}
	}
}

func vdQ8_0RowsGo(out []float32, w []byte, rb int, qs []int8, ax []uint8, d []float32) {
	for r := range out {
		out[r] = vdQ8_0Go(w[r*rb:], qs, ax, d)
	}
}

func vdQ4_0RowsGo(out []float32, w []byte, rb int, qs []int8, d []float32) {
	for r := range out {
		out[r] = vdQ4_0Go(w[r*rb:], qs, d)
	}
}

func vdQ4KRowsGo(out []float32, w []byte, rb int, qs []int8, d []float32, bs32 []int16) {
	for r := range out {
		out[r] = vdQ4KGo(w[r*rb:], qs, d, bs32)
	}
}

func vdQ6KRowsGo(out []float32, w []byte, rb int, qs []int8, d []float32, bs16 []int16) {
	for r := range out {
		out[r] = vdQ6KGo(w[r*rb:], qs, d, bs16)
	}
}

func bf16ToF32sGo(dst []float32, src []uint16) {
	for i, v := range src[:len(dst)] {
		dst[i] = BF16ToF32(v)
	}
}
