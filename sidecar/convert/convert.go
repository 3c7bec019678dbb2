// Package convert turns a llama2.c checkpoint and its tokenizer.bin into a
// GGUF file that llama.cpp and fastgen both load, without copying tensor
// data through an intermediate format.
package convert

import (
	"fmt"
	"strings"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/llama2c"
	"github.com/fastgen/fastgen/sidecar/tensor"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// Llama2c converts checkpoint in (with tokenizer tok) to the GGUF file out,
// written atomically: on error no partial file is left.
func Llama2c(in, tok, out string) error {
	ck, err := llama2c.Open(in)
	if err != nil {
		return err
	}
	defer ck.Close()
	c := ck.Config
	v, err := tokenizer.ReadLlama2c(tok, c.VocabSize)
	if err != nil {
		return err
	}
	w := gguf.NewWriter()
	set := func(k string, val any) {
		if err == nil {
			err = w.SetKV(k, val)
		}
	}
	set("general.architecture", "llama")
	set("general.name", "llama")
	// The checkpoint's seq_len is the context the model was trained with.
	set("llama.context_length", uint32(c.SeqLen))
	set("llama.embedding_length", uint32(c.Dim))
	set("llama.feed_forward_length", uint32(c.HiddenDim))
	set("llama.block_count", uint32(c.NLayers))
	set("llama.attention.head_count", uint32(c.NHeads))
	set("llama.attention.head_count_kv", uint32(c.NKVHeads))
	set("llama.rope.dimension_count", uint32(c.HeadSize()))
	set("llama.attention.layer_norm_rms_epsilon", float32(1e-5))
	set("llama.rope.freq_base", float32(10000))

	tokens, types := ggufVocab(v)
	set("tokenizer.ggml.model", "llama")
	set("tokenizer.ggml.tokens", tokens)
	set("tokenizer.ggml.scores", v.Scores)
	set("tokenizer.ggml.token_type", types)
	set("tokenizer.ggml.unknown_token_id", uint32(max(v.UNK, 0)))
	set("tokenizer.ggml.bos_token_id", uint32(v.BOS))
	set("tokenizer.ggml.eos_token_id", uint32(v.EOS))
	set("tokenizer.ggml.add_bos_token", true)
	if err != nil {
		return err
	}
	for _, name := range ck.Names() {
		m, _ := ck.Tensor(name)
		if name == "output.weight" && c.SharedClassifier {
			continue // tied to token_embd.weight; loaders fall back to it
		}
		dims := []uint64{uint64(m.Cols)}
		if m.Rows > 1 || strings.HasSuffix(name, "embd.weight") || !strings.Contains(name, "norm") {
			dims = append(dims, uint64(m.Rows))
		}
		if err := w.AddTensor(name, tensor.F32, dims, m.Data); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return w.WriteFile(out)
}

// ggufVocab writes a llama2.c vocabulary the way SentencePiece GGUF files
// hold it: ▁ for spaces, and the control tokens' bare names.
func ggufVocab(v *tokenizer.Vocab) ([]string, []int32) {
	tokens := make([]string, len(v.Tokens))
	types := make([]int32, len(v.Tokens))
	for i, t := range v.Tokens {
		typ := tokenizer.Normal
		if v.Types != nil {
			typ = v.Types[i]
		}
		types[i] = int32(typ)
		switch {
		case i == v.BOS:
			tokens[i] = "<s>"
		case i == v.EOS:
			tokens[i] = "</s>"
		case i == v.UNK:
			tokens[i] = "<unk>"
		case typ == tokenizer.Byte:
			tokens[i] = t
		default:
			tokens[i] = strings.ReplaceAll(t, " ", "▁")
		}
	}
	return tokens, types
}
