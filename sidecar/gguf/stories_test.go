package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// modelPath finds a file of the shared test models, skipping when the folder
// is not configured so the package still tests on a bare checkout.
func modelPath(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset; set it to the folder holding " + name + " (e.g. ../shared/models) to run this test")
	}
	return filepath.Join(dir, name)
}

func TestStories260K(t *testing.T) {
	path := modelPath(t, "stories260K.gguf")
	f, err := Open(path)
	must(t, err)
	defer f.Close()

	if f.Version != 3 || len(f.Tensors) != 48 || f.Alignment != 32 {
		t.Errorf("version %d, %d tensors, alignment %d; want 3, 48, 32", f.Version, len(f.Tensors), f.Alignment)
	}
	strs := map[string]string{"general.name": "llama", "general.architecture": "llama", "tokenizer.ggml.model": "llama"}
	for k, want := range strs {
		if got, ok := f.String(k); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", k, got, ok, want)
		}
	}
	uints := map[string]uint64{
		"llama.context_length": 128, "llama.embedding_length": 64, "llama.block_count": 5,
		"llama.feed_forward_length": 172, "llama.attention.head_count": 8, "llama.attention.head_count_kv": 4,
		"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
		"tokenizer.ggml.seperator_token_id": 0xFFFFFFFF, "tokenizer.ggml.padding_token_id": 0xFFFFFFFF,
	}
	for k, want := range uints {
		if got, ok := f.Uint(k); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", k, got, ok, want)
		}
	}
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != 1e-5 {
		t.Errorf("rms epsilon = %g, %v; want 1e-5", eps, ok)
	}
	for _, k := range []string{"general.file_type", "llama.rope.freq_base", "tokenizer.ggml.add_bos_token"} {
		if _, ok := f.Lookup(k); ok {
			t.Errorf("%s is present; the README says it is not", k)
		}
	}
	tokens, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(tokens) != 512 || tokens[1] != "<s>" || tokens[2] != "</s>" || tokens[3] != "<0x00>" {
		t.Errorf("tokens: %d, ok %v", len(tokens), ok)
	}
	if scores, ok := f.Float32s("tokenizer.ggml.scores"); !ok || len(scores) != 512 {
		t.Errorf("scores: %d, ok %v", len(scores), ok)
	}
	types, ok := f.Int32s("tokenizer.ggml.token_type")
	counts := map[int32]int{}
	for _, ty := range types {
		counts[ty]++
	}
	if !ok || len(types) != 512 || counts[1] != 253 || counts[2] != 1 || counts[3] != 2 || counts[6] != 256 {
		t.Errorf("token types: %d entries, counts %v, ok %v; want 1×253 2×1 3×2 6×256", len(types), counts, ok)
	}

	for _, ti := range f.Tensors {
		if ti.Type != tensor.F32 {
			t.Errorf("tensor %s is %s, want f32", ti.Name, ti.Type)
		}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 || emb.Dims[0] != 64 || emb.Dims[1] != 512 {
		t.Fatalf("token_embd.weight: %+v, %v", emb, ok)
	}
	m, err := f.Matrix("token_embd.weight")
	must(t, err)
	if m.Rows != 512 || m.Cols != 64 || len(m.Data) != 512*64*4 {
		t.Errorf("token_embd.weight matrix %d×%d with %d bytes", m.Rows, m.Cols, len(m.Data))
	}
	out, _ := f.Tensor("output.weight")
	if !bytes.Equal(out.Data, emb.Data) {
		t.Error("output.weight differs from token_embd.weight; the README says it is a copy")
	}
	for _, name := range []string{"output_norm.weight", "blk.4.attn_k.weight", "blk.0.ffn_down.weight"} {
		if _, ok := f.Tensor(name); !ok {
			t.Errorf("tensor %s missing", name)
		}
	}

	// Our writer lays files out as llama.cpp's does, so copying every entry
	// and tensor must reproduce the file byte for byte.
	w := NewWriter()
	for _, kv := range f.KV {
		must(t, w.SetKVTyped(kv.Key, kv.Value))
	}
	for _, ti := range f.Tensors {
		must(t, w.AddTensor(ti.Name, ti.Type, ti.Dims, ti.Data))
	}
	orig, err := os.ReadFile(path)
	must(t, err)
	if got := encode(t, w); !bytes.Equal(got, orig) {
		n := 0
		for n < min(len(got), len(orig)) && got[n] == orig[n] {
			n++
		}
		t.Errorf("rewritten file (%d bytes) differs from the original (%d bytes) from byte %d", len(got), len(orig), n)
	}
}
