package model

import (
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// BenchmarkDecode measures one decoded token on a small synthetic model and
// reports allocations: the decode path must allocate nothing per token.
func BenchmarkDecode(b *testing.B) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.Q8_0} {
		b.Run(dt.String(), func(b *testing.B) {
			shape := Shape{Name: "bench", Dim: 256, Hidden: 768, Layers: 4, Heads: 8, KVHeads: 4, Vocab: 512, Ctx: 4096}
			path := filepath.Join(b.TempDir(), "m.gguf")
			if err := Synthesize(path, shape, dt, 1); err != nil {
				b.Fatal(err)
			}
			m, err := Load(path, LoadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			pool := tensor.NewPool(0)
			defer pool.Close()
			c := m.Config
			// A pool whose reserve holds a warm-up run's blocks: the steady
			// state of a server, where finished sessions leave blocks behind.
			const warm = 1024
			kp := kvcache.NewPool(c.HeadDim, kvcache.F32, 0, c.Layers*c.KVHeads*warm/kvcache.DefaultBlockEntries)
			cfg := kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}
			cache := kvcache.New(cfg, kp)
			st := NewState(m, pool)
			tok := []int{1}
			flags := make([]kvcache.Flags, 1)
			for i := 0; i < warm; i++ {
				if _, err := st.Forward(cache, Batch{Tokens: tok, Flags: flags, Observe: true}); err != nil {
					b.Fatal(err)
				}
			}
			cache.Close()
			cache = kvcache.New(cfg, kp)
			defer func() { cache.Close() }()
			b.ReportAllocs()
			b.SetBytes(m.WeightBytes())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if cache.Len() >= warm {
					b.StopTimer()
					cache.Close()
					cache = kvcache.New(cfg, kp)
					b.StartTimer()
				}
				if _, err := st.Forward(cache, Batch{Tokens: tok, Flags: flags, Observe: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
