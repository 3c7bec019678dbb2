//go:build cuda

package cuda

// The GPU checks (task gpu-check). CI compiles this file without running it
// (go test -exec /bin/true); cu's init exits without a device.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

func newBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func synth(t testing.TB, s model.Shape, dt tensor.DType) *model.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := model.Synthesize(path, s, dt, 1); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(path, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// pair runs the same steps on the CPU and the GPU, each with its own cache.
type pair struct {
	cpu, gpu   model.Runner
	cCPU, cGPU *kvcache.Cache
	poolGPU    *kvcache.Pool
	vocab      int
}

func newPair(t testing.TB, b *Backend, m *model.Model, dt kvcache.DType) *pair {
	c := m.Config
	cfg := kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}
	g, err := b.NewRunner(m)
	if err != nil {
		t.Fatal(err)
	}
	pg := kvcache.NewPool(c.HeadDim, dt, 0, 0)
	return &pair{
		cpu: model.NewState(m, tensor.NewPool(0)), gpu: g,
		cCPU: kvcache.New(cfg, kvcache.NewPool(c.HeadDim, dt, 0, 0)), cGPU: kvcache.New(cfg, pg), poolGPU: pg,
		vocab: c.Vocab,
	}
}

func (p *pair) step(t testing.TB, bt model.Batch) (cpu, gpu []float32) {
	t.Helper()
	a, err := p.cpu.Forward(p.cCPU, bt)
	if err != nil {
		t.Fatal(err)
	}
	cpu = append([]float32(nil), a...)
	g, err := p.gpu.Forward(p.cGPU, bt)
	if err != nil {
		t.Fatal(err)
	}
	return cpu, g
}

func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(a[i])))
	}
	return num / math.Max(den, 1e-12)
}

// TestGPUParityLogits: logits within 1e-3 relative of the CPU's at each of
// 64 positions (a 32-token prefill, then 32 decode steps), F32 and F16
// weights and caches.
func TestGPUParityLogits(t *testing.T) {
	b := newBackend(t)
	s := model.Shape{Dim: 256, Hidden: 512, Layers: 3, Heads: 8, KVHeads: 2, Vocab: 512, Ctx: 128}
	for _, c := range []struct {
		w  tensor.DType
		kv kvcache.DType
	}{{tensor.F32, kvcache.F32}, {tensor.F16, kvcache.F16}} {
		t.Run(c.w.String(), func(t *testing.T) {
			m := synth(t, s, c.w)
			p := newPair(t, b, m, c.kv)
			toks := make([]int, 32)
			fl := make([]kvcache.Flags, 32)
			for i := range toks {
				toks[i] = (i*37 + 5) % s.Vocab
			}
			a, g := p.step(t, model.Batch{Tokens: toks, Flags: fl, AllLogits: true})
			for i := 0; i < 32; i++ {
				if e := relErr(a[i*s.Vocab:(i+1)*s.Vocab], g[i*s.Vocab:(i+1)*s.Vocab]); e > 1e-3 {
					t.Fatalf("prefill position %d: relative error %.2e", i, e)
				}
			}
			tok := tensor.Argmax(a[31*s.Vocab:])
			for i := 32; i < 64; i++ {
				a, g := p.step(t, model.Batch{Tokens: []int{tok}, Flags: fl[:1], Observe: true})
				if e := relErr(a, g); e > 1e-3 {
					t.Fatalf("decode position %d: relative error %.2e", i, e)
				}
				tok = tensor.Argmax(a)
			}
		})
	}
}

// TestGPUGreedyStories260K: identical greedy tokens on the real tiny model,
// with a full cache and with a compressing policy whose evictions run on the
// device; device bytes in use track 1 − pruned ratio.
func TestGPUGreedyStories260K(t *testing.T) {
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset")
	}
	m, err := model.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := newBackend(t)
	for _, pol := range []kvcache.Policy{kvcache.FullPolicy,
		{Keep: kvcache.Special | kvcache.Punct | kvcache.Frequent | kvcache.Local, Window: kvcache.Budget{Ratio: 0.3}, Frequent: kvcache.Budget{Ratio: 0.3}}} {
		t.Run(pol.Name(), func(t *testing.T) {
			p := newPair(t, b, m, kvcache.F32)
			prompt := []int{1, 403, 407, 261, 378, 294, 104, 284, 4444 % m.Config.Vocab, 268}
			fl := make([]kvcache.Flags, len(prompt))
			a, g := p.step(t, model.Batch{Tokens: prompt, Flags: fl})
			if tensor.Argmax(a) != tensor.Argmax(g) {
				t.Fatalf("after the prompt: CPU picks %d, GPU %d", tensor.Argmax(a), tensor.Argmax(g))
			}
			p.cCPU.SetAllPolicies(pol)
			p.cGPU.SetAllPolicies(pol)
			tok := tensor.Argmax(a)
			for i := 0; i < 200; i++ {
				a, g := p.step(t, model.Batch{Tokens: []int{tok}, Flags: fl[:1], Observe: true})
				if tensor.Argmax(a) != tensor.Argmax(g) {
					t.Fatalf("step %d: CPU picks %d, GPU %d", i, tensor.Argmax(a), tensor.Argmax(g))
				}
				tok = tensor.Argmax(a)
			}
			_, inUse := b.DeviceBytes()
			c := m.Config
			var kept int64
			for l := 0; l < c.Layers; l++ {
				for kh := 0; kh < c.KVHeads; kh++ {
					kept += int64(ceilDiv(p.cGPU.Kept(l, kh), p.poolGPU.BlockEntries()))
				}
			}
			blockBytes := uint64(2 * p.poolGPU.BlockEntries() * c.HeadDim * 4)
			if want := uint64(kept) * blockBytes; inUse != want {
				t.Errorf("device holds %d bytes of blocks, the kept entries need %d (pruned ratio %.3f)", inUse, want, p.cGPU.PrunedRatio())
			}
			t.Logf("%s: pruned ratio %.3f, device cache bytes %d", pol.Name(), p.cGPU.PrunedRatio(), inUse)
			p.cGPU.Close()
		})
	}
}

// BenchmarkGPUDecode reports decode tok/s and the share of HBM bandwidth
// (weights + kept K/V read per token over FASTGEN_HBM_GBS, default 3350 for
// an H100 SXM) for 110M and 1.1B at 2k–16k context, full vs a FastGen-like
// policy keeping ~30%.
func BenchmarkGPUDecode(b *testing.B) {
	be := newBackend(b)
	peak := 3350.0
	if v, err := strconv.ParseFloat(os.Getenv("FASTGEN_HBM_GBS"), 64); err == nil {
		peak = v
	}
	for _, name := range []string{"110M", "1.1B"} {
		s := model.Shapes[name]
		s.Ctx = 16384 + 64
		m := synth(b, s, tensor.F16)
		c := m.Config
		for _, ctx := range []int{2048, 4096, 8192, 16384} {
			for _, mode := range []string{"full", "fastgen"} {
				b.Run(fmt.Sprintf("%s/ctx%d/%s", name, ctx, mode), func(b *testing.B) {
					r, err := be.NewRunner(m)
					if err != nil {
						b.Fatal(err)
					}
					pool := kvcache.NewPool(c.HeadDim, kvcache.F16, 0, 0)
					cache := kvcache.New(kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}, pool)
					defer cache.Close()
					toks := make([]int, ctx)
					for i := range toks {
						toks[i] = (i*31 + 7) % c.Vocab
					}
					fl := make([]kvcache.Flags, ctx)
					for lo := 0; lo < ctx; lo += 1024 {
						hi := min(ctx, lo+1024)
						if _, err := r.Forward(cache, model.Batch{Tokens: toks[lo:hi], Flags: fl[lo:hi]}); err != nil {
							b.Fatal(err)
						}
					}
					if mode == "fastgen" {
						cache.SetAllPolicies(kvcache.Policy{Keep: kvcache.Frequent | kvcache.Local, Window: kvcache.Budget{Ratio: 0.15}, Frequent: kvcache.Budget{Ratio: 0.15}})
						cache.ApplyAll()
					}
					b.ResetTimer()
					start := time.Now()
					for i := 0; i < b.N; i++ {
						if _, err := r.Forward(cache, model.Batch{Tokens: []int{i % c.Vocab}, Flags: fl[:1], Observe: true}); err != nil {
							b.Fatal(err)
						}
					}
					el := time.Since(start).Seconds()
					var kept int64
					for l := 0; l < c.Layers; l++ {
						for kh := 0; kh < c.KVHeads; kh++ {
							kept += int64(cache.Kept(l, kh))
						}
					}
					bytes := float64(m.WeightBytes()) + float64(kept*int64(2*c.HeadDim*2))
					tps := float64(b.N) / el
					b.ReportMetric(tps, "tok/s")
					b.ReportMetric(100*bytes*tps/(peak*1e9), "%HBM")
					b.ReportMetric(cache.PrunedRatio(), "pruned")
				})
			}
		}
	}
}
