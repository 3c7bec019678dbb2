package llama2c

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

var writeSeeds = flag.Bool("llama2c.seeds", false, "rewrite testdata/fuzz/FuzzOpen from fuzzSeeds")

// fuzzSeeds are minimal checkpoints in every layout plus corrupt variants.
func fuzzSeeds() map[string][]byte {
	small := [7]int32{4, 4, 1, 2, 1, 3, 2}
	unshared := small
	unshared[5] = -3
	seeds := map[string][]byte{
		"shared-rope":      synth(small, true),
		"shared-norope":    synth(small, false),
		"unshared-rope":    synth(unshared, true),
		"unshared-norope":  synth(unshared, false),
		"corrupt-header":   synth([7]int32{4, 4, 1, 3, 1, 3, 2}, true),
		"corrupt-trailing": append(synth(small, true), 1, 2, 3, 4),
	}
	seeds["corrupt-truncated"] = seeds["shared-rope"][:40]
	return seeds
}

func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -llama2c.seeds to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range fuzzSeeds() {
		must(t, os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644))
	}
}

// FuzzOpen checks that no input panics and that every accepted checkpoint
// hands out views that match their shapes and stay inside the input.
func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.bin", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not a *llama2c.Error: %v", err, err)
			}
			return
		}
		cfg := c.Config
		if cfg.Dim%cfg.NHeads != 0 || cfg.NHeads%cfg.NKVHeads != 0 || cfg.VocabSize <= 0 {
			t.Fatalf("accepted inconsistent config %+v", cfg)
		}
		names := c.Names()
		if len(names) != 3+9*cfg.NLayers {
			t.Fatalf("%d tensors for %d layers", len(names), cfg.NLayers)
		}
		for _, name := range names {
			m, ok := c.Tensor(name)
			if !ok || m.Type != tensor.F32 || len(m.Data) != 4*m.Rows*m.Cols || m.Rows <= 0 || m.Cols <= 0 {
				t.Fatalf("tensor %s: %+v", name, m)
			}
		}
	})
}
