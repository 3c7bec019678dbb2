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
			// The cache in the commands' default element type.
			const warm = 1024
			kp := kvcache.NewPool(c.HeadDim, kvcache.DefaultDType, 0, c.Layers*c.KVHeads*warm/kvcache.DefaultBlockEntries)
			d := newDecoder(NewState(m, pool), kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}, kp, warm)
			defer d.close()
			for range warm {
				d.step(b)
			}
			b.ReportAllocs()
			b.SetBytes(m.WeightBytes())
			b.ResetTimer()
			for range b.N {
				d.step(b)
			}
		})
	}
}

// decoder decodes token 1 one step at a time, observed as a session's
// steps are, and starts over on a fresh cache, outside the timer, whenever
// the context reaches limit: decode benchmarks measure a steady context
// length instead of one that grows without end.
type decoder struct {
	st    *State
	cfg   kvcache.Config
	kp    *kvcache.Pool
	cache *kvcache.Cache
	limit int
	batch Batch
}

func newDecoder(st *State, cfg kvcache.Config, kp *kvcache.Pool, limit int) *decoder {
	return &decoder{st: st, cfg: cfg, kp: kp, cache: kvcache.New(cfg, kp), limit: limit,
		batch: Batch{Tokens: []int{1}, Flags: make([]kvcache.Flags, 1), Observe: true}}
}

func (d *decoder) step(b *testing.B) {
	if d.cache.Len() >= d.limit {
		b.StopTimer()
		d.cache.Close()
		d.cache = kvcache.New(d.cfg, d.kp)
		b.StartTimer()
	}
	if _, err := d.st.Forward(d.cache, d.batch); err != nil {
		b.Fatal(err)
	}
}

func (d *decoder) close() { d.cache.Close() }
