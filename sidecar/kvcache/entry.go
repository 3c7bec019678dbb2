package kvcache

import "github.com/fastgen/fastgen/sidecar/tensor"

// KeysF32 writes the head's kept keys as float32 rows, in entry order, into
// dst (grown as needed) and returns it: the profiler's pass 2 gathers a few
// dozen scattered rows per prompt row, cheaply only from one contiguous copy.
func (c *Cache) KeysF32(layer, kvHead int, dst []float32) []float32 {
	h := c.h(layer, kvHead)
	d := c.pool.headDim
	if cap(dst) < h.n*d {
		dst = make([]float32, h.n*d)
	}
	dst = dst[:h.n*d]
	c.rowsF32(h, 0, h.n, false, dst)
	return dst
}

// rowsF32 writes the keys (or, with values, the values) of the head's
// entries [lo, hi) as float32 rows into dst, one conversion per block run.
func (c *Cache) rowsF32(h *head, lo, hi int, values bool, dst []float32) {
	be, d := c.pool.blockEntries, c.pool.headDim
	for e := lo; e < hi; {
		b, j := &h.blocks[e/be], e%be
		m := min(be-j, hi-e)
		out := dst[(e-lo)*d : (e-lo+m)*d]
		switch {
		case c.pool.dtype == F16 && values:
			tensor.F16ToF32s(out, b.vh[j*d:(j+m)*d])
		case c.pool.dtype == F16:
			tensor.F16ToF32s(out, b.kh[j*d:(j+m)*d])
		case values:
			copy(out, b.vf[j*d:(j+m)*d])
		default:
			copy(out, b.kf[j*d:(j+m)*d])
		}
		e += m
	}
}
