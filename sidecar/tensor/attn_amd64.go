//go:build amd64 && !purego

package tensor

import "math"

// Row-block attention kernels (attn_amd64.s). The vector loops cover whole
// vectors; the wrappers finish rows whose length is not a multiple of 8.

// The attention kernels also prefetch next, the block the caller reads
// after this one.
//
//go:noescape
func dotRowsAVX2(out *float32, k *float32, n, d, stride int, q *float32, scale float32, next *float32)

//go:noescape
func dotRowsF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32, scale float32, next *uint16)

//go:noescape
func axpyRowsAVX2(out *float32, v *float32, n, d int, p *float32, next *float32)

//go:noescape
func axpyRowsF16AVX2(out *float32, v *uint16, n, d int, p *float32, next *uint16)

// nextOr is the prefetch target: next's start, or k's when there is none
// (lines the kernel reads anyway).
func nextOr[T any](next, k []T) *T {
	if len(next) > 0 {
		return &next[0]
	}
	return &k[0]
}

func dotRowsAVX2Go(out, k []float32, d int, q []float32, scale float32, next []float32) {
	n := len(out)
	_, _ = k[n*d-1], q[d-1]
	v := d &^ 7
	dotRowsAVX2(&out[0], &k[0], n, v, d, &q[0], scale, nextOr(next, k))
	if v < d { // head dims that are not whole vectors, e.g. 172
		for j := range out {
			var s float32
			for i := v; i < d; i++ {
				s += k[j*d+i] * q[i]
			}
			out[j] += s * scale
		}
	}
}

func dotRowsF16AVX2Go(out []float32, k []uint16, d int, q []float32, scale float32, next []uint16) {
	n := len(out)
	_, _ = k[n*d-1], q[d-1]
	v := d &^ 7
	dotRowsF16AVX2(&out[0], &k[0], n, v, d, &q[0], scale, nextOr(next, k))
	if v < d {
		for j := range out {
			var s float32
			for i := v; i < d; i++ {
				s += f16Table[k[j*d+i]] * q[i]
			}
			out[j] += s * scale
		}
	}
}

func axpyRowsAVX2Go(out, v []float32, d int, p []float32, next []float32) {
	n := len(p)
	if d%8 != 0 {
		axpyRowsGo(out, v, d, p, next)
		return
	}
	_, _ = v[n*d-1], out[d-1]
	axpyRowsAVX2(&out[0], &v[0], n, d, &p[0], nextOr(next, v))
}

func axpyRowsF16AVX2Go(out []float32, v []uint16, d int, p []float32, next []uint16) {
	n := len(p)
	if d%8 != 0 {
		axpyRowsF16Go(out, v, d, p, next)
		return
	}
	_, _ = v[n*d-1], out[d-1]
	axpyRowsF16AVX2(&out[0], &v[0], n, d, &p[0], nextOr(next, v))
}

//go:noescape
func dotRowsIdxAVX2(out *float32, k *float32, idx *int32, n, d, stride int, q *float32, nq, ostride int, scale float32)

// idxChunk rows (8 KiB at head dim 64) are scored against every query
// before the next ones are fetched: they stay in L1 meanwhile.
const idxChunk = 32

func dotRowsIdxAVX2Go(out, k []float32, d int, idx []int32, q []float32, nq int, scale float32) {
	n, v := len(idx), d&^7
	if n < 4 || v == 0 {
		dotRowsIdxGo(out, k, d, idx, q, nq, scale)
		return
	}
	_, _ = out[nq*n-1], q[nq*d-1]
	for c0 := 0; c0 < n&^3; c0 += idxChunk {
		c1 := min(c0+idxChunk, n&^3)
		dotRowsIdxAVX2(&out[c0], &k[0], &idx[c0], c1-c0, v, d, &q[0], nq, n, scale)
	}
	for c := range nq {
		qc, oc := q[c*d:(c+1)*d], out[c*n:(c+1)*n]
		if v < d { // head dims that are not whole vectors
			for m, j := range idx[:n&^3] {
				r := k[int(j)*d:][:d]
				var s float32
				for i := v; i < d; i++ {
					s += r[i] * qc[i]
				}
				oc[m] += s * scale
			}
		}
		dotRowsIdxGo(oc[n&^3:], k, d, idx[n&^3:], qc, 1, scale)
	}
}

//go:noescape
func expSumMaskedAVX2(x *float32, rank, pos *int32, n int, shift float32, maxRank, maxPos, split1 int32) (lo, hi float32)

func expSumMaskedAVX2Go(x []float32, rank, pos []int32, shift float32, maxRank, maxPos, split int32) (lo, hi float32) {
	v := len(x) &^ 7
	if v > 0 && split > math.MinInt32 {
		lo, hi = expSumMaskedAVX2(&x[0], &rank[0], &pos[0], v, shift, maxRank, maxPos, split-1)
	} else {
		v = 0
	}
	if v == len(x) { // the profiler pads to whole vectors: no tail
		return lo, hi
	}
	l, h := expSumMaskedGo(x[v:], rank[v:], pos[v:], shift, maxRank, maxPos, split)
	return lo + l, hi + h
}

//go:noescape
func sumMaskedF16AVX2(x *uint16, rank, pos *int32, n int, maxRank, split1 int32) (lo, hi float32)

func sumMaskedF16AVX2Go(x []uint16, rank, pos []int32, maxRank, split int32) (lo, hi float32) {
	n := len(x)
	if n == 0 || n > math.MaxInt32 || split == math.MinInt32 {
		return sumMaskedF16Go(x, rank, pos, maxRank, split)
	}
	if w := (n + 7) &^ 7; cap(x) >= w && cap(rank) >= w && cap(pos) >= w {
		return sumMaskedF16AVX2(&x[0], &rank[0], &pos[0], n, maxRank, split-1)
	}
	v := n &^ 7
	if v > 0 {
		lo, hi = sumMaskedF16AVX2(&x[0], &rank[0], &pos[0], v, maxRank, split-1)
	}
	l, h := sumMaskedF16Go(x[v:], rank[v:], pos[v:], maxRank, split)
	return lo + l, hi + h
}

//go:noescape
func mulScaleAVX2(out, x, w *float32, n int, s float32)

func mulScaleAVX2Go(out, x, w []float32, s float32) {
	v := len(x) &^ 7
	if v > 0 {
		_, _ = out[v-1], w[v-1]
		mulScaleAVX2(&out[0], &x[0], &w[0], v, s)
	}
	mulScaleGo(out[v:], x[v:], w[v:], s)
}

//go:noescape
func swigluAVX2(out, gate, up *float32, n int)

func swigluAVX2Go(out, gate, up []float32) {
	v := len(gate) &^ 7
	if v > 0 {
		_, _ = out[v-1], up[v-1]
		swigluAVX2(&out[0], &gate[0], &up[0], v)
	}
	swigluGo(out[v:], gate[v:], up[v:])
}

//go:noescape
func expSumAVX2(x *float32, n int, mx float32) float32

func expSumAVX2Go(x []float32, mx float32) float32 {
	n := len(x)
	v := n &^ 7
	var s float32
	if v > 0 {
		s = expSumAVX2(&x[0], v, mx)
	}
	for i := v; i < n; i++ {
		e := expf(x[i] - mx)
		x[i] = e
		s += e
	}
	return s
}

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func scaleAVX2(a float32, x *float32, n int)

func maxAVX2Go(x []float32) float32 {
	v := len(x) &^ 7
	if v == 0 {
		return maxGo(x)
	}
	m := maxAVX2(&x[0], v)
	for _, e := range x[v:] {
		m = max(m, e)
	}
	return m
}

func scaleAVX2Go(a float32, x []float32) {
	v := len(x) &^ 7
	if v > 0 {
		scaleAVX2(a, &x[0], v)
	}
	for i := v; i < len(x); i++ {
		x[i] *= a
	}
}
