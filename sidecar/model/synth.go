package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Shape is a Llama architecture's size. Random-weight models of real shapes
// let speed be measured without downloading checkpoints.
type Shape struct {
	Name                                string
	Dim, Hidden, Layers, Heads, KVHeads int
	Vocab                               int
	Ctx                                 int
}

// Shapes are the benchmark shapes: llama2.c's 15M and 110M and TinyLlama 1.1B.
var Shapes = map[string]Shape{
	"15M":  {Name: "15M", Dim: 288, Hidden: 768, Layers: 6, Heads: 6, KVHeads: 6, Vocab: 32000, Ctx: 4096},
	"110M": {Name: "110M", Dim: 768, Hidden: 2048, Layers: 12, Heads: 12, KVHeads: 12, Vocab: 32000, Ctx: 4096},
	"1.1B": {Name: "1.1B", Dim: 2048, Hidden: 5632, Layers: 22, Heads: 32, KVHeads: 4, Vocab: 32000, Ctx: 4096},
}

// synthVocab is a SentencePiece-style vocabulary of n tokens: <unk>, <s>,
// </s>, the 256 byte tokens, then filler pieces. It tokenizes any text.
func synthVocab(n int) (tokens []string, scores []float32, types []int32) {
	tokens = []string{"<unk>", "<s>", "</s>"}
	types = []int32{2, 3, 3}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	for i := len(tokens); i < n; i++ {
		tokens = append(tokens, fmt.Sprintf("▁w%d", i))
		types = append(types, 1)
	}
	scores = make([]float32, len(tokens))
	for i := range scores {
		scores[i] = -float32(i)
	}
	return tokens[:n], scores[:n], types[:n]
}

// Storable reports why a model of shape s cannot be written in dtype t
// (nil when it can): its heads must divide evenly and every row must be a
// whole number of t's blocks.
func (s Shape) Storable(t tensor.DType) error {
	if s.Heads < 1 || s.KVHeads < 1 || s.Dim%s.Heads != 0 || s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("bad shape %+v", s)
	}
	for _, n := range []int{s.Dim, s.Hidden} {
		if n%t.BlockSize() != 0 {
			return fmt.Errorf("shape %s cannot be stored as %s: row length %d is not a multiple of its block size %d", s.Name, t, n, t.BlockSize())
		}
	}
	return nil
}

// Synthesize writes a GGUF llama model of the given shape with random
// weights (normal, std 0.02, seeded) in dtype t; norms stay f32, as
// converters write them.
func Synthesize(path string, s Shape, t tensor.DType, seed uint64) error {
	if err := s.Storable(t); err != nil {
		return err
	}
	w := gguf.NewWriter()
	kv := func(k string, v any) {
		if err := w.SetKV(k, v); err != nil {
			panic(err) // only for programmer errors: the values here are fixed types
		}
	}
	kv("general.architecture", "llama")
	kv("general.name", "synthetic-"+s.Name+"-"+t.String())
	kv("llama.context_length", uint32(s.Ctx))
	kv("llama.embedding_length", uint32(s.Dim))
	kv("llama.feed_forward_length", uint32(s.Hidden))
	kv("llama.block_count", uint32(s.Layers))
	kv("llama.attention.head_count", uint32(s.Heads))
	kv("llama.attention.head_count_kv", uint32(s.KVHeads))
	kv("llama.attention.layer_norm_rms_epsilon", float32(1e-5))
	kv("llama.rope.freq_base", float32(10000))
	toks, scores, types := synthVocab(s.Vocab)
	kv("tokenizer.ggml.model", "llama")
	kv("tokenizer.ggml.tokens", toks)
	kv("tokenizer.ggml.scores", scores)
	kv("tokenizer.ggml.token_type", types)
	kv("tokenizer.ggml.bos_token_id", uint32(1))
	kv("tokenizer.ggml.eos_token_id", uint32(2))
	kv("tokenizer.ggml.unknown_token_id", uint32(0))

	rng := rand.New(rand.NewPCG(seed, 0x5e7))
	var err error
	add := func(name string, dt tensor.DType, rows, cols int, norm bool) {
		if err != nil {
			return
		}
		v := make([]float32, rows*cols)
		for i := range v {
			if norm {
				v[i] = 1 + 0.1*float32(rng.NormFloat64())
			} else {
				v[i] = 0.02 * float32(rng.NormFloat64())
			}
		}
		var data []byte
		if data, err = tensor.Quantize(dt, v); err != nil {
			return
		}
		dims := []uint64{uint64(cols)}
		if rows > 1 || !norm {
			dims = append(dims, uint64(rows))
		}
		err = w.AddTensor(name, dt, dims, data)
	}
	kvd := s.Dim / s.Heads * s.KVHeads
	add("token_embd.weight", t, s.Vocab, s.Dim, false)
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", tensor.F32, 1, s.Dim, true)
		add(p+"attn_q.weight", t, s.Dim, s.Dim, false)
		add(p+"attn_k.weight", t, kvd, s.Dim, false)
		add(p+"attn_v.weight", t, kvd, s.Dim, false)
		add(p+"attn_output.weight", t, s.Dim, s.Dim, false)
		add(p+"ffn_norm.weight", tensor.F32, 1, s.Dim, true)
		add(p+"ffn_gate.weight", t, s.Hidden, s.Dim, false)
		add(p+"ffn_up.weight", t, s.Hidden, s.Dim, false)
		add(p+"ffn_down.weight", t, s.Dim, s.Hidden, false)
	}
	add("output_norm.weight", tensor.F32, 1, s.Dim, true)
	add("output.weight", t, s.Vocab, s.Dim, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return w.WriteFile(path)
}

// SynthesizedPath is where a cached synthetic model of shape and dtype lives
// under dir.
func SynthesizedPath(dir string, s Shape, t tensor.DType) string {
	return filepath.Join(dir, fmt.Sprintf("synthetic-%s-%s.gguf", s.Name, t))
}
