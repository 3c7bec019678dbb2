package tensor

import (
	"fmt"
	"math"
)

// Attention kernels over blocks of cached rows. A KV cache block holds n rows
// of d values back to back; scoring a query against the block, or folding
// the block's values into an output, in one call replaces n calls of Dot or
// Axpy, whose fixed cost dominates at small head dims (stories260K has 8).

// Each takes next, the rows the caller reads after these (the following
// cache block; may be nil): the vector kernels prefetch as many bytes of it
// as they read, so a walk over scattered blocks never waits for the
// hardware prefetcher to find each new one. It changes no result.

// DotRows writes out[j] = scale·(k[j*d:(j+1)*d]·q) for j < len(out).
func DotRows(out, k []float32, d int, q []float32, scale float32, next []float32) {
	checkRows("DotRows", len(out), len(k), d, len(q))
	if len(out) == 0 || d == 0 {
		clear(out)
		return
	}
	kern.dotRows(out, k, d, q, scale, next)
}

// DotRowsF16 is DotRows with k in IEEE half precision.
func DotRowsF16(out []float32, k []uint16, d int, q []float32, scale float32, next []uint16) {
	checkRows("DotRowsF16", len(out), len(k), d, len(q))
	if len(out) == 0 || d == 0 {
		clear(out)
		return
	}
	kern.dotRowsF16(out, k, d, q, scale, next)
}

// AxpyRows computes out[:d] += Σ_j p[j]·v[j*d:(j+1)*d] over j < len(p).
func AxpyRows(out, v []float32, d int, p []float32, next []float32) {
	checkRows("AxpyRows", len(p), len(v), d, len(out))
	if len(p) == 0 || d == 0 {
		return
	}
	kern.axpyRows(out, v, d, p, next)
}

// AxpyRowsF16 is AxpyRows with v in IEEE half precision.
func AxpyRowsF16(out []float32, v []uint16, d int, p []float32, next []uint16) {
	checkRows("AxpyRowsF16", len(p), len(v), d, len(out))
	if len(p) == 0 || d == 0 {
		return
	}
	kern.axpyRowsF16(out, v, d, p, next)
}

// DotRowsIdxN is DotRows over scattered rows (idx, rows d values apart in
// k) for nq queries held d values apart in q:
// out[c·len(idx)+m] = scale·(row idx[m]·query c). Each row is fetched once
// for all the queries. FastGen's profiler scores a tile of prompt rows
// against the union of their frequent sets this way: a few dozen rows
// picked from hundreds.
func DotRowsIdxN(out, k []float32, d int, idx []int32, q []float32, nq int, scale float32) {
	rows := 0
	if d > 0 {
		rows = len(k) / d
	}
	if nq < 0 || len(out) < nq*len(idx) || len(q) < nq*d {
		panic(fmt.Sprintf("tensor: DotRowsIdxN: %d queries, %d indices, out %d, queries %d of %d", nq, len(idx), len(out), len(q), d))
	}
	for _, j := range idx {
		if j < 0 || int(j) >= rows {
			panic(fmt.Sprintf("tensor: DotRowsIdxN: row %d of %d", j, rows))
		}
	}
	if nq == 0 || len(idx) == 0 {
		return
	}
	if d == 0 {
		clear(out[:nq*len(idx)])
		return
	}
	kern.dotRowsIdx(out, k, d, idx, q, nq, scale)
}

func dotRowsIdxGo(out, k []float32, d int, idx []int32, q []float32, nq int, scale float32) {
	for c := range nq {
		qc, oc := q[c*d:(c+1)*d], out[c*len(idx):]
		for m, j := range idx {
			r := k[int(j)*d:][:d]
			var s float32
			for i, v := range r {
				s += v * qc[i]
			}
			oc[m] = s * scale
		}
	}
}

// ExpSumMasked sums e^(x[m]−shift) over the m with rank[m] ≤ maxRank and
// pos[m] ≤ maxPos, split by position: hi over pos[m] ≥ split, lo below.
// rank and pos are as long as x. The profiler's pass 2 takes, for one
// prompt row, the attention mass of its frequent set (rank bound) among
// the keys it can see (position bound), inside and outside its window.
func ExpSumMasked(x []float32, rank, pos []int32, shift float32, maxRank, maxPos, split int32) (lo, hi float32) {
	if len(rank) != len(x) || len(pos) != len(x) {
		panic(fmt.Sprintf("tensor: ExpSumMasked: %d values, %d ranks, %d positions", len(x), len(rank), len(pos)))
	}
	return kern.expSumMasked(x, rank, pos, shift, maxRank, maxPos, split)
}

func expSumMaskedGo(x []float32, rank, pos []int32, shift float32, maxRank, maxPos, split int32) (lo, hi float32) {
	for m, v := range x {
		if rank[m] > maxRank || pos[m] > maxPos {
			continue
		}
		if e := expf(v - shift); pos[m] >= split {
			hi += e
		} else {
			lo += e
		}
	}
	return lo, hi
}

// SumMaskedF16 sums the half-precision x[j] over the j with rank[j] ≤
// maxRank, split by position: hi over pos[j] ≥ split, lo below. rank and
// pos are at least as long as x. The vector path reads whole vectors of
// all three, so it runs where their capacities reach the next multiple of
// 8 (the values past len(x) are read and ignored); elsewhere the tail is
// summed in Go. The profiler's pass 2 takes a prompt row's frequent-set
// mass, inside and outside its window, from the row pass 1 kept.
func SumMaskedF16(x []uint16, rank, pos []int32, maxRank, split int32) (lo, hi float32) {
	if len(rank) < len(x) || len(pos) < len(x) {
		panic(fmt.Sprintf("tensor: SumMaskedF16: %d values, %d ranks, %d positions", len(x), len(rank), len(pos)))
	}
	return kern.sumMaskedF16(x, rank, pos, maxRank, split)
}

func sumMaskedF16Go(x []uint16, rank, pos []int32, maxRank, split int32) (lo, hi float32) {
	for j, h := range x {
		if rank[j] > maxRank {
			continue
		}
		if pos[j] >= split {
			hi += f16Table[h]
		} else {
			lo += f16Table[h]
		}
	}
	return lo, hi
}

func checkRows(op string, n, rows, d, vec int) {
	if d < 0 || rows < n*d || vec < d {
		panic(fmt.Sprintf("tensor: %s: %d rows of %d need %d values, have %d (vector %d)", op, n, d, n*d, rows, vec))
	}
}

func dotRowsGo(out, k []float32, d int, q []float32, scale float32, _ []float32) {
	matVecGo(out, k, d, q, scale)
}

func dotRowsF16Go(out []float32, k []uint16, d int, q []float32, scale float32, _ []uint16) {
	matVecF16Go(out, k, d, q, scale)
}

func matVecGo(out, k []float32, d int, q []float32, scale float32) {
	q = q[:d]
	for j := range out {
		r := k[j*d : (j+1)*d]
		var s float32
		for i, v := range r {
			s += v * q[i]
		}
		out[j] = s * scale
	}
}

func matVecF16Go(out []float32, k []uint16, d int, q []float32, scale float32) {
	q = q[:d]
	for j := range out {
		r := k[j*d : (j+1)*d]
		var s float32
		for i, v := range r {
			s += f16Table[v] * q[i]
		}
		out[j] = s * scale
	}
}

func matVecBF16Go(out []float32, k []uint16, d int, q []float32, scale float32) {
	q = q[:d]
	for j := range out {
		r := k[j*d : (j+1)*d]
		var s float32
		for i, v := range r {
			s += BF16ToF32(v) * q[i]
		}
		out[j] = s * scale
	}
}

func axpyRowsGo(out, v []float32, d int, p []float32, _ []float32) {
	out = out[:d]
	for j, a := range p {
		r := v[j*d : (j+1)*d]
		for i, x := range r {
			out[i] += a * x
		}
	}
}

func axpyRowsF16Go(out []float32, v []uint16, d int, p []float32, _ []uint16) {
	out = out[:d]
	for j, a := range p {
		r := v[j*d : (j+1)*d]
		for i, x := range r {
			out[i] += a * f16Table[x]
		}
	}
}

func maxGo(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

func scaleGo(a float32, x []float32) {
	for i := range x {
		x[i] *= a
	}
}

// expSumGo replaces x[i] by e^(x[i]−mx) and returns their sum.
func expSumGo(x []float32, mx float32) float32 {
	var s float32
	for i, v := range x {
		e := expf(v - mx)
		x[i] = e
		s += e
	}
	return s
}

// expf is e^x in float32 to about 2 ulp (Cephes' expf: x = n·ln2 + r,
// |r| ≤ ln2/2, a degree-6 polynomial for e^r, then 2^n by exponent bits),
// several times cheaper than math.Exp in float64. Inputs below −87.3 give 0.
func expf(x float32) float32 {
	if x < -87.33654 {
		return 0
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	n := float32(math.Floor(float64(x*1.44269504088896341 + 0.5)))
	r := x - n*0.693359375
	r -= n * -2.12194440e-4
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	e := p*r*r + r + 1
	// 2^n for n in [-126, 127]; outside that scale in two steps.
	ni := int32(n)
	if ni > 127 {
		return e * 2 * math.Float32frombits(uint32(ni-1+127)<<23)
	}
	if ni < -126 {
		return e * math.Float32frombits(uint32(ni+126+127)<<23) * math.Float32frombits(1<<23)
	}
	return e * math.Float32frombits(uint32(ni+127)<<23)
}

// Panel products: the MatMul micro-kernel, exported for attention over a
// whole prompt (kvcache's AttendPrefill), where a head's keys and values
// play the weights' part.

// PanelRows is the number of rows Gemm6x16 multiplies at once.
const PanelRows = mmGroup

// PackPanel writes 16 row-major rows (ss apart) of k values as the k-major
// panel Gemm6x16 takes: panel[kk*16+i] = src[i*ss+kk].
func PackPanel(panel, src []float32, ss, k int) {
	if k < 0 || len(panel) < 16*k || (k > 0 && len(src) < 15*ss+k) {
		panic(fmt.Sprintf("tensor: PackPanel: %d values of 16 rows %d apart from %d into %d", k, ss, len(src), len(panel)))
	}
	kern.packPanel(panel, src, ss, k)
}

// Gemm6x16 writes six rows of products into c: c[j*cs+i] = Σ_kk
// x[j*xs+kk]·panel[kk*16+i] for j < 6, i < 16, kk < k, or adds them to c
// with add.
func Gemm6x16(panel []float32, k int, x []float32, xs int, c []float32, cs int, add bool) {
	if k < 0 || len(panel) < 16*k || (k > 0 && len(x) < 5*xs+k) || len(c) < 5*cs+16 {
		panic(fmt.Sprintf("tensor: Gemm6x16: k %d, panel %d, x %d (stride %d), c %d (stride %d)", k, len(panel), len(x), xs, len(c), cs))
	}
	kern.gemm6x16(panel, k, x, xs, c, cs, add)
}
