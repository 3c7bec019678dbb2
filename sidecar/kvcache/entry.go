package kvcache

import "github.com/fastgen/fastgen/sidecar/tensor"

// KeyDot is q·K of one entry (0 ≤ i < Kept): profiling recomputes single
// attention logits from it instead of keeping whole attention rows.
func (c *Cache) KeyDot(layer, kvHead, i int, q []float32) float32 {
	h := c.h(layer, kvHead)
	be, d := c.pool.blockEntries, c.pool.headDim
	b, j := &h.blocks[i/be], i%be
	if c.pool.dtype == F16 {
		return tensor.DotF16(b.kh[j*d:(j+1)*d], q)
	}
	return tensor.Dot(b.kf[j*d:(j+1)*d], q)
}

// KeyDots is KeyDot for a list of entries: out[n] = scale · q·K[idx[n]].
func (c *Cache) KeyDots(layer, kvHead int, idx []int32, q []float32, scale float32, out []float32) {
	h := c.h(layer, kvHead)
	be, d := c.pool.blockEntries, c.pool.headDim
	if c.pool.dtype == F16 {
		for n, i := range idx {
			b, j := &h.blocks[int(i)/be], int(i)%be
			out[n] = tensor.DotF16(b.kh[j*d:(j+1)*d], q) * scale
		}
		return
	}
	for n, i := range idx {
		b, j := &h.blocks[int(i)/be], int(i)%be
		out[n] = tensor.Dot(b.kf[j*d:(j+1)*d], q) * scale
	}
}
