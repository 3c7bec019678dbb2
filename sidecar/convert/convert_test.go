package convert

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/model"
)

func models(t *testing.T) string {
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset: run through `go tool -modfile=tools/go.mod task test`, which points it at ../shared/models")
	}
	return dir
}

func greedy(t *testing.T, path string) []int {
	e, err := engine.Load(path, model.LoadOptions{}, engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.Generate(context.Background(), engine.Request{Prompt: "Once upon a time", MaxTokens: 60,
		KV: engine.KVOptions{Mode: "full"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Tokens
}

// TestRoundTrip: the converted GGUF loads, carries the checkpoint's trained
// context and a SentencePiece vocabulary, and generates the .bin's tokens.
func TestRoundTrip(t *testing.T) {
	dir := models(t)
	out := filepath.Join(t.TempDir(), "stories.gguf")
	bin := filepath.Join(dir, "stories260K.bin")
	if err := Llama2c(bin, filepath.Join(dir, "tok512.bin"), out); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := f.Uint("llama.context_length")
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	types, _ := f.Int32s("tokenizer.ggml.token_type")
	f.Close()
	if ctx != 512 {
		t.Errorf("context_length %d, want the checkpoint's seq_len 512", ctx)
	}
	for id, want := range map[int]string{1: "<s>", 2: "</s>", 3: "<0x00>", 403: "▁Once"} {
		if toks[id] != want {
			t.Errorf("token %d = %q, want %q", id, toks[id], want)
		}
	}
	if types[1] != 3 || types[3] != 6 || types[403] != 1 {
		t.Errorf("token types %d %d %d, want control, byte, normal", types[1], types[3], types[403])
	}
	a, b := greedy(t, bin), greedy(t, out)
	if len(a) != 60 || len(a) != len(b) {
		t.Fatalf("generated %d and %d tokens", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("converted model diverges at token %d: %v vs %v", i, b, a)
		}
	}
}

// TestNoPartialFile: a failed conversion leaves nothing at the output path.
func TestNoPartialFile(t *testing.T) {
	dir := models(t)
	out := filepath.Join(t.TempDir(), "x.gguf")
	if err := Llama2c(filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "missing.bin"), out); err == nil {
		t.Fatal("converted with a missing tokenizer")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists after a failed conversion: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("left files behind: %v", entries)
	}
}
