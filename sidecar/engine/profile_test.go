package engine

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// layerOnly hides the forward pass's rows from the profiler, so that it
// recomputes pass 1 from the queries.
type layerOnly struct{ p *fastgen.Profiler }

func (l layerOnly) Begin(int, int, *kvcache.Cache, float32)                {}
func (l layerOnly) Row(int, int, int, int, []float32, []float32, int, int) {}
func (l layerOnly) Layer(layer int, q []float32, qStride int, c *kvcache.Cache, scale float32, pool *tensor.Pool) {
	l.p.Layer(layer, q, qStride, c, scale, pool)
}

// TestProfileFromForwardRows: profiling from the rows the forward pass
// computes gives the same recoveries, masses and policies as recomputing
// them, for both GQA aggregations.
func TestProfileFromForwardRows(t *testing.T) {
	e := stories(t)
	prompt := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. \"Can I play?\" she asked."
	tokens, err := e.Tokenize(&Request{Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	checkProfileFromRows(t, e, tokens)
}

// TestProfileFromPromptPanels is TestProfileFromForwardRows on a model
// whose 64-wide heads (GQA, two query heads per KV head) send the prompt
// through AttendPrefill, so the rows reach the profiler through its sink.
func TestProfileFromPromptPanels(t *testing.T) {
	shape := model.Shape{Name: "tiny", Dim: 256, Hidden: 512, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 300, Ctx: 128}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := model.Synthesize(path, shape, tensor.F32, 7); err != nil {
		t.Fatal(err)
	}
	e, err := Load(path, model.LoadOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !kvcache.New(kvcache.Config{Layers: 1, KVHeads: 1}, e.KVPool).CanAttendPrefill() {
		t.Fatal("a 64-wide head should attend the prompt as panels")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	tokens := make([]int, 45)
	for i := range tokens {
		tokens[i] = rng.IntN(shape.Vocab)
	}
	checkProfileFromRows(t, e, tokens)
}

func checkProfileFromRows(t *testing.T, e *Engine, tokens []int) {
	t.Helper()
	c := e.Model.Config
	for _, agg := range []fastgen.Aggregation{fastgen.AggMean, fastgen.AggMin} {
		opt := fastgen.Defaults()
		opt.GQA = agg
		opt.Threshold = 0.95
		run := func(hide bool) *fastgen.Profile {
			cache := kvcache.New(kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, MaxLen: c.Ctx}, e.KVPool)
			defer cache.Close()
			r, err := e.backend.NewRunner(e.Model)
			if err != nil {
				t.Fatal(err)
			}
			p := fastgen.NewProfiler(opt, c.Layers, c.Heads, c.KVHeads, c.HeadDim, len(tokens), 0, nil)
			var prof model.Profiler = p
			if hide {
				prof = layerOnly{p}
			}
			s := &Session{e: e}
			if _, err := r.Forward(cache, model.Batch{Tokens: tokens, Flags: s.flags(tokens), Profiler: prof, Ctx: context.Background()}); err != nil {
				t.Fatal(err)
			}
			return p.Result()
		}
		got, want := run(false), run(true)
		for i, h := range got.Heads {
			w := want.Heads[i]
			if h.Policy.Name() != w.Policy.Name() {
				t.Errorf("agg %d head %d/%d: policy %s from rows, %s recomputed", agg, h.Layer, h.KVHead, h.Policy.Name(), w.Policy.Name())
			}
			for k := range h.Recovery {
				if math.Abs(h.Recovery[k]-w.Recovery[k]) > 1e-5 {
					t.Errorf("agg %d head %d/%d: recovery %v from rows, %v recomputed", agg, h.Layer, h.KVHead, h.Recovery, w.Recovery)
					break
				}
			}
			if math.Abs(h.Mass.Other-w.Mass.Other) > 1e-5 || math.Abs(h.Mass.Local-w.Mass.Local) > 1e-5 {
				t.Errorf("head %d/%d: mass %+v from rows, %+v recomputed", h.Layer, h.KVHead, h.Mass, w.Mass)
			}
		}
	}
}
