//go:build cuda

package cuda

// The GPU checks (task gpu-check). CI compiles this file without running it
// (go test -exec /bin/true); cu's init exits without a device.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

func newBackend(t testing.TB) *Backend {
	return newBackendWith(t, Options{NoGraphs: os.Getenv("FASTGEN_CUDA_NOGRAPHS") == "1",
		NoPDL:        os.Getenv("FASTGEN_CUDA_NOPDL") == "1",
		KernelTimes:  os.Getenv("FASTGEN_CUDA_KERNEL_TIMES") == "1",
		legacyDecode: os.Getenv("FASTGEN_CUDA_LEGACY") == "1"})
}

func newBackendWith(t testing.TB, o Options) *Backend {
	t.Helper()
	b, err := New(o)
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

// fork copies c (on the device too, when it has a mirror).
func fork(t testing.TB, c *kvcache.Cache) *kvcache.Cache {
	t.Helper()
	f, err := c.Fork()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(a[i])))
	}
	return num / math.Max(den, 1e-12)
}

// decodePaths are the ways a step can run: the general batch path with the
// one-block-per-head attention, and the fused decode path with attend_split
// (prompts in launches of 64 tokens) enqueued kernel by kernel, replayed as
// a graph, and replayed with programmatic dependent launches (sm_90 on).
var decodePaths = []struct {
	name string
	opt  Options
}{{"general", Options{legacyDecode: true}}, {"fused", Options{NoGraphs: true, attnTokens: 64}},
	{"graph", Options{NoPDL: true}}, {"graph-pdl", Options{}}}

// TestGPUParityLogits: logits within 1e-3 relative of the CPU's at every
// position of a 32-token prefill and 32 decode steps (F32 and F16 weights
// and caches; Q8_0 weights, whose CPU kernel quantizes activations to 8
// bits too, within 5e-2: 2.3e-2 on every path, the old general one
// included), for grouped-query and multi-head attention, and after a
// 700-token prefill, where decode attention spans several splits; on every
// decode path.
func TestGPUParityLogits(t *testing.T) {
	for _, path := range decodePaths {
		b := newBackendWith(t, path.opt)
		for _, c := range []struct {
			w       tensor.DType
			kv      kvcache.DType
			kvHeads int
			prompt  int
			tol     float64
		}{
			{tensor.F32, kvcache.F32, 2, 32, 1e-3}, {tensor.F16, kvcache.F16, 2, 32, 1e-3},
			{tensor.F16, kvcache.F16, 8, 32, 1e-3}, {tensor.F16, kvcache.F16, 2, 700, 1e-3},
			{tensor.F32, kvcache.F32, 8, 700, 1e-3}, {tensor.Q8_0, kvcache.F16, 2, 32, 5e-2},
		} {
			name := fmt.Sprintf("%s/%s-kv%s-%dkv-prompt%d", path.name, c.w, c.kv, c.kvHeads, c.prompt)
			t.Run(name, func(t *testing.T) {
				// Hidden 4096: the down projection's rows are long enough
				// to take several warps each in matvec (F16 2, F32 and
				// Q8_0 4).
				s := model.Shape{Dim: 256, Hidden: 4096, Layers: 3, Heads: 8, KVHeads: c.kvHeads, Vocab: 512, Ctx: 1024}
				m := synth(t, s, c.w)
				p := newPair(t, b, m, c.kv)
				toks := make([]int, c.prompt)
				fl := make([]kvcache.Flags, c.prompt)
				for i := range toks {
					toks[i] = (i*37 + 5) % s.Vocab
				}
				a, g := p.step(t, model.Batch{Tokens: toks, Flags: fl, AllLogits: true})
				worst := 0.0
				for i := 0; i < c.prompt; i++ {
					e := relErr(a[i*s.Vocab:(i+1)*s.Vocab], g[i*s.Vocab:(i+1)*s.Vocab])
					if e > c.tol {
						t.Fatalf("prefill position %d: relative error %.2e", i, e)
					}
					worst = math.Max(worst, e)
				}
				tok := tensor.Argmax(a[(c.prompt-1)*s.Vocab:])
				for i := 0; i < 32; i++ {
					a, g := p.step(t, model.Batch{Tokens: []int{tok}, Flags: fl[:1], Observe: true})
					e := relErr(a, g)
					if e > c.tol {
						t.Fatalf("decode position %d: relative error %.2e", c.prompt+i, e)
					}
					worst = math.Max(worst, e)
					tok = tensor.Argmax(a)
				}
				t.Logf("worst relative error %.2e", worst)
			})
		}
	}
}

// stories260K loads the real tiny model with the context it was trained
// with (its GGUF header says 128).
func stories260K(t *testing.T) *model.Model {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset")
	}
	m, err := model.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestGPUGreedyStories260K: identical greedy tokens on the real tiny model,
// with a full cache and with a compressing policy whose evictions run on the
// device; device bytes in use track 1 − pruned ratio.
func TestGPUGreedyStories260K(t *testing.T) {
	m := stories260K(t)
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
			// Decode from forks, as compare mode does: the device copies the
			// rows, and the policy's first evictions run on the copy.
			fc, fg := fork(t, p.cCPU), fork(t, p.cGPU)
			p.cCPU.Close()
			p.cGPU.Close()
			p.cCPU, p.cGPU = fc, fg
			p.cCPU.SetAllPolicies(pol)
			p.cGPU.SetAllPolicies(pol)
			p.cCPU.ApplyAll()
			p.cGPU.ApplyAll()
			tok := tensor.Argmax(a)
			worst := 0.0
			for i := 0; i < 200; i++ {
				// The first steps are also observed (compare mode's
				// attention loss): each head's attention as the device
				// reports it, against the CPU's.
				bt := model.Batch{Tokens: []int{tok}, Flags: fl[:1], Observe: true}
				var oc, og *meanRows
				if i < 40 {
					oc, og = newMeanRows(m.Config), newMeanRows(m.Config)
				}
				if oc != nil {
					bt.Attention = oc
				}
				a, err := p.cpu.Forward(p.cCPU, bt)
				if err != nil {
					t.Fatal(err)
				}
				a = append([]float32(nil), a...)
				if og != nil {
					bt.Attention = og
				}
				g, err := p.gpu.Forward(p.cGPU, bt)
				if err != nil {
					t.Fatal(err)
				}
				if tensor.Argmax(a) != tensor.Argmax(g) {
					t.Fatalf("step %d: CPU picks %d, GPU %d", i, tensor.Argmax(a), tensor.Argmax(g))
				}
				if oc != nil {
					worst = math.Max(worst, oc.diff(t, og))
				}
				tok = tensor.Argmax(a)
			}
			if worst > 1e-4 {
				t.Errorf("observed attention differs by up to %.2e", worst)
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
			differ := 0
			for l := 0; l < c.Layers; l++ {
				for kh := 0; kh < c.KVHeads; kh++ {
					if p.cCPU.Kept(l, kh) != p.cGPU.Kept(l, kh) {
						t.Errorf("head %d/%d keeps %d entries on the CPU, %d on the GPU", l, kh, p.cCPU.Kept(l, kh), p.cGPU.Kept(l, kh))
					}
					cp, gp := make([]int32, p.cCPU.Kept(l, kh)), make([]int32, p.cGPU.Kept(l, kh))
					p.cCPU.Entries(l, kh, cp, make([]kvcache.Flags, len(cp)))
					p.cGPU.Entries(l, kh, gp, make([]kvcache.Flags, len(gp)))
					slices.Sort(cp)
					slices.Sort(gp)
					if !slices.Equal(cp, gp) {
						differ++
					}
				}
			}
			t.Logf("%s: pruned ratio %.3f, device cache bytes %d, heads keeping other positions than the CPU's: %d of %d; observed attention within %.1e",
				pol.Name(), p.cGPU.PrunedRatio(), inUse, differ, c.Layers*c.KVHeads, worst)
			p.cGPU.Close()
		})
	}
}

// meanRows records, per head, the group-mean attention row an observer
// saw in one step.
type meanRows struct {
	mu      sync.Mutex
	kvHeads int
	rows    [][]float32
}

func newMeanRows(c model.Config) *meanRows {
	return &meanRows{kvHeads: c.KVHeads, rows: make([][]float32, c.Layers*c.KVHeads)}
}

func (m *meanRows) Attention(_, layer, kvHead, _ int, probs []float32, groups, limit int) {
	row := make([]float32, limit)
	for g := 0; g < groups; g++ {
		for j := range row {
			row[j] += probs[g*limit+j] / float32(groups)
		}
	}
	m.mu.Lock()
	m.rows[layer*m.kvHeads+kvHead] = row
	m.mu.Unlock()
}

// diff is the largest difference between two steps' rows; every head must
// have been seen, over the same number of entries.
func (m *meanRows) diff(t *testing.T, o *meanRows) float64 {
	t.Helper()
	worst := 0.0
	for h, r := range m.rows {
		if r == nil || len(o.rows[h]) != len(r) {
			t.Fatalf("head %d: observed %d entries on the CPU, %d on the GPU", h, len(r), len(o.rows[h]))
		}
		for j, v := range r {
			worst = math.Max(worst, math.Abs(float64(v-o.rows[h][j])))
		}
	}
	return worst
}

// TestGPUFastGenProfiledPrefill: the product's FastGen path (a profiled
// prompt, policies chosen and applied, decode with eviction) on the GPU,
// its profiling sums computed by the device's kernels (or, with
// HostProfiling, recomputed on the host), against the CPU: the same
// recoveries, masses and policies on every head, over MHA and GQA, the
// spec's options and the stricter ones, a baseline's fixed policy, and a
// second turn that attends to what the first kept; then the same greedy
// tokens.
func TestGPUFastGenProfiledPrefill(t *testing.T) {
	gqa := model.Shape{Name: "gqa", Dim: 256, Hidden: 512, Layers: 2, Heads: 8, KVHeads: 2, Vocab: 512, Ctx: 2048}
	fixed := kvcache.Policy{Keep: kvcache.Local | kvcache.Frequent, Window: kvcache.Budget{Ratio: 0.2}, Frequent: kvcache.Budget{Ratio: 0.2}}
	for _, tc := range []struct {
		name       string
		shape      *model.Shape // nil: stories260K
		prompt     int
		opt        func(*fastgen.Options)
		fixed      *kvcache.Policy
		host       bool
		turn2, dec int
	}{
		{name: "stories260K", prompt: 120, dec: 100},
		{name: "stories260K/host", prompt: 120, host: true, dec: 20},
		{name: "gqa", shape: &gqa, prompt: 700, turn2: 90, dec: 20},
		{name: "gqa/min-last-rows", shape: &gqa, prompt: 700, turn2: 90, opt: func(o *fastgen.Options) { o.GQA, o.RecoveryRows, o.Threshold = fastgen.AggMin, 100, 0.9 }},
		{name: "gqa/ablation-order", shape: &gqa, prompt: 500, opt: func(o *fastgen.Options) {
			o.Order = []kvcache.Component{kvcache.Frequent, kvcache.Special, kvcache.Local, kvcache.Punct}
			o.Threshold = 0.9
		}},
		{name: "gqa/fixed", shape: &gqa, prompt: 500, fixed: &fixed, turn2: 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *model.Model
			if tc.shape == nil {
				m = stories260K(t)
			} else {
				m = synth(t, *tc.shape, tensor.F32)
			}
			b := newBackendWith(t, Options{HostProfiling: tc.host})
			p := newPair(t, b, m, kvcache.F32)
			c := m.Config
			opt := fastgen.Defaults()
			if tc.opt != nil {
				tc.opt(&opt)
			}
			prompt, fl := profPrompt(tc.prompt, c.Vocab, 0)
			tok := profTurn(t, p, c, opt, tc.fixed, prompt, fl)
			if tc.turn2 > 0 {
				p.cCPU.ApplyAll()
				p.cGPU.ApplyAll()
				prompt, fl = profPrompt(tc.turn2, c.Vocab, tc.prompt)
				tok = profTurn(t, p, c, opt, tc.fixed, prompt, fl)
			}
			p.cCPU.ApplyAll()
			p.cGPU.ApplyAll()
			for i := 0; i < tc.dec; i++ {
				a, g := p.step(t, model.Batch{Tokens: []int{tok}, Flags: fl[1:2], Observe: true})
				if tensor.Argmax(a) != tensor.Argmax(g) {
					t.Fatalf("step %d: CPU picks %d, GPU %d", i, tensor.Argmax(a), tensor.Argmax(g))
				}
				tok = tensor.Argmax(a)
			}
			if tc.dec > 0 {
				sameScores(t, p, m.Config)
			}
			t.Logf("pruned ratio CPU %.3f, GPU %.3f", p.cCPU.PrunedRatio(), p.cGPU.PrunedRatio())
		})
	}
}

// sameScores requires every head, the full ones included, to score the
// positions both sides kept alike (within 1e-3 relative): a later turn's
// profile ranks by them. Near-ties may evict differently; more than 1% of
// a head's entries kept on one side only fails too.
func sameScores(t *testing.T, p *pair, c model.Config) {
	t.Helper()
	for l := 0; l < c.Layers; l++ {
		for kh := 0; kh < c.KVHeads; kh++ {
			cpu := map[int32]float32{}
			for j := 0; j < p.cCPU.Kept(l, kh); j++ {
				cpu[p.cCPU.Pos(l, kh, j)] = p.cCPU.Score(l, kh, j)
			}
			common := 0
			for j := 0; j < p.cGPU.Kept(l, kh); j++ {
				pos, sg := p.cGPU.Pos(l, kh, j), p.cGPU.Score(l, kh, j)
				sc, ok := cpu[pos]
				if !ok {
					continue
				}
				common++
				if math.Abs(float64(sc-sg)) > 1e-3*math.Max(1, math.Abs(float64(sc))) {
					t.Fatalf("head %d/%d position %d: score CPU %g, GPU %g", l, kh, pos, sc, sg)
				}
			}
			if only := len(cpu) + p.cGPU.Kept(l, kh) - 2*common; only > len(cpu)/100+1 {
				t.Errorf("head %d/%d: %d entries kept on one side only (CPU keeps %d, GPU %d)", l, kh, only, len(cpu), p.cGPU.Kept(l, kh))
			}
		}
	}
}

// profPrompt is n tokens with every ninth a punctuation mark and the first
// of a conversation special.
func profPrompt(n, vocab, seed int) ([]int, []kvcache.Flags) {
	prompt, fl := make([]int, n), make([]kvcache.Flags, n)
	for i := range prompt {
		prompt[i] = ((i+seed)*173 + 11) % vocab
		if (i+seed)%9 == 4 {
			fl[i] = kvcache.FlagPunct
		}
	}
	if seed == 0 {
		prompt[0], fl[0] = 1, kvcache.FlagSpecial
	}
	return prompt, fl
}

// profTurn prefills one profiled turn on both sides and compares the
// profiles head by head; it returns the CPU's next token.
func profTurn(t *testing.T, p *pair, c model.Config, opt fastgen.Options, fixed *kvcache.Policy, prompt []int, fl []kvcache.Flags) int {
	t.Helper()
	base := p.cCPU.Len()
	profCPU := fastgen.NewProfiler(opt, c.Layers, c.Heads, c.KVHeads, c.HeadDim, len(prompt), base, fixed)
	profGPU := fastgen.NewProfiler(opt, c.Layers, c.Heads, c.KVHeads, c.HeadDim, len(prompt), base, fixed)
	a, err := p.cpu.Forward(p.cCPU, model.Batch{Tokens: prompt, Flags: fl, Profiler: profCPU})
	if err != nil {
		t.Fatal(err)
	}
	tok := tensor.Argmax(a)
	start := time.Now()
	g, err := p.gpu.Forward(p.cGPU, model.Batch{Tokens: prompt, Flags: fl, Profiler: profGPU})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if tensor.Argmax(g) != tok {
		t.Fatalf("after the prompt: CPU picks %d, GPU %d", tok, tensor.Argmax(g))
	}
	rc, rg := profCPU.Result(), profGPU.Result()
	if len(rc.Heads) != len(rg.Heads) {
		t.Fatalf("CPU profiled %d heads, GPU %d", len(rc.Heads), len(rg.Heads))
	}
	near, pruning, worst := 0, 0, 0.0
	for i, hc := range rc.Heads {
		hg := rg.Heads[i]
		if !hc.Policy.IsFull() {
			pruning++
		}
		for k := range hc.Recovery {
			worst = math.Max(worst, math.Abs(hc.Recovery[k]-hg.Recovery[k]))
		}
		mc, mg := hc.Mass, hg.Mass
		for _, d := range []float64{mc.Special - mg.Special, mc.Punct - mg.Punct, mc.Local - mg.Local, mc.Other - mg.Other} {
			if math.Abs(d) > 1e-4 {
				t.Errorf("head %d/%d: mass CPU %+v, GPU %+v", hc.Layer, hc.KVHead, mc, mg)
				break
			}
		}
		for j := 0; j < p.cCPU.Kept(hc.Layer, hc.KVHead); j++ {
			sc, sg := p.cCPU.Score(hc.Layer, hc.KVHead, j), p.cGPU.Score(hc.Layer, hc.KVHead, j)
			if math.Abs(float64(sc-sg)) > 1e-3*math.Max(1, math.Abs(float64(sc))) {
				t.Errorf("head %d/%d entry %d: score CPU %g, GPU %g", hc.Layer, hc.KVHead, j, sc, sg)
				break
			}
		}
		if hc.Policy == hg.Policy {
			continue
		}
		close := false
		for _, r := range hc.Recovery {
			close = close || math.Abs(r-opt.Threshold) < 1e-3
		}
		if !close {
			t.Errorf("head %d/%d: CPU chooses %s (recovery %.4f), GPU %s (%.4f)", hc.Layer, hc.KVHead,
				hc.Policy.Name(), hc.Recovery, hg.Policy.Name(), hg.Recovery)
		}
		near++
	}
	if worst > 1e-3 {
		t.Errorf("recoveries differ by up to %.2e", worst)
	}
	t.Logf("%d-token turn: %d of %d heads prune, %d choose differently within 1e-3 of T, recoveries within %.1e; GPU prefill with profiling %v",
		len(prompt), pruning, len(rc.Heads), near, worst, took)
	return tok
}

// BenchmarkGPUDecode reports decode tok/s and the share of the device's
// memory bandwidth it reaches (weights + kept K/V read per token, over the
// bandwidth of a large device-to-device copy measured first, or
// FASTGEN_HBM_GBS) for the 110M and 1.1B shapes (F16 weights and cache) at
// 2k–16k context, full cache vs a FastGen-like policy keeping ~30%. Each
// shape's cache is prefilled once, growing through the contexts; every
// sub-benchmark decodes from a fork of it. FASTGEN_GPU_SHAPES and
// FASTGEN_GPU_CTX (comma-separated) narrow the sweep.
func BenchmarkGPUDecode(b *testing.B) {
	be := newBackend(b)
	peak := copyGBs(b, be)
	if v, err := strconv.ParseFloat(os.Getenv("FASTGEN_HBM_GBS"), 64); err == nil {
		peak = v
	}
	b.Logf("memory bandwidth for %%HBM: %.0f GB/s", peak)
	ctxs := envInts(b, "FASTGEN_GPU_CTX", []int{2048, 4096, 8192, 16384})
	for _, name := range envList("FASTGEN_GPU_SHAPES", []string{"110M", "1.1B"}) {
		s, ok := model.Shapes[name]
		if !ok {
			b.Fatalf("no shape %q", name)
		}
		s.Ctx = slices.Max(ctxs) + 1024
		t0 := time.Now()
		m := synthShape(b, s, tensor.F16)
		c := m.Config
		r, err := be.NewRunner(m)
		if err != nil {
			b.Fatal(err)
		}
		pool := kvcache.NewPool(c.HeadDim, kvcache.F16, 0, 0)
		base := kvcache.New(kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}, pool)
		b.Logf("%s: synthesized and uploaded in %v", name, time.Since(t0).Round(time.Millisecond))
		fl := make([]kvcache.Flags, 1024)
		for _, ctx := range ctxs {
			t0 := time.Now()
			for lo := base.Len(); lo < ctx; lo += 1024 {
				n := min(ctx-lo, 1024)
				toks := make([]int, n)
				for i := range toks {
					toks[i] = ((lo+i)*31 + 7) % c.Vocab
				}
				if _, err := r.Forward(base, model.Batch{Tokens: toks, Flags: fl[:n]}); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%s: prefilled to %d in %v", name, ctx, time.Since(t0).Round(time.Millisecond))
			for _, mode := range []string{"full", "fastgen"} {
				b.Run(fmt.Sprintf("%s/ctx%d/%s", name, ctx, mode), func(b *testing.B) {
					_, before := be.DeviceBytes()
					cache := fork(b, base)
					defer cache.Close()
					if mode == "fastgen" {
						cache.SetAllPolicies(kvcache.Policy{Keep: kvcache.Frequent | kvcache.Local, Window: kvcache.Budget{Ratio: 0.15}, Frequent: kvcache.Budget{Ratio: 0.15}})
						cache.ApplyAll()
					}
					st := &r.(*runner).stats
					*st = Stats{}
					be.KernelTimes() // from here on
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
					// The fork's own device blocks: what its K/V take on the GPU.
					_, after := be.DeviceBytes()
					b.ReportMetric(float64(after-before)/1e6, "kv-MB")
					b.ReportMetric(float64(st.Launches)/float64(st.Steps), "launches/tok")
					b.ReportMetric(float64(st.Enqueue.Microseconds())/float64(st.Steps), "enqueue-us/tok")
					b.ReportMetric(float64(st.Wait.Microseconds())/float64(st.Steps), "wait-us/tok")
					b.ReportMetric(float64(st.Host.Microseconds())/float64(st.Steps), "host-us/tok")
					if kt := be.KernelTimes(); kt != nil && b.N > 1 {
						labels := slices.SortedFunc(maps.Keys(kt), func(a, b string) int { return cmp.Compare(kt[b], kt[a]) })
						var line strings.Builder
						for _, l := range labels {
							fmt.Fprintf(&line, " %s %.1f", l, float64(kt[l].Microseconds())/float64(b.N))
						}
						b.Logf("device µs per token:%s", line.String())
					}
				})
			}
		}
		base.Close()
	}
}

// synthShape is synth for the benchmark shapes, kept between runs under
// FASTGEN_GPU_MODELS when set (the 1.1B file takes tens of seconds to make).
func synthShape(b *testing.B, s model.Shape, dt tensor.DType) *model.Model {
	dir := os.Getenv("FASTGEN_GPU_MODELS")
	if dir == "" {
		return synth(b, s, dt)
	}
	path := model.SynthesizedPath(dir, s, dt)
	if _, err := os.Stat(path); err != nil {
		if err := model.Synthesize(path, s, dt, 1); err != nil {
			b.Fatal(err)
		}
	}
	m, err := model.Load(path, model.LoadOptions{Ctx: s.Ctx})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// copyGBs is the device's memory bandwidth as a large device-to-device copy
// moves it (bytes read plus bytes written), the ceiling decode is held to.
func copyGBs(b *testing.B, be *Backend) float64 {
	const size, reps = 1 << 30, 20
	leave := be.enter()
	defer leave()
	src, err := alloc(size)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.MemFree(src)
	dst, err := alloc(size)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.MemFree(dst)
	best := 0.0
	for try := 0; try < 3; try++ {
		be.stream.Synchronize()
		start := time.Now()
		for i := 0; i < reps; i++ {
			if err := cu.MemcpyDtoDAsync(dst, src, size, be.stream); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.stream.Synchronize(); err != nil {
			b.Fatal(err)
		}
		best = math.Max(best, 2*size*reps/time.Since(start).Seconds()/1e9)
	}
	return best
}

func envList(name string, def []string) []string {
	if v := os.Getenv(name); v != "" {
		return strings.Split(v, ",")
	}
	return def
}

func envInts(b *testing.B, name string, def []int) []int {
	var out []int
	for _, f := range envList(name, nil) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			b.Fatalf("%s: %q is not a positive count", name, f)
		}
		out = append(out, n)
	}
	if out == nil {
		return def
	}
	return out
}

// BenchmarkGPUKernels times the decode path's matrix-vector products alone
// on the 1.1B shape (F16), each launched 200 times back to back over
// weights rotated through 512 MB (so that L2 holds none of them), with and
// without programmatic dependent launch, beside hbm_read, the bandwidth a
// plain streaming kernel reaches on the same number of bytes.
func BenchmarkGPUKernels(b *testing.B) {
	be := newBackend(b)
	leave := be.enter()
	defer leave()
	const pool = 512 << 20
	buf, err := alloc(pool)
	if err != nil {
		b.Fatal(err)
	}
	defer cu.MemFree(buf)
	host := make([]uint16, pool/2)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range host {
		host[i] = tensor.F32ToF16(0.02 * float32(rng.NormFloat64()))
	}
	if err := cu.MemcpyHtoD(buf, unsafe.Pointer(&host[0]), pool); err != nil {
		b.Fatal(err)
	}
	vec := func(n int, v float32) cu.DevicePtr {
		p, err := alloc(4 * n)
		if err != nil {
			b.Fatal(err)
		}
		h := make([]float32, n)
		for i := range h {
			h[i] = v * float32(1+i%7)
		}
		if err := cu.MemcpyHtoD(p, f32Ptr(h), int64(4*n)); err != nil {
			b.Fatal(err)
		}
		return p
	}
	x, norm, out, out2 := vec(8192, 0.1), vec(8192, 1), vec(32000, 0), vec(32000, 0)
	sink := vec(1, 0)
	const reps = 200
	sms, err := be.dev.Attribute(cu.MultiprocessorCount)
	if err != nil {
		b.Fatal(err)
	}
	timeIt := func(launch func(i int) error) float64 {
		start, err := cu.MakeEvent(cu.DefaultEvent)
		if err != nil {
			b.Fatal(err)
		}
		end, _ := cu.MakeEvent(cu.DefaultEvent)
		defer cu.DestroyEvent(&start)
		defer cu.DestroyEvent(&end)
		for i := 0; i < 10; i++ { // warm up
			if err := launch(i); err != nil {
				b.Fatal(err)
			}
		}
		start.Record(be.stream)
		for i := 0; i < reps; i++ {
			if err := launch(i); err != nil {
				b.Fatal(err)
			}
		}
		end.Record(be.stream)
		if err := end.Synchronize(); err != nil {
			b.Fatal(err)
		}
		ms, err := start.Elapsed(end)
		if err != nil {
			b.Fatal(err)
		}
		return ms * 1e3 / reps
	}
	f16 := int(tensor.F16)
	for _, k := range []struct {
		name       string
		rows, cols int
		mats, mode int
		normed     bool
	}{
		{"qkv", 2048 + 2*256, 2048, 1, mvStore, true}, {"wo", 2048, 2048, 1, mvAdd, false},
		{"ffn_in", 5632, 2048, 2, mvSwiGLU, true}, {"ffn_down", 2048, 5632, 1, mvAdd, false},
		{"logits", 32000, 2048, 1, mvStore, true},
	} {
		bytes := k.rows * k.cols * 2 * k.mats
		slots := pool / bytes
		nrm := cu.DevicePtr(0)
		if k.normed {
			nrm = norm
		}
		w := dmat{typ: f16, rows: k.rows, cols: k.cols}
		wpr := warpsPerRow(w)
		for _, pdl := range []bool{false, true} {
			if pdl && !be.pdl {
				continue
			}
			us := timeIt(func(i int) error {
				m0 := w
				m0.ptr = buf + cu.DevicePtr((i%slots)*bytes)
				mats := []mvOut{{m0, out}}
				if k.mats == 2 {
					m1 := m0
					m1.ptr += cu.DevicePtr(k.rows * k.cols * 2)
					mats = append(mats, mvOut{m1, out2})
				}
				be.chain = pdl
				defer func() { be.chain = false }()
				return be.matvec(k.name, k.mode, 1e-5, x, nrm, mats...)
			})
			name := k.name
			if pdl {
				name += "+pdl"
			}
			b.Logf("%-16s %6.1f MB  %7.2f µs  %6.0f GB/s  (%d warps a row)", name, float64(bytes)/1e6, us, float64(bytes)/us/1e3, wpr)
		}
		us := timeIt(func(i int) error {
			w0 := buf + cu.DevicePtr((i%slots)*bytes)
			return be.launch("hbm_read", 8*sms, 1, 256, 0, new(args).p(w0).i(bytes/16).p(sink))
		})
		b.Logf("%-16s %6.1f MB  %7.2f µs  %6.0f GB/s", "hbm_read", float64(bytes)/1e6, us, float64(bytes)/us/1e3)
	}
}
