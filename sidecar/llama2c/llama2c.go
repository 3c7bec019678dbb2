// Package llama2c reads llama2.c's legacy checkpoint format (the one run.c
// loads): a 7×int32 header followed by float32 weights in a fixed order.
//
// The file is mapped read-only and its tensors are exposed as F32
// tensor.Matrix views under the tensor names a GGUF conversion of the same
// model uses, so the model code can load either format through one path.
package llama2c

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/fastgen/fastgen/sidecar/mmap"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// headerSize is seven little-endian int32s.
const headerSize = 7 * 4

// Config is the checkpoint header, with the sign of vocab_size decoded.
type Config struct {
	Dim, HiddenDim, NLayers, NHeads, NKVHeads, VocabSize, SeqLen int
	// SharedClassifier is true when the output projection is the token
	// embedding (a positive vocab_size in the file).
	SharedClassifier bool
}

// HeadSize is the dimension of one attention head.
func (c Config) HeadSize() int { return c.Dim / c.NHeads }

// KVDim is the width of the K and V projections (grouped-query attention
// shares each KV head among NHeads/NKVHeads query heads).
func (c Config) KVDim() int { return c.Dim / c.NHeads * c.NKVHeads }

// Checkpoint is an opened llama2.c checkpoint.
type Checkpoint struct {
	Path   string
	Config Config
	// HasRoPETables reports whether the file carries the freq_cis_real and
	// freq_cis_imag tables llama2.c's exporter writes; they are skipped,
	// since RoPE is computed, but their presence decides where wcls sits.
	HasRoPETables bool

	tensors map[string]tensor.Matrix
	names   []string
	unmap   func() error
	closed  bool
}

// Error is a problem with a checkpoint file: Error() is one sentence naming
// the file and what is wrong. Kind is one of the Err* sentinels.
type Error struct {
	Path    string
	Problem string
	Kind    error
}

func (e *Error) Error() string { return e.Path + ": " + e.Problem }

// Unwrap exposes Kind to errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

// Kinds of Error.
var (
	ErrHeader    = errors.New("invalid llama2.c header")
	ErrTruncated = errors.New("truncated llama2.c checkpoint")
	ErrSize      = errors.New("llama2.c checkpoint size does not match its header")
)

func errorf(path string, kind error, format string, args ...any) *Error {
	return &Error{Path: path, Problem: fmt.Sprintf(format, args...), Kind: kind}
}

// Open maps path read-only and parses it. The Checkpoint must be closed.
func Open(path string) (*Checkpoint, error) { return OpenWith(path, mmap.Open) }

// OpenWith is Open with the file's bytes from load (mmap.Read copies them).
func OpenWith(path string, load mmap.Loader) (*Checkpoint, error) {
	data, unmap, err := load(path)
	switch {
	case errors.Is(err, mmap.ErrDirectory):
		return nil, errorf(path, ErrHeader, "is a directory, not a llama2.c checkpoint")
	case err != nil:
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	c.unmap = unmap
	return c, nil
}

// Close releases the mapping; matrices obtained earlier must not be used
// afterwards. Close is safe to call more than once.
func (c *Checkpoint) Close() error {
	if c == nil || c.closed {
		return nil
	}
	c.closed = true
	c.tensors = nil
	if c.unmap == nil {
		return nil
	}
	return c.unmap()
}

// Tensor returns an F32 view of the named tensor. Norm weights are 1×Dim
// matrices; output.weight is the embedding itself when the classifier is
// shared.
func (c *Checkpoint) Tensor(name string) (*tensor.Matrix, bool) {
	m, ok := c.tensors[name]
	if !ok {
		return nil, false
	}
	return &m, true
}

// Names lists the tensors in a stable order, the one llama.cpp's
// llama2.c converter writes: embedding, final norm, classifier, then each
// layer's attention and feed-forward tensors.
func (c *Checkpoint) Names() []string {
	if c.closed {
		return nil
	}
	return append([]string(nil), c.names...)
}

// Parse parses a checkpoint held in data; the matrices alias data. path only
// names the file in errors. Close on the result is a no-op.
func Parse(path string, data []byte) (*Checkpoint, error) {
	if len(data) < headerSize {
		return nil, errorf(path, ErrTruncated, "is %d bytes, shorter than the %d-byte llama2.c header", len(data), headerSize)
	}
	var h [7]int64
	for i := range h {
		h[i] = int64(int32(binary.LittleEndian.Uint32(data[4*i:])))
	}
	fields := [7]string{"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"}
	for i, v := range h {
		if v <= 0 && !(i == 5 && v < 0) {
			return nil, errorf(path, ErrHeader, "has %s = %d in its header; it must be positive", fields[i], v)
		}
	}
	cfg := Config{
		Dim: int(h[0]), HiddenDim: int(h[1]), NLayers: int(h[2]), NHeads: int(h[3]), NKVHeads: int(h[4]),
		VocabSize: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0,
	}
	if cfg.VocabSize < 0 {
		cfg.VocabSize = -cfg.VocabSize // int32 widened first, so MinInt32 negates safely
	}
	switch {
	case cfg.Dim%cfg.NHeads != 0:
		return nil, errorf(path, ErrHeader, "has dim %d, which is not divisible by n_heads %d", cfg.Dim, cfg.NHeads)
	case cfg.NHeads%cfg.NKVHeads != 0:
		return nil, errorf(path, ErrHeader, "has n_heads %d, which is not a multiple of n_kv_heads %d", cfg.NHeads, cfg.NKVHeads)
	case cfg.HeadSize()%2 != 0:
		return nil, errorf(path, ErrHeader, "has an odd head size %d (dim %d / n_heads %d); rotary embeddings need pairs",
			cfg.HeadSize(), cfg.Dim, cfg.NHeads)
	}

	l := newLayout(cfg)
	if l.overflow {
		return nil, errorf(path, ErrHeader, "has a header (%s) that implies more weights than any file can hold", cfg)
	}
	size := uint64(len(data))
	ropeBytes := 4 * uint64(cfg.SeqLen) * uint64(cfg.HeadSize()) // real and imaginary halves
	clsBytes := uint64(0)
	if !cfg.SharedClassifier {
		clsBytes = 4 * uint64(cfg.VocabSize) * uint64(cfg.Dim)
	}
	without := l.end + clsBytes
	with := without + ropeBytes
	var hasRoPE bool
	switch size {
	case with:
		hasRoPE = true
	case without:
	default:
		if size < without {
			return nil, errorf(path, ErrTruncated, "is %d bytes, but its header (%s) implies %d bytes (%d with the RoPE tables)",
				size, cfg, without, with)
		}
		return nil, errorf(path, ErrSize, "is %d bytes, but its header (%s) implies exactly %d bytes, or %d with the RoPE tables",
			size, cfg, without, with)
	}

	c := &Checkpoint{Path: path, Config: cfg, HasRoPETables: hasRoPE, tensors: map[string]tensor.Matrix{}}
	add := func(name string, off uint64, rows, cols int) {
		end := off + 4*uint64(rows)*uint64(cols)
		c.tensors[name] = tensor.Matrix{Type: tensor.F32, Rows: rows, Cols: cols, Data: data[off:end:end]}
		c.names = append(c.names, name)
	}
	d, hd, kv := cfg.Dim, cfg.HiddenDim, cfg.KVDim()
	add("token_embd.weight", l.embedding, cfg.VocabSize, d)
	add("output_norm.weight", l.rmsFinal, 1, d)
	if cfg.SharedClassifier {
		add("output.weight", l.embedding, cfg.VocabSize, d)
	} else {
		off := l.end
		if hasRoPE {
			off += ropeBytes
		}
		add("output.weight", off, cfg.VocabSize, d)
	}
	for i := range cfg.NLayers {
		blk := fmt.Sprintf("blk.%d.", i)
		at := func(base uint64, per uint64) uint64 { return base + uint64(i)*per }
		add(blk+"attn_q.weight", at(l.wq, 4*uint64(d)*uint64(d)), d, d)
		add(blk+"attn_k.weight", at(l.wk, 4*uint64(kv)*uint64(d)), kv, d)
		add(blk+"attn_v.weight", at(l.wv, 4*uint64(kv)*uint64(d)), kv, d)
		add(blk+"attn_output.weight", at(l.wo, 4*uint64(d)*uint64(d)), d, d)
		add(blk+"attn_norm.weight", at(l.rmsAtt, 4*uint64(d)), 1, d)
		add(blk+"ffn_gate.weight", at(l.w1, 4*uint64(hd)*uint64(d)), hd, d)
		add(blk+"ffn_down.weight", at(l.w2, 4*uint64(d)*uint64(hd)), d, hd)
		add(blk+"ffn_up.weight", at(l.w3, 4*uint64(hd)*uint64(d)), hd, d)
		add(blk+"ffn_norm.weight", at(l.rmsFFN, 4*uint64(d)), 1, d)
	}
	return c, nil
}

func (c Config) String() string {
	return fmt.Sprintf("dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d",
		c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, c.VocabSize, c.SeqLen)
}

// layout holds the byte offset of each weight group in run.c's order and
// where the last of them (rms_final_weight) ends.
type layout struct {
	embedding, rmsAtt, wq, wk, wv, wo, rmsFFN, w1, w2, w3, rmsFinal, end uint64
	overflow                                                             bool
}

func newLayout(c Config) layout {
	var l layout
	off := uint64(headerSize)
	// next reserves a group of float32s, noting overflow instead of wrapping,
	// so a hostile header cannot produce offsets that pass the size check.
	next := func(dims ...int) uint64 {
		n := uint64(4)
		for _, d := range dims {
			hi, lo := bits.Mul64(n, uint64(d))
			if hi != 0 || lo > math.MaxInt64 {
				l.overflow = true
				return 0
			}
			n = lo
		}
		at := off
		if off+n < off || off+n > math.MaxInt64 {
			l.overflow = true
		}
		off += n
		return at
	}
	L, d, hd, kv := c.NLayers, c.Dim, c.HiddenDim, c.KVDim()
	l.embedding = next(c.VocabSize, d)
	l.rmsAtt = next(L, d)
	l.wq = next(L, d, d)
	l.wk = next(L, kv, d)
	l.wv = next(L, kv, d)
	l.wo = next(L, d, d)
	l.rmsFFN = next(L, d)
	l.w1 = next(L, hd, d)
	l.w2 = next(L, d, hd)
	l.w3 = next(L, hd, d)
	l.rmsFinal = next(d)
	// Reserve the optional tables and classifier too, so the sums in Parse
	// cannot overflow either.
	l.end = off
	next(c.SeqLen, c.HeadSize())
	next(c.VocabSize, d)
	return l
}
