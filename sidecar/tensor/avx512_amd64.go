//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// AVX-512 kernels (avx512_amd64.s): the AVX2 set with the kernels that gain
// from 32 vector registers, 512-bit lanes or VNNI replaced. Their results
// are bit-identical to the AVX2 kernels', so switching sets never changes
// a generated token (TestKernelSetsAgree).

//go:noescape
func gemm12x16AVX512(wp *float32, k int, x *float32, xs int, c *float32, cs int, add bool)

func fmaLoopAVX512(n int)

//go:noescape
func vdQ8_0RowsVNNI(out *float32, w *byte, n, rb int, qs *int8, ax *uint8, d *float32, nb int, f16 *float32)

// hasAVX512 reports whether the CPU and the OS support the AVX-512 subsets
// the kernels use: F (zmm, broadcasts), BW and VL (EVEX byte ops on ymm).
// x/sys/cpu reports them only when the OS saves the zmm and mask state.
func hasAVX512() bool {
	return cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
}

// avx512Set is the AVX2 set with the AVX-512 kernels in place (and the
// VNNI one where the CPU has VNNI).
func avx512Set() kernelSet {
	k := avx2Kernels
	k.name = "avx512"
	k.gemmRows, k.gemm = 12, gemm12x16AVX512Go
	k.fmaPeak = fmaPeakAVX512
	if cpu.X86.HasAVX512VNNI {
		k.name = "avx512vnni"
		k.vdQ8_0Rows, k.vdQ8_0 = vdQ8_0RowsVNNIGo, vdQ8_0VNNIGo
	}
	return k
}

var avx512Kernels kernelSet

func gemm12x16AVX512Go(wp []float32, k int, x []float32, xs int, c []float32, cs int, add bool) {
	_ = c[11*cs+15]
	if k == 0 {
		gemm12x16Go(wp, k, x, xs, c, cs, add)
		return
	}
	_, _ = wp[16*k-1], x[11*xs+k-1]
	gemm12x16AVX512(&wp[0], k, &x[0], xs, &c[0], cs, add)
}

// fmaPeakAVX512 runs n rounds of 16 sixteen-lane FMAs.
func fmaPeakAVX512(n int) float64 {
	fmaLoopAVX512(n)
	return float64(n) * 16 * 16 * 2
}

func vdQ8_0RowsVNNIGo(out []float32, w []byte, rb int, qs []int8, ax []uint8, d []float32) {
	if nb, ok := q8RowsReady(out, w, rb, qs, ax, d); ok {
		vdQ8_0RowsVNNI(&out[0], &w[0], len(out), rb, &qs[0], &ax[0], &d[0], nb, &f16Table[0])
	}
}

func vdQ8_0VNNIGo(w []byte, qs []int8, ax []uint8, d []float32) float32 {
	var out [1]float32
	vdQ8_0RowsVNNIGo(out[:], w, 0, qs, ax, d)
	return out[0]
}
