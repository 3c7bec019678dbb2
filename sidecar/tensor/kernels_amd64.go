//go:build amd64 && !purego

package tensor

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// Assembly kernels (kernels_amd64.s). They take raw pointers and element or
// block counts; the wrappers below check lengths, so the assembly can trust
// them, and finish float tails that are not whole vectors.

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func sumAVX2(x *float32, n int) float32

//go:noescape
func axpyAVX2(a float32, x, y *float32, n int)

//go:noescape
func dotF16AVX2(a *uint16, b *float32, n int) float32

//go:noescape
func matVecF32AVX2(out *float32, k *float32, n, d, stride int, q *float32)

//go:noescape
func matVecF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32)

//go:noescape
func matVecBF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32)

//go:noescape
func dotBF16AVX2(a *uint16, b *float32, n int) float32

//go:noescape
func axpyF16AVX2(a float32, x *uint16, y *float32, n int)

//go:noescape
func f16ToF32sAVX2(dst *float32, src *uint16, n int)

//go:noescape
func f32ToF16sAVX2(dst *uint16, src *float32, n int)

//go:noescape
func vdQ8_0RowsAVX2(out *float32, w *byte, n, rb int, qs *int8, ax *uint8, d *float32, nb int, f16 *float32)

//go:noescape
func vdQ4_0RowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, nb int)

//go:noescape
func vdQ4KRowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, bs32 *int16, nb int)

//go:noescape
func vdQ6KRowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, bs16 *int16, nb int)

//go:noescape
func dequantQ4KAVX2(dst *float32, src *byte, nb int)

//go:noescape
func dequantQ6KAVX2(dst *float32, src *byte, nb int)

//go:noescape
func dequantQ4_0AVX2(dst *float32, src *byte, nb int)

//go:noescape
func bf16ToF32sAVX2(dst *float32, src *uint16, n int)

//go:noescape
func packPanelAVX2(panel *float32, src *float32, ss int, k8 int)

//go:noescape
func gemm6x16AVX2(wp *float32, k int, x *float32, xs int, c *float32, cs int, add bool)

//go:noescape
func dequantQ8_0AVX2(dst *float32, src *byte, nb int)

func fmaLoopAVX2(n int)

//go:noescape
func quantActAVX2(x *float32, qs *int8, ax *uint8, d *float32, nb, bs int)

// init picks the fastest set the CPU supports and lists every one of them
// (kernelSets) for the tests.
func init() {
	if !(cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C) {
		return
	}
	kernelSets = append(kernelSets, &avx2Kernels)
	best := &avx2Kernels
	if hasAVX512() {
		avx512Kernels = avx512Set()
		kernelSets = append(kernelSets, &avx512Kernels)
		best = &avx512Kernels
	}
	bestKernels = *best
	kern = &bestKernels
}

var avx2Kernels = kernelSet{
	name:       "avx2",
	dot:        dotAVX2Go,
	axpy:       axpyAVX2Go,
	dotF16:     dotF16AVX2Go,
	axpyF16:    axpyF16AVX2Go,
	f16ToF32s:  f16ToF32sAVX2Go,
	f32ToF16s:  f32ToF16sAVX2Go,
	sum:        sumAVX2Go,
	vdF32:      vdF32AVX2,
	vdF16:      vdF16AVX2,
	vdBF16:     vdBF16AVX2,
	vdQ8_0:     vdQ8_0AVX2Go,
	vdQ8_0Rows: vdQ8_0RowsAVX2Go,
	vdQ4_0Rows: vdQ4_0RowsAVX2Go,
	vdQ4_0:     vdQ4_0AVX2Go,
	vdQ4K:      vdQ4KAVX2Go,
	vdQ4KRows:  vdQ4KRowsAVX2Go,
	vdQ6KRows:  vdQ6KRowsAVX2Go,
	vdQ6K:      vdQ6KAVX2Go,
	gemm6x16:   gemm6x16AVX2Go,
	gemmRows:   6,
	gemm:       gemm6x16AVX2Go,
	packPanel:  packPanelAVX2Go,
	deqBlocks:  dequantBlocksAVX2,
	bf16ToF32s: bf16ToF32sAVX2Go,
	quantAct:   quantActAVX2Go,
	fmaPeak:    fmaPeakAVX2,

	dotRows:      dotRowsAVX2Go,
	dotRowsF16:   dotRowsF16AVX2Go,
	matVecF32:    matVecF32AVX2Go,
	matVecF16:    matVecF16AVX2Go,
	matVecBF16:   matVecBF16AVX2Go,
	axpyRows:     axpyRowsAVX2Go,
	dotRowsIdx:   dotRowsIdxAVX2Go,
	max:          maxAVX2Go,
	scale:        scaleAVX2Go,
	expSum:       expSumAVX2Go,
	expSumMasked: expSumMaskedAVX2Go,
	sumMaskedF16: sumMaskedF16AVX2Go,
	swiglu:       swigluAVX2Go,
	mulScale:     mulScaleAVX2Go,
	axpyRowsF16:  axpyRowsF16AVX2Go,
}

func dotAVX2Go(a, b []float32) float32 {
	n := len(a)
	if n == 0 {
		return 0
	}
	b = b[:n]
	v := n &^ 7
	var s float32
	if v > 0 {
		s = dotAVX2(&a[0], &b[0], v)
	}
	for i := v; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func sumAVX2Go(x []float32) float32 {
	n := len(x)
	v := n &^ 7
	var s float32
	if v > 0 {
		s = sumAVX2(&x[0], v)
	}
	for i := v; i < n; i++ {
		s += x[i]
	}
	return s
}

func axpyAVX2Go(a float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	v := n &^ 7
	if v > 0 {
		axpyAVX2(a, &x[0], &y[0], v)
	}
	for i := v; i < n; i++ {
		y[i] += a * x[i]
	}
}

func dotF16AVX2Go(a []uint16, b []float32) float32 {
	n := len(a)
	b = b[:n]
	v := n &^ 7
	var s float32
	if v > 0 {
		s = dotF16AVX2(&a[0], &b[0], v)
	}
	for i := v; i < n; i++ {
		s += f16Table[a[i]] * b[i]
	}
	return s
}

func axpyF16AVX2Go(a float32, x []uint16, y []float32) {
	n := len(x)
	y = y[:n]
	v := n &^ 7
	if v > 0 {
		axpyF16AVX2(a, &x[0], &y[0], v)
	}
	for i := v; i < n; i++ {
		y[i] += a * f16Table[x[i]]
	}
}

func f16ToF32sAVX2Go(dst []float32, src []uint16) {
	n := len(src)
	dst = dst[:n]
	v := n &^ 7
	if v > 0 {
		f16ToF32sAVX2(&dst[0], &src[0], v)
	}
	for i := v; i < n; i++ {
		dst[i] = f16Table[src[i]]
	}
}

func f32ToF16sAVX2Go(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	v := n &^ 7
	if v > 0 {
		f32ToF16sAVX2(&dst[0], &src[0], v)
	}
	if v < n {
		// The tail through one vector on the stack: the scalar
		// conversion cost as much as the vectors for the profiler's
		// rows of a few hundred values.
		var in [8]float32
		var out [8]uint16
		copy(in[:], src[v:])
		f32ToF16sAVX2(&out[0], &in[0], 8)
		copy(dst[v:], out[:n-v])
	}
}

// Weight rows arrive as bytes; reinterpreting them as float32/uint16 is
// safe on amd64, which allows unaligned vector loads.

// Rows shorter than matVecShortRow values go through DotRows' eight-row
// groups, which share each q load and one reduction tree among eight rows:
// for rows that short (tiny models, all in cache) the one-row stream
// kernel's per-row reduction is what costs. stories260K decode (64- and
// 172-wide rows): 1.41 G instructions on the stream kernel vs 1.06 G
// (callgrind, 2000 tokens).
const matVecShortRow = 256

func matVecF32AVX2Go(out, k []float32, d int, q []float32, scale float32) {
	if d < matVecShortRow {
		dotRowsAVX2Go(out, k, d, q, scale, nil)
		return
	}
	matVecRows(out, k, d, q, scale, matVecF32AVX2, func(v float32) float32 { return v })
}

func matVecF16AVX2Go(out []float32, k []uint16, d int, q []float32, scale float32) {
	if d < matVecShortRow {
		dotRowsF16AVX2Go(out, k, d, q, scale, nil)
		return
	}
	matVecRows(out, k, d, q, scale, matVecF16AVX2, func(v uint16) float32 { return f16Table[v] })
}

func matVecBF16AVX2Go(out []float32, k []uint16, d int, q []float32, scale float32) {
	matVecRows(out, k, d, q, scale, matVecBF16AVX2, BF16ToF32)
}

// matVecRows gives each row of k (d values each, laid end to end) exactly
// the dot...AVX2Go result on it, times scale: the kernel sums the whole
// vectors, then the rest is added one value at a time, in the same order.
func matVecRows[T float32 | uint16](out []float32, k []T, d int, q []float32, scale float32,
	kernel func(out *float32, k *T, n, d, stride int, q *float32), value func(T) float32) {
	n := len(out)
	if n == 0 || d == 0 {
		clear(out)
		return
	}
	_, _ = k[n*d-1], q[d-1]
	v := d &^ 7
	if v > 0 {
		kernel(&out[0], &k[0], n, v, d*int(unsafe.Sizeof(k[0])), &q[0])
	} else {
		clear(out)
	}
	if v == d && scale == 1 {
		return // MatVec's case: whole vectors, no scale, nothing to add
	}
	for j := range out {
		s := out[j]
		for i := v; i < d; i++ {
			s += value(k[j*d+i]) * q[i]
		}
		out[j] = s * scale
	}
}

func vdF32AVX2(w []byte, x []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	w = w[:4*len(x)]
	return dotAVX2Go(unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), len(x)), x)
}

func vdF16AVX2(w []byte, x []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	w = w[:2*len(x)]
	return dotF16AVX2Go(unsafe.Slice((*uint16)(unsafe.Pointer(&w[0])), len(x)), x)
}

func dotBF16AVX2Go(a []uint16, b []float32) float32 {
	n := len(a)
	b = b[:n]
	v := n &^ 7
	var s float32
	if v > 0 {
		s = dotBF16AVX2(&a[0], &b[0], v)
	}
	for i := v; i < n; i++ {
		s += BF16ToF32(a[i]) * b[i]
	}
	return s
}

func vdBF16AVX2(w []byte, x []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	w = w[:2*len(x)]
	return dotBF16AVX2Go(unsafe.Slice((*uint16)(unsafe.Pointer(&w[0])), len(x)), x)
}

func vdQ8_0AVX2Go(w []byte, qs []int8, ax []uint8, d []float32) float32 {
	var out [1]float32
	vdQ8_0RowsAVX2Go(out[:], w, 0, qs, ax, d)
	return out[0]
}

// fmaPeakAVX2 runs n rounds of 12 eight-lane FMAs.
func fmaPeakAVX2(n int) float64 {
	fmaLoopAVX2(n)
	return float64(n) * 12 * 8 * 2
}

// quantActAVX2Go is quantAct (dispatch.go) in whole blocks of 32 or more.
func quantActAVX2Go(x []float32, qs []int8, ax []uint8, d []float32, bs int) {
	nb := len(x) / bs
	if nb == 0 || bs%32 != 0 {
		quantActGo(x, qs, ax, d, bs)
		return
	}
	_, _, _ = qs[nb*bs-1], ax[nb*bs-1], d[nb-1]
	quantActAVX2(&x[0], &qs[0], &ax[0], &d[0], nb, bs)
}

// quantRowsReady reports whether a quantized rows kernel has work: out is
// cleared when the rows hold no blocks, and w must hold every row's blocks
// (this bounds check is what keeps the assembly inside w).
func quantRowsReady(out []float32, w []byte, rb, nb, blockBytes int) bool {
	if len(out) == 0 {
		return false
	}
	if nb == 0 {
		clear(out)
		return false
	}
	_ = w[(len(out)-1)*rb+nb*blockBytes-1]
	return true
}

// vdQ8_0RowsAVX2Go dots len(out) Q8_0 rows (rb bytes apart), each result
// bit-identical to vdQ8_0AVX2Go on that row.
func vdQ8_0RowsAVX2Go(out []float32, w []byte, rb int, qs []int8, ax []uint8, d []float32) {
	if nb, ok := q8RowsReady(out, w, rb, qs, ax, d); ok {
		vdQ8_0RowsAVX2(&out[0], &w[0], len(out), rb, &qs[0], &ax[0], &d[0], nb, &f16Table[0])
	}
}

// q8RowsReady checks the lengths for a Q8_0 rows kernel (AVX2 or VNNI), so
// the assembly can trust them, and returns the blocks per row. The kernels
// are called directly, not through a func value: an indirect call would
// make every slice escape, and a caller's one-row buffer with them.
func q8RowsReady(out []float32, w []byte, rb int, qs []int8, ax []uint8, d []float32) (nb int, ok bool) {
	nb = len(d)
	if !quantRowsReady(out, w, rb, nb, q8_0Bytes) {
		return 0, false
	}
	_, _ = qs[nb*qk8_0-1], ax[nb*qk8_0-1]
	return nb, true
}

func vdQ4_0AVX2Go(w []byte, qs []int8, d []float32) float32 {
	var out [1]float32
	vdQ4_0RowsAVX2Go(out[:], w, 0, qs, d)
	return out[0]
}

// vdQ4_0RowsAVX2Go dots len(out) Q4_0 rows (rb bytes apart).
func vdQ4_0RowsAVX2Go(out []float32, w []byte, rb int, qs []int8, d []float32) {
	nb, n := len(d), len(out)
	if !quantRowsReady(out, w, rb, nb, q4_0Bytes) {
		return
	}
	_ = qs[nb*qk4_0-1]
	vdQ4_0RowsAVX2(&out[0], &w[0], n, rb, &qs[0], &d[0], nb)
}

func vdQ4KAVX2Go(w []byte, qs []int8, d []float32, bs32 []int16) float32 {
	var out [1]float32
	vdQ4KRowsAVX2Go(out[:], w, 0, qs, d, bs32)
	return out[0]
}

// vdQ4KRowsAVX2Go dots len(out) Q4_K rows (rb bytes apart).
func vdQ4KRowsAVX2Go(out []float32, w []byte, rb int, qs []int8, d []float32, bs32 []int16) {
	nb, n := len(d), len(out)
	if !quantRowsReady(out, w, rb, nb, q4KBytes) {
		return
	}
	_, _ = qs[nb*qkK-1], bs32[nb*8-1]
	vdQ4KRowsAVX2(&out[0], &w[0], n, rb, &qs[0], &d[0], &bs32[0], nb)
}

func vdQ6KAVX2Go(w []byte, qs []int8, d []float32, bs16 []int16) float32 {
	var out [1]float32
	vdQ6KRowsAVX2Go(out[:], w, 0, qs, d, bs16)
	return out[0]
}

// vdQ6KRowsAVX2Go dots len(out) Q6_K rows (rb bytes apart).
func vdQ6KRowsAVX2Go(out []float32, w []byte, rb int, qs []int8, d []float32, bs16 []int16) {
	nb, n := len(d), len(out)
	if !quantRowsReady(out, w, rb, nb, q6KBytes) {
		return
	}
	_, _ = qs[nb*qkK-1], bs16[nb*16-1]
	vdQ6KRowsAVX2(&out[0], &w[0], n, rb, &qs[0], &d[0], &bs16[0], nb)
}

// packPanelAVX2Go is packPanel: whole groups of 8 columns in assembly, the
// rest in Go.
func packPanelAVX2Go(panel, src []float32, ss, k int) {
	k8 := k / 8
	if k8 > 0 {
		_, _ = panel[16*k-1], src[15*ss+k-1]
		packPanelAVX2(&panel[0], &src[0], ss, k8)
	}
	packPanelCols(panel, src, ss, 8*k8, k)
}

func gemm6x16AVX2Go(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool) {
	_ = c[5*cs+15]
	if k == 0 {
		gemm6x16Go(wp, k, x, xs, c, cs, add)
		return
	}
	_, _ = wp[16*k-1], x[5*xs+k-1]
	gemm6x16AVX2(&wp[0], k, &x[0], xs, &c[0], cs, add)
}

func bf16ToF32sAVX2Go(dst []float32, src []uint16) {
	n := len(dst) &^ 7
	if n > 0 {
		_ = src[n-1]
		bf16ToF32sAVX2(&dst[0], &src[0], n)
	}
	bf16ToF32sGo(dst[n:], src[n:])
}

// dequantBlocksAVX2 is deqBlocks for the four block types with a vector
// conversion; each assembly routine takes whole blocks.
func dequantBlocksAVX2(t DType, dst []float32, src []byte) bool {
	var conv func(dst *float32, src *byte, nb int)
	switch t {
	case Q8_0:
		conv = dequantQ8_0AVX2
	case Q4_0:
		conv = dequantQ4_0AVX2
	case Q4_K:
		conv = dequantQ4KAVX2
	case Q6_K:
		conv = dequantQ6KAVX2
	default:
		return false
	}
	nb := len(dst) / t.BlockSize()
	if nb > 0 {
		_ = src[t.RowBytes(nb*t.BlockSize())-1]
		conv(&dst[0], &src[0], nb)
	}
	return true
}
