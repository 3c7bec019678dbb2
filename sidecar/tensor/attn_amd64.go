//go:build amd64 && !purego

package tensor

// Row-block attention kernels (attn_amd64.s) need d a multiple of 8; other
// head dims take the portable loops.

//go:noescape
func dotRowsAVX2(out *float32, k *float32, n, d int, q *float32, scale float32)

//go:noescape
func dotRowsF16AVX2(out *float32, k *uint16, n, d int, q *float32, scale float32)

//go:noescape
func axpyRowsAVX2(out *float32, v *float32, n, d int, p *float32)

//go:noescape
func axpyRowsF16AVX2(out *float32, v *uint16, n, d int, p *float32)

func dotRowsAVX2Go(out, k []float32, d int, q []float32, scale float32) {
	n := len(out)
	if d%8 != 0 {
		dotRowsGo(out, k, d, q, scale)
		return
	}
	_, _ = k[n*d-1], q[d-1]
	dotRowsAVX2(&out[0], &k[0], n, d, &q[0], scale)
}

func dotRowsF16AVX2Go(out []float32, k []uint16, d int, q []float32, scale float32) {
	n := len(out)
	if d%8 != 0 {
		dotRowsF16Go(out, k, d, q, scale)
		return
	}
	_, _ = k[n*d-1], q[d-1]
	dotRowsF16AVX2(&out[0], &k[0], n, d, &q[0], scale)
}

func axpyRowsAVX2Go(out, v []float32, d int, p []float32) {
	n := len(p)
	if d%8 != 0 {
		axpyRowsGo(out, v, d, p)
		return
	}
	_, _ = v[n*d-1], out[d-1]
	axpyRowsAVX2(&out[0], &v[0], n, d, &p[0])
}

func axpyRowsF16AVX2Go(out []float32, v []uint16, d int, p []float32) {
	n := len(p)
	if d%8 != 0 {
		axpyRowsF16Go(out, v, d, p)
		return
	}
	_, _ = v[n*d-1], out[d-1]
	axpyRowsF16AVX2(&out[0], &v[0], n, d, &p[0])
}
