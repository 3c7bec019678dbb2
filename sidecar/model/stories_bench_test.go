package model

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// BenchmarkStories measures the real stories260K checkpoint (needs
// FASTGEN_TEST_MODELS): a tiny model whose speed is all per-op overhead,
// the case llama.cpp reaches ~12k decode tok/s on two threads.
func BenchmarkStories(b *testing.B) {
	dir := modelsDir(b)
	m, err := Load(filepath.Join(dir, "stories260K.gguf"), LoadOptions{Ctx: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	pool := tensor.NewPool(2)
	defer pool.Close()
	c := m.Config
	// f16 is the product's default cache; f32 the reference runs'.
	for _, dt := range []kvcache.DType{kvcache.F16, kvcache.F32} {
		kp := kvcache.NewPool(c.HeadDim, dt, 0, c.Layers*c.KVHeads*512/kvcache.DefaultBlockEntries)
		cfg := kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}
		tok := []int{1}
		flags := make([]kvcache.Flags, 1)
		b.Run(dt.String()+"/decode", func(b *testing.B) {
			st := NewState(m, pool)
			cache := kvcache.New(cfg, kp)
			defer func() { cache.Close() }()
			const steps = 256 // tokens per sequence, then start over
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				if cache.Len() >= steps {
					b.StopTimer()
					cache.Close()
					cache = kvcache.New(cfg, kp)
					b.StartTimer()
				}
				if _, err := st.Forward(cache, Batch{Tokens: tok, Flags: flags, Observe: true}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
			b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "tok/cpu-s")
		})
		b.Run(dt.String()+"/prefill256", func(b *testing.B) {
			st := NewState(m, pool)
			const n = 256
			toks := make([]int, n)
			for i := range toks {
				toks[i] = 1 + i%(c.Vocab-1)
			}
			fl := make([]kvcache.Flags, n)
			cpu0 := cpuTime()
			for b.Loop() {
				cache := kvcache.New(cfg, kp)
				if _, err := st.Forward(cache, Batch{Tokens: toks, Flags: fl}); err != nil {
					b.Fatal(err)
				}
				cache.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
			b.ReportMetric(float64(n*b.N)/(cpuTime()-cpu0).Seconds(), "tok/cpu-s")
		})
	}
}

// cpuTime is the process's user+system time: on a machine shared with
// other jobs, throughput per CPU-second is far steadier than per wall
// second (it ignores time spent waiting to be scheduled, while still
// counting spinning and overhead).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
