package engine

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// BenchmarkPrefill measures a 512-token prefill of the 15M shape with a full
// cache and with FastGen profiling, reporting profiling's share of the time.
func BenchmarkPrefill(b *testing.B) {
	shape := model.Shapes["15M"]
	shape.Vocab = 2048
	path := filepath.Join(b.TempDir(), "m.gguf")
	if err := model.Synthesize(path, shape, tensor.F32, 1); err != nil {
		b.Fatal(err)
	}
	e, err := Load(path, model.LoadOptions{Ctx: 600}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	prompt := make([]int, 512)
	for i := range prompt {
		prompt[i] = 259 + rng.IntN(shape.Vocab-259)
	}
	for _, mode := range []string{kvcache.ModeFull, kvcache.ModeFastGen} {
		b.Run(mode, func(b *testing.B) {
			kv := DefaultKV()
			kv.Mode = mode
			var prof float64
			for b.Loop() {
				s, err := e.NewSession(kv)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Prefill(context.Background(), prompt, false); err != nil {
					b.Fatal(err)
				}
				prof += s.ProfileTime.Seconds()
				s.Close()
			}
			b.ReportMetric(prof/float64(b.N)*1e3, "profile-ms/op")
		})
	}
}

// BenchmarkGenerate is the whole generation loop on stories260K — sampling,
// events, occupancy — beside the forward pass's own cost (model's
// BenchmarkStories), so per-token overhead outside the model shows up.
func BenchmarkGenerate(b *testing.B) {
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		b.Skip("FASTGEN_TEST_MODELS is unset")
	}
	e, err := Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, mode := range []string{kvcache.ModeFull, kvcache.ModeFastGen} {
		b.Run(mode, func(b *testing.B) {
			kv := DefaultKV()
			kv.Mode = mode
			var toks int
			for b.Loop() {
				res, err := e.Generate(context.Background(), Request{Prompt: "Once upon a time", MaxTokens: 400, KV: kv}, NopSink{})
				if err != nil {
					b.Fatal(err)
				}
				toks += len(res[0].Tokens)
			}
			b.ReportMetric(float64(toks)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
