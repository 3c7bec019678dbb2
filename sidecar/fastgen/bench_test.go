package fastgen

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// BenchmarkProfile profiles one layer of the 110M shape's prompt (12 KV
// heads of 64, 512 tokens, f16 cache) on one thread, split into its two
// passes: "rows" is pass 1 over every (row, head) as the forward pass hands
// them out, "layer" is Layer's merge, pass 2 and choice. Twelve times
// either, divided by the cores, is the bench command's profile_ms.
func BenchmarkProfile(b *testing.B) {
	const nKV, d, n = 12, 64, 512
	scale := float32(1 / math.Sqrt(d))
	pool := kvcache.NewPool(d, kvcache.F16, 0, 0)
	c := kvcache.New(kvcache.Config{Layers: 1, KVHeads: nKV}, pool)
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	vec := func(m int) []float32 {
		x := make([]float32, m)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	for i := range n {
		var f kvcache.Flags
		if i == 0 {
			f = kvcache.FlagSpecial
		} else if r.IntN(20) == 0 {
			f = kvcache.FlagPunct
		}
		c.AppendAt(0, i, f, vec(nKV*d), vec(nKV*d))
	}
	c.Advance(n)
	q := vec(n * nKV * d)
	probs := make([][]float32, nKV*n)
	lse := make([]float32, nKV*n)
	for i := range n {
		for kh := range nKV {
			p := make([]float32, i+1)
			c.Probs(0, kh, q[(i*nKV+kh)*d:][:d], 1, i+1, scale, p, lse[i*nKV+kh:][:1])
			probs[i*nKV+kh] = p
		}
	}
	rows := func(p *Profiler) {
		p.Begin(0, 1, c, scale)
		for i := range n {
			for kh := range nKV {
				p.Row(0, 0, kh, i, probs[i*nKV+kh], lse[i*nKV+kh:][:1], 1, i+1)
			}
		}
	}
	tp := tensor.NewPool(1)
	defer tp.Close()
	// rows: pass 1, keeping the rows; rows-unkept: without. One profiler
	// serves every iteration, as one serves every layer of a prefill.
	for _, limit := range []int{maxStoreBytes, 0} {
		name := "rows"
		if limit == 0 {
			name = "rows-unkept"
		}
		p := NewProfiler(Defaults(), 1, nKV, nKV, d, n, 0, nil)
		p.storeLimit = limit
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				rows(p)
			}
		})
	}
	// layer: pass 2 from the rows pass 1 kept; recompute: from the
	// queries, as for a layer too large to keep.
	for _, limit := range []int{maxStoreBytes, 0} {
		name := "layer"
		if limit == 0 {
			name = "layer-recompute"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				p := NewProfiler(Defaults(), 1, nKV, nKV, d, n, 0, nil)
				p.storeLimit = limit
				rows(p)
				b.StartTimer()
				p.Layer(0, q, nKV*d, c, scale, tp)
			}
		})
	}
}
