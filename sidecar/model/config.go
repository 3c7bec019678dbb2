// Package model holds the Llama-family architectures (llama, qwen2): their
// configuration from file metadata, their weights as tensor views of the
// mapped file, and the forward pass over a kvcache.Cache.
package model

import (
	"fmt"
	"math"
)

// Config is an architecture's shape and numerics, read from the model file.
type Config struct {
	Arch     string // "llama" or "qwen2"
	Name     string
	Dim      int
	Hidden   int
	Layers   int
	Heads    int
	KVHeads  int
	HeadDim  int
	Vocab    int
	Ctx      int // context limit in use (--ctx overrides the file's)
	TrainCtx int // the context length the file declares

	Eps       float32
	RopeBase  float64
	RopeDim   int     // leading dims of each head that are rotated
	RopeScale float64 // linear position scaling factor (1 = none)
	RopeNeoX  bool    // rotate (i, i+d/2) pairs instead of adjacent (2i, 2i+1)
	QKVBias   bool
}

// KVDim is the width of one token's K (or V) over all KV heads.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim }

// Groups is the number of query heads that share one KV head.
func (c Config) Groups() int { return c.Heads / c.KVHeads }

func (c Config) validate() error {
	switch {
	case c.Dim <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0:
		return fmt.Errorf("model shape has a non-positive size (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d)",
			c.Dim, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Vocab)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("dim %d is not a multiple of the head count %d", c.Dim, c.Heads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("head count %d is not a multiple of the KV head count %d", c.Heads, c.KVHeads)
	case c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0:
		return fmt.Errorf("rope dimension %d does not fit head dim %d", c.RopeDim, c.HeadDim)
	case c.Ctx <= 0:
		return fmt.Errorf("context length %d must be positive", c.Ctx)
	case !(c.RopeBase > 0) || math.IsInf(c.RopeBase, 0):
		return fmt.Errorf("rope base %v must be positive", c.RopeBase)
	case !(c.Eps > 0):
		return fmt.Errorf("rms norm epsilon %v must be positive", c.Eps)
	}
	return nil
}
