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
	// The commands' default cache, and float32 as the reference runs.
	for _, dt := range []kvcache.DType{kvcache.DefaultDType, kvcache.F32} {
		kp := kvcache.NewPool(c.HeadDim, dt, 0, c.Layers*c.KVHeads*512/kvcache.DefaultBlockEntries)
		cfg := kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}
		b.Run(dt.String()+"/decode", func(b *testing.B) {
			d := newDecoder(NewState(m, pool), cfg, kp, 256) // tokens per sequence, then start over
			defer d.close()
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				d.step(b)
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
