package model

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/llama2c"
	"github.com/fastgen/fastgen/sidecar/mmap"
	"github.com/fastgen/fastgen/sidecar/tensor"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// Error is a model that cannot be loaded: a bad or unsupported file. Callers
// treat it as bad input (exit status 2).
type Error struct {
	Path    string
	Problem string
}

func (e *Error) Error() string { return filepath.Base(e.Path) + ": " + e.Problem }

// IsBadModel reports whether err means the model file (or its tokenizer) is
// unusable, as opposed to a failure of the machine.
func IsBadModel(err error) bool {
	var me *Error
	var ge *gguf.Error
	var le *llama2c.Error
	return errors.As(err, &me) || errors.As(err, &ge) || errors.As(err, &le)
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Tokenizer is a llama2.c tokenizer.bin for .bin checkpoints; empty looks
	// for tokenizer.bin, then tok<vocab>.bin, beside the checkpoint.
	Tokenizer string
	// Ctx overrides the context length (0 = the file's; for llama2.c
	// checkpoints, seq_len).
	Ctx int
	// NoMmap copies the file into memory backed by 2 MB pages where the OS
	// offers them (mmap.Read) instead of mapping it: decode streams the
	// weights faster where the mapping gets only 4 KB pages (see
	// mmap.File), loading reads the whole file, and the memory is the
	// process's own rather than shared page cache.
	NoMmap bool
}

// loader is how opt says to get a file's bytes.
func (opt LoadOptions) loader() mmap.Loader {
	if opt.NoMmap {
		return mmap.Read
	}
	return mmap.Open
}

// Model is a loaded model: configuration, weights (views of the mapped file)
// and tokenizer vocabulary.
type Model struct {
	Config Config
	Vocab  *tokenizer.Vocab
	Path   string

	embed   *tensor.Matrix
	output  *tensor.Matrix
	outNorm []float32
	layers  []layer
	// invFreq[i] is the rotation frequency of pair i, with scaling applied.
	invFreq []float64
	closer  io.Closer
}

type layer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    *tensor.Matrix
	bq, bk, bv        []float32
	gate, up, down    *tensor.Matrix
}

// WeightBytes is the size of the weights read per decoded token.
func (m *Model) WeightBytes() int64 {
	n := int64(m.output.Bytes()) + int64(4*len(m.outNorm))
	for _, l := range m.layers {
		for _, w := range []*tensor.Matrix{l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down} {
			n += int64(w.Bytes())
		}
		n += int64(4 * (len(l.attnNorm) + len(l.ffnNorm)))
	}
	return n
}

// Close releases the mapped file.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	err := m.closer.Close()
	m.closer = nil
	return err
}

// Load opens a GGUF file or a llama2.c checkpoint, by its first bytes.
func Load(path string, opt LoadOptions) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{path, fmt.Sprintf("cannot open model: %v", unwrapPathErr(err))}
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil {
		return nil, &Error{path, "file is too short to be a model (under 4 bytes)"}
	}
	if string(magic) == gguf.Magic {
		return loadGGUF(path, opt)
	}
	return loadLlama2c(path, opt)
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// tensorSource is what the two file formats share: named matrices.
type tensorSource func(name string) (*tensor.Matrix, bool)

func loadGGUF(path string, opt LoadOptions) (*Model, error) {
	f, err := gguf.OpenWith(path, opt.loader())
	if err != nil {
		return nil, err
	}
	m, err := fromGGUF(f, opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.closer = f
	return m, nil
}

func fromGGUF(f *gguf.File, opt LoadOptions) (*Model, error) {
	path := f.Path
	bad := func(format string, a ...any) error { return &Error{path, fmt.Sprintf(format, a...)} }
	arch, ok := f.String("general.architecture")
	if !ok {
		return nil, bad("no general.architecture key: not a model GGUF")
	}
	if arch != "llama" && arch != "qwen2" {
		return nil, bad("unsupported architecture %q (fastgen runs llama and qwen2)", arch)
	}
	u := func(key string, def int) (int, error) {
		v, ok := f.Uint(arch + "." + key)
		if !ok {
			if def < 0 {
				return 0, bad("missing %s.%s", arch, key)
			}
			return def, nil
		}
		if v > math.MaxInt32 {
			return 0, bad("%s.%s = %d is out of range", arch, key, v)
		}
		return int(v), nil
	}
	var c Config
	c.Arch = arch
	c.Name, _ = f.String("general.name")
	var err error
	if c.Dim, err = u("embedding_length", -1); err != nil {
		return nil, err
	}
	if c.Hidden, err = u("feed_forward_length", -1); err != nil {
		return nil, err
	}
	if c.Layers, err = u("block_count", -1); err != nil {
		return nil, err
	}
	if c.Heads, err = u("attention.head_count", -1); err != nil {
		return nil, err
	}
	if c.KVHeads, err = u("attention.head_count_kv", c.Heads); err != nil {
		return nil, err
	}
	if c.TrainCtx, err = u("context_length", 2048); err != nil {
		return nil, err
	}
	if c.Heads > 0 {
		c.HeadDim = c.Dim / c.Heads
	}
	if c.RopeDim, err = u("rope.dimension_count", c.HeadDim); err != nil {
		return nil, err
	}
	c.Eps = 1e-5
	if v, ok := f.Float(arch + ".attention.layer_norm_rms_epsilon"); ok {
		c.Eps = float32(v)
	}
	c.RopeBase = 10000
	if v, ok := f.Float(arch + ".rope.freq_base"); ok {
		c.RopeBase = v
	}
	c.RopeScale = 1
	if typ, _ := f.String(arch + ".rope.scaling.type"); typ == "linear" {
		if v, ok := f.Float(arch + ".rope.scaling.factor"); ok && v > 0 {
			c.RopeScale = v
		}
	} else if typ != "" && typ != "none" {
		return nil, bad("unsupported rope scaling %q (fastgen supports linear)", typ)
	}
	// llama.cpp's converters permute llama Q/K weights so adjacent pairs
	// rotate; qwen2 keeps Hugging Face's half-split (NeoX) layout.
	c.RopeNeoX = arch == "qwen2"

	v, err := vocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	c.Vocab = len(v.Tokens)
	if n, ok := f.Uint(arch + ".vocab_size"); ok && int(n) != c.Vocab {
		return nil, bad("%s.vocab_size is %d but the tokenizer has %d tokens", arch, n, c.Vocab)
	}
	c.Ctx = c.TrainCtx
	if opt.Ctx > 0 {
		c.Ctx = opt.Ctx
	}
	var freqs []float32
	if t, ok := f.Tensor("rope_freqs.weight"); ok {
		if t.Type != tensor.F32 {
			return nil, bad("rope_freqs.weight has type %s, want f32", t.Type)
		}
		freqs = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(t.Data))), len(t.Data)/4)
	}
	src := func(name string) (*tensor.Matrix, bool) {
		if _, ok := f.Tensor(name); !ok {
			return nil, false
		}
		mat, err := f.Matrix(name)
		return mat, err == nil
	}
	return build(path, c, v, src, freqs)
}

func vocabFromGGUF(f *gguf.File) (*tokenizer.Vocab, error) {
	bad := func(format string, a ...any) error { return &Error{f.Path, fmt.Sprintf(format, a...)} }
	v := &tokenizer.Vocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	var ok bool
	if v.Model, ok = f.String("tokenizer.ggml.model"); !ok {
		return nil, bad("missing tokenizer (no tokenizer.ggml.model key)")
	}
	if v.Tokens, ok = f.Strings("tokenizer.ggml.tokens"); !ok || len(v.Tokens) == 0 {
		return nil, bad("missing tokenizer (no tokenizer.ggml.tokens)")
	}
	v.Scores, _ = f.Float32s("tokenizer.ggml.scores")
	if types, ok := f.Int32s("tokenizer.ggml.token_type"); ok {
		v.Types = make([]tokenizer.TokenType, len(types))
		for i, t := range types {
			v.Types[i] = tokenizer.TokenType(t)
		}
	}
	v.Merges, _ = f.Strings("tokenizer.ggml.merges")
	id := func(key string) int {
		n, ok := f.Uint(key)
		if !ok || n >= uint64(len(v.Tokens)) {
			return -1 // absent or 0xFFFFFFFF ("none")
		}
		return int(n)
	}
	v.BOS, v.EOS = id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id")
	v.UNK, v.PAD = id("tokenizer.ggml.unknown_token_id"), id("tokenizer.ggml.padding_token_id")
	// llama.cpp adds BOS for SentencePiece vocabs unless told otherwise.
	v.AddBOS = v.Model == "llama"
	if b, ok := f.Bool("tokenizer.ggml.add_bos_token"); ok {
		v.AddBOS = b
	}
	v.AddEOS, _ = f.Bool("tokenizer.ggml.add_eos_token")
	v.Pre, _ = f.String("tokenizer.ggml.pre")
	v.ChatTemplate, _ = f.String("tokenizer.chat_template")
	if _, err := tokenizer.New(v); err != nil {
		return nil, bad("bad tokenizer: %v", err)
	}
	return v, nil
}

func loadLlama2c(path string, opt LoadOptions) (*Model, error) {
	ck, err := llama2c.OpenWith(path, opt.loader())
	if err != nil {
		return nil, err
	}
	h := ck.Config
	tokPath := opt.Tokenizer
	if tokPath == "" {
		dir := filepath.Dir(path)
		for _, name := range []string{"tokenizer.bin", fmt.Sprintf("tok%d.bin", h.VocabSize)} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				tokPath = filepath.Join(dir, name)
				break
			}
		}
		if tokPath == "" {
			ck.Close()
			return nil, &Error{path, fmt.Sprintf("missing tokenizer: pass --tokenizer (no tokenizer.bin or tok%d.bin beside the checkpoint)", h.VocabSize)}
		}
	}
	v, err := tokenizer.ReadLlama2c(tokPath, h.VocabSize)
	if err != nil {
		ck.Close()
		return nil, &Error{tokPath, err.Error()}
	}
	c := Config{
		Arch: "llama", Name: filepath.Base(path),
		Dim: h.Dim, Hidden: h.HiddenDim, Layers: h.NLayers, Heads: h.NHeads, KVHeads: h.NKVHeads,
		Vocab: h.VocabSize, TrainCtx: h.SeqLen, Ctx: h.SeqLen,
		Eps: 1e-5, RopeBase: 10000, RopeScale: 1,
	}
	if h.NHeads > 0 {
		c.HeadDim = h.Dim / h.NHeads
	}
	c.RopeDim = c.HeadDim
	if opt.Ctx > 0 {
		c.Ctx = opt.Ctx
	}
	m, err := build(path, c, v, ck.Tensor, nil)
	if err != nil {
		ck.Close()
		return nil, err
	}
	m.closer = ck
	return m, nil
}

// build checks every tensor's presence and shape and assembles the model.
func build(path string, c Config, v *tokenizer.Vocab, src tensorSource, ropeFreqs []float32) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, &Error{path, err.Error()}
	}
	var firstErr error
	mat := func(name string, rows, cols int) *tensor.Matrix {
		m, ok := src(name)
		if firstErr != nil {
			return nil
		}
		if !ok {
			firstErr = &Error{path, fmt.Sprintf("missing tensor %q", name)}
			return nil
		}
		if m.Rows != rows || m.Cols != cols {
			firstErr = &Error{path, fmt.Sprintf("tensor %q is %d×%d, want %d×%d", name, m.Rows, m.Cols, rows, cols)}
			return nil
		}
		return m
	}
	vec := func(name string, n int) []float32 {
		m := mat(name, 1, n)
		if m == nil {
			return nil
		}
		out := make([]float32, n)
		m.Row(0, out) // norms are tiny: a private f32 copy whatever their dtype
		return out
	}
	optVec := func(name string, n int) []float32 {
		if _, ok := src(name); !ok {
			return nil
		}
		return vec(name, n)
	}
	m := &Model{Config: c, Vocab: v, Path: path}
	m.embed = mat("token_embd.weight", c.Vocab, c.Dim)
	m.outNorm = vec("output_norm.weight", c.Dim)
	if _, ok := src("output.weight"); ok {
		m.output = mat("output.weight", c.Vocab, c.Dim)
	} else {
		m.output = m.embed // tied embeddings
	}
	kv := c.KVDim()
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		l := layer{
			attnNorm: vec(p+"attn_norm.weight", c.Dim),
			wq:       mat(p+"attn_q.weight", c.Dim, c.Dim),
			wk:       mat(p+"attn_k.weight", kv, c.Dim),
			wv:       mat(p+"attn_v.weight", kv, c.Dim),
			wo:       mat(p+"attn_output.weight", c.Dim, c.Dim),
			ffnNorm:  vec(p+"ffn_norm.weight", c.Dim),
			gate:     mat(p+"ffn_gate.weight", c.Hidden, c.Dim),
			up:       mat(p+"ffn_up.weight", c.Hidden, c.Dim),
			down:     mat(p+"ffn_down.weight", c.Dim, c.Hidden),
			bq:       optVec(p+"attn_q.bias", c.Dim),
			bk:       optVec(p+"attn_k.bias", kv),
			bv:       optVec(p+"attn_v.bias", kv),
		}
		m.layers = append(m.layers, l)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if c.Arch == "qwen2" && (m.layers[0].bq == nil || m.layers[0].bk == nil || m.layers[0].bv == nil) {
		return nil, &Error{path, "qwen2 model lacks its attn_q/k/v biases"}
	}
	m.Config.QKVBias = m.layers[0].bq != nil
	half := c.RopeDim / 2
	if ropeFreqs != nil && len(ropeFreqs) != half {
		return nil, &Error{path, fmt.Sprintf("rope_freqs.weight has %d values, want %d", len(ropeFreqs), half)}
	}
	m.invFreq = make([]float64, half)
	for i := range m.invFreq {
		f := math.Pow(c.RopeBase, -float64(2*i)/float64(c.RopeDim)) / c.RopeScale
		if ropeFreqs != nil {
			f /= float64(ropeFreqs[i])
		}
		m.invFreq[i] = f
	}
	return m, nil
}
