package kvcache

import "github.com/fastgen/fastgen/sidecar/tensor"

// KeysF32 writes the head's kept keys as float32 rows, in entry order, into
// dst (grown as needed) and returns it: the profiler's pass 2 gathers a few
// dozen scattered rows per prompt row, cheaply only from one contiguous copy.
func (c *Cache) KeysF32(layer, kvHead int, dst []float32) []float32 {
	h := c.h(layer, kvHead)
	be, d := c.pool.blockEntries, c.pool.headDim
	if cap(dst) < h.n*d {
		dst = make([]float32, h.n*d)
	}
	dst = dst[:h.n*d]
	for j0 := 0; j0 < h.n; j0 += be {
		b, m := &h.blocks[j0/be], min(be, h.n-j0)
		if c.pool.dtype == F16 {
			tensor.F16ToF32s(dst[j0*d:(j0+m)*d], b.kh[:m*d])
		} else {
			copy(dst[j0*d:(j0+m)*d], b.kf[:m*d])
		}
	}
	return dst
}
