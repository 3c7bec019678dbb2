package model

import (
	"context"
	"fmt"
	"math"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Profiler watches a prefill (FastGen profiling). For each layer, Begin
// comes once the batch's keys are cached, with the attention scale; Row sees every (token, KV head)
// attention row as the forward pass computes it, on one of workers
// goroutines (rows of one head may arrive on different workers at once);
// Layer comes after the layer's attention, with the batch's post-RoPE
// queries (row stride qStride) for anything it must recompute.
type Profiler interface {
	Begin(layer, workers int, cache *kvcache.Cache, scale float32)
	Row(worker, layer, kvHead, token int, probs, lse []float32, groups, limit int)
	Layer(layer int, q []float32, qStride int, cache *kvcache.Cache, scale float32, pool *tensor.Pool)
}

// Batch is one call of the forward pass.
type Batch struct {
	Tokens []int
	Flags  []kvcache.Flags // class of each token, cached beside its K/V
	// Observe makes every head update its scores and re-apply its policy
	// after attending (decode steps: attend first, then evict).
	Observe bool
	// Profiler, when set, is called after each layer (FastGen prefill).
	Profiler Profiler
	// AllLogits asks for the logits of every position, not only the last.
	AllLogits bool
	// Ctx, when set, is checked between layers so that a long prefill stops
	// soon after its request is cancelled (the cache is then unusable and
	// must be closed). Progress, when set, is told each finished layer.
	Ctx      context.Context
	Progress func(layer int)
	// Attention, when set, sees every head's attention probabilities right
	// after it attends (before any eviction), e.g. to measure attention loss
	// against a shadow full cache. Calls for different heads run
	// concurrently.
	Attention AttentionObserver
}

// AttentionObserver receives attention probabilities: groups rows of limit
// values, row g at probs[g*limit:], over the head's first limit entries.
// worker (< the backend's thread count) lets it keep per-worker state.
type AttentionObserver interface {
	Attention(worker, layer, kvHead, token int, probs []float32, groups, limit int)
}

// State is one sequence's working memory for the forward pass. Buffers grow
// to the largest batch seen and are then reused, so decode allocates nothing.
// A State is used by one goroutine at a time.
type State struct {
	m    *Model
	pool *tensor.Pool

	batch              int
	x, xb, xb2, q, att []float32 // batch × dim
	k, v               []float32 // batch × kvDim
	hb, hb2            []float32 // batch × hidden
	cos, sin           []float32 // batch × ropeDim/2
	logits             []float32
	attn               attnTask
	rows               rowTask
	workerProbs        [][]float32 // per worker: groups × ctx
	workerLSE          [][]float32 // per worker: groups
	workerScratch      []kvcache.Scratch
	workerPrompt       []kvcache.PrefillScratch
	workerSink         []rowSink
}

// NewState prepares working memory for decoding with m on pool's threads.
func NewState(m *Model, pool *tensor.Pool) *State {
	s := &State{m: m, pool: pool}
	c := m.Config
	s.workerProbs = make([][]float32, pool.Threads())
	s.workerLSE = make([][]float32, pool.Threads())
	for i := range s.workerProbs {
		s.workerProbs[i] = make([]float32, c.Groups()*c.Ctx)
		s.workerLSE[i] = make([]float32, c.Groups())
	}
	s.workerScratch = make([]kvcache.Scratch, pool.Threads())
	s.workerPrompt = make([]kvcache.PrefillScratch, pool.Threads())
	s.workerSink = make([]rowSink, pool.Threads())
	s.grow(1)
	return s
}

// Model returns the model the state runs.
func (s *State) Model() *Model { return s.m }

// Pool returns the worker pool the state computes on.
func (s *State) Pool() *tensor.Pool { return s.pool }

func (s *State) grow(n int) {
	if n <= s.batch {
		return
	}
	c := s.m.Config
	s.batch = n
	s.x = make([]float32, n*c.Dim)
	s.xb = make([]float32, n*c.Dim)
	s.xb2 = make([]float32, n*c.Dim)
	s.q = make([]float32, n*c.Dim)
	s.att = make([]float32, n*c.Dim)
	s.k = make([]float32, n*c.KVDim())
	s.v = make([]float32, n*c.KVDim())
	s.hb = make([]float32, n*c.Hidden)
	s.hb2 = make([]float32, n*c.Hidden)
	s.cos = make([]float32, n*c.RopeDim/2)
	s.sin = make([]float32, n*c.RopeDim/2)
}

// Forward runs the batch at the cache's current length and appends its
// tokens to the cache. It returns the logits of the last token (vocab
// values), or of every token (n × vocab) with AllLogits. The returned slice
// is reused by the next call.
func (s *State) Forward(cache *kvcache.Cache, b Batch) ([]float32, error) {
	c := s.m.Config
	n := len(b.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("forward: empty batch")
	}
	if len(b.Flags) != n {
		return nil, fmt.Errorf("forward: %d tokens but %d flags", n, len(b.Flags))
	}
	if b.Observe && n != 1 {
		return nil, fmt.Errorf("forward: observing decode steps takes one token at a time, not %d", n)
	}
	if cache.Len()+n > c.Ctx {
		return nil, fmt.Errorf("context full: %d cached + %d new tokens exceed the context length %d", cache.Len(), n, c.Ctx)
	}
	for _, t := range b.Tokens {
		if t < 0 || t >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d outside the vocabulary (%d)", t, c.Vocab)
		}
	}
	s.grow(n)
	dim, kvd, hd := c.Dim, c.KVDim(), c.HeadDim
	x := s.x[:n*dim]
	for i, t := range b.Tokens {
		s.m.embed.Row(t, x[i*dim:(i+1)*dim])
	}
	// cos and sin of every (token, pair), once per batch, not per head.
	s.m.RopeTables(cache.Len(), n, s.cos, s.sin)
	scale := float32(1 / math.Sqrt(float64(hd)))
	wholePrompt := n >= promptAttnMin && !b.Observe && cache.CanAttendPrefill()

	for li := range s.m.layers {
		if b.Ctx != nil && li > 0 {
			if err := b.Ctx.Err(); err != nil {
				return nil, err
			}
		}
		if b.Progress != nil && li > 0 {
			b.Progress(li)
		}
		l := &s.m.layers[li]
		xb := s.xb[:n*dim]
		s.perRow(n, rowTask{op: rowNorm, dst: xb, src: x, norm: l.attnNorm})
		q, k, v := s.q[:n*dim], s.k[:n*kvd], s.v[:n*kvd]
		s.matmuls([4][]float32{q, k, v}, [4]*tensor.Matrix{l.wq, l.wk, l.wv}, xb, n)
		if l.bq != nil {
			for i := 0; i < n; i++ {
				tensor.Axpy(1, l.bq, q[i*dim:(i+1)*dim])
				tensor.Axpy(1, l.bk, k[i*kvd:(i+1)*kvd])
				tensor.Axpy(1, l.bv, v[i*kvd:(i+1)*kvd])
			}
		}
		s.perRow(n, rowTask{op: rowRope, dst: q, src: k})
		for i := 0; i < n; i++ {
			cache.AppendAt(li, i, b.Flags[i], k[i*kvd:(i+1)*kvd], v[i*kvd:(i+1)*kvd])
		}

		if b.Profiler != nil {
			b.Profiler.Begin(li, s.pool.Threads(), cache, scale)
		}
		s.attn = attnTask{s: s, cache: cache, layer: li, n: n, scale: scale, whole: wholePrompt, observe: b.Observe, obs: b.Attention, prof: b.Profiler}
		if wholePrompt {
			// The prompt attends as panel products, a KV head per task;
			// a profiler or observer sees each token's rows as it goes.
			s.pool.Parallel(c.KVHeads, 1, &s.attn)
		} else {
			// Keep ≥ ~16k multiply-adds per chunk so that short contexts and
			// tiny heads do not pay a worker wake-up per (token, head).
			work := max(1, (cache.Kept(li, 0)-n/2)*c.HeadDim*c.Groups()*2)
			s.pool.Parallel(n*c.KVHeads, max(1, (16<<10)/work), &s.attn)
		}
		if b.Profiler != nil {
			b.Profiler.Layer(li, q, dim, cache, scale, s.pool)
		}

		xb2 := s.xb2[:n*dim]
		s.matmul(xb2, l.wo, s.att[:n*dim], n)
		s.perRow(n, rowTask{op: rowAdd, dst: x, src: xb2})
		s.perRow(n, rowTask{op: rowNorm, dst: xb, src: x, norm: l.ffnNorm})
		hb, hb2 := s.hb[:n*c.Hidden], s.hb2[:n*c.Hidden]
		s.matmuls([4][]float32{hb, hb2}, [4]*tensor.Matrix{l.gate, l.up}, xb, n)
		if n > 1 {
			tensor.SwiGLUParallel(s.pool, hb, hb, hb2)
		} else {
			tensor.SwiGLU(hb, hb, hb2)
		}
		s.matmul(xb2, l.down, hb, n)
		s.perRow(n, rowTask{op: rowAdd, dst: x, src: xb2})
	}
	cache.Advance(n)

	rows := 1
	if b.AllLogits {
		rows = n
	}
	first := n - rows
	xb := s.xb[:rows*dim]
	for i := 0; i < rows; i++ {
		tensor.RMSNorm(xb[i*dim:(i+1)*dim], x[(first+i)*dim:(first+i+1)*dim], s.m.outNorm, c.Eps)
	}
	if cap(s.logits) < rows*c.Vocab {
		s.logits = make([]float32, rows*c.Vocab)
	}
	logits := s.logits[:rows*c.Vocab]
	s.matmul(logits, s.m.output, xb, rows)
	return logits, nil
}

// matmuls multiplies x by matrices that share it (Q, K, V; gate, up). A
// decode step does them as one pool operation when they share a type and
// width; files that mix types (Q4_K_M's Q6_K rows) go one by one.
func (s *State) matmuls(outs [4][]float32, ws [4]*tensor.Matrix, x []float32, n int) {
	together := n == 1
	for _, w := range ws[1:] {
		if w != nil && (w.Type != ws[0].Type || w.Cols != ws[0].Cols) {
			together = false
		}
	}
	if together {
		tensor.MatVecs(s.pool, outs, ws, x)
		return
	}
	for i, w := range ws {
		if w != nil {
			s.matmul(outs[i], w, x, n)
		}
	}
}

func (s *State) matmul(out []float32, w *tensor.Matrix, x []float32, n int) {
	if n == 1 {
		tensor.MatVec(s.pool, out, w, x)
		return
	}
	tensor.MatMul(s.pool, out, w, x, n)
}

// rowTask is one of the forward pass's per-row steps over a range of batch
// rows. In a prefill they spread over the pool rather than running on one
// core between the matrix products; a decode step's single row runs inline.
type rowTask struct {
	s        *State
	op       rowOp
	dst, src []float32 // rows of dim (rowRope: q and k rows)
	norm     []float32 // rowNorm's weight
}

type rowOp int

const (
	rowNorm rowOp = iota // dst = RMSNorm(src)·norm
	rowAdd               // dst += src (the residual stream)
	rowRope              // rotate dst (queries) and src (keys) in place
)

// perRow runs t over the batch's n rows, eight or more to a chunk.
func (s *State) perRow(n int, t rowTask) {
	t.s = s
	s.rows = t
	s.pool.Parallel(n, 8, &s.rows)
	s.rows = rowTask{}
}

func (t *rowTask) Run(_, lo, hi int) {
	c := t.s.m.Config
	dim, kvd := c.Dim, c.KVHeads*c.HeadDim
	switch t.op {
	case rowNorm:
		for i := lo; i < hi; i++ {
			tensor.RMSNorm(t.dst[i*dim:(i+1)*dim], t.src[i*dim:(i+1)*dim], t.norm, c.Eps)
		}
	case rowAdd:
		// Axpy with a = 1 rounds exactly as dst[i] += src[i].
		tensor.Axpy(1, t.src[lo*dim:hi*dim], t.dst[lo*dim:hi*dim])
	case rowRope:
		for i := lo; i < hi; i++ {
			t.s.rope(t.dst[i*dim:(i+1)*dim], c.Heads, i)
			t.s.rope(t.src[i*kvd:(i+1)*kvd], c.KVHeads, i)
		}
	}
}

// RopeTables writes cos and sin of every (token, rotated pair) for n tokens
// from position start, RopeDim/2 values per token: the one definition of
// the rotation angles, shared by every backend so that they agree to the
// bit (float64 angles, rounded once).
func (m *Model) RopeTables(start, n int, cos, sin []float32) {
	half := len(m.invFreq)
	for i := 0; i < n; i++ {
		pos := float64(start + i)
		for j, f := range m.invFreq {
			sn, cs := math.Sincos(pos * f)
			cos[i*half+j], sin[i*half+j] = float32(cs), float32(sn)
		}
	}
}

// rope rotates the heads of one token's row in place. Keys are rotated once,
// before caching, and never again: positions never shift.
func (s *State) rope(row []float32, heads, i int) {
	c := s.m.Config
	half := c.RopeDim / 2
	cos, sin := s.cos[i*half:(i+1)*half], s.sin[i*half:(i+1)*half]
	for h := 0; h < heads; h++ {
		x := row[h*c.HeadDim : (h+1)*c.HeadDim]
		if c.RopeNeoX {
			for j := 0; j < half; j++ {
				a, b := x[j], x[j+half]
				x[j] = a*cos[j] - b*sin[j]
				x[j+half] = a*sin[j] + b*cos[j]
			}
			continue
		}
		for j := 0; j < half; j++ {
			a, b := x[2*j], x[2*j+1]
			x[2*j] = a*cos[j] - b*sin[j]
			x[2*j+1] = a*sin[j] + b*cos[j]
		}
	}
}

// promptAttnMin is the shortest batch attended as panel products
// (AttendPrefill), one full tile of queries.
const promptAttnMin = tensor.PanelRows

// rowSink hands a worker's attention rows to the batch's profiler and
// attention observer (either may be nil): AttendPrefill's through the
// kvcache.RowSink interface, Attend's directly.
type rowSink struct {
	worker, layer int
	prof          Profiler
	obs           AttentionObserver
}

func (p *rowSink) PromptRow(kvHead, token int, probs, lse []float32, groups, limit int) {
	if p.obs != nil {
		p.obs.Attention(p.worker, p.layer, kvHead, token, probs, groups, limit)
	}
	if p.prof != nil {
		p.prof.Row(p.worker, p.layer, kvHead, token, probs, lse, groups, limit)
	}
}

// attnTask attends a batch: every (token, KV head) pair on its own
// (Attend; pairs are independent, so they spread over the pool), or with
// whole, a KV head's tokens at once as panel products (AttendPrefill). A
// long-lived struct passed by pointer keeps the hot loop free of
// allocations.
type attnTask struct {
	s       *State
	cache   *kvcache.Cache
	layer   int
	n       int
	scale   float32
	whole   bool
	observe bool
	obs     AttentionObserver
	prof    Profiler
}

func (t *attnTask) Run(worker, lo, hi int) {
	c := t.s.m.Config
	g, hd, dim := c.Groups(), c.HeadDim, c.Dim
	if t.whole {
		var sink kvcache.RowSink
		if t.prof != nil || t.obs != nil {
			ps := &t.s.workerSink[worker]
			*ps = rowSink{worker: worker, layer: t.layer, prof: t.prof, obs: t.obs}
			sink = ps
		}
		for kh := lo; kh < hi; kh++ {
			off := kh * g * hd
			t.cache.AttendPrefill(t.layer, kh, t.s.q[off:t.n*dim], dim, g, t.n, t.scale, t.s.att[off:t.n*dim], dim, &t.s.workerPrompt[worker], sink)
		}
		return
	}
	probs, lse := t.s.workerProbs[worker], t.s.workerLSE[worker]
	rows := rowSink{worker: worker, layer: t.layer, prof: t.prof, obs: t.obs}
	for item := lo; item < hi; item++ {
		i, kh := item/c.KVHeads, item%c.KVHeads
		// The batch's keys were appended in order after what the head kept.
		limit := t.cache.Kept(t.layer, kh) - t.n + i + 1
		off := i*dim + kh*g*hd
		t.cache.Attend(t.layer, kh, t.s.q[off:off+g*hd], g, limit, t.scale, t.s.att[off:off+g*hd], probs, lse)
		rows.PromptRow(kh, i, probs[:g*limit], lse, g, limit)
		if t.observe {
			t.cache.Observe(t.layer, kh, probs, g, limit, &t.s.workerScratch[worker])
		}
	}
}
