// Package engine runs sessions on a loaded model: prefill with FastGen
// profiling, decode over the compressed cache, sampling, paired
// full-versus-compressed runs, cancellation and statistics. It is what the
// CLI, the server and the evaluator share.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// Options configure an engine.
type Options struct {
	// Backend runs the forward passes (nil: the CPU with Threads threads).
	Backend      model.Backend
	Threads      int           // compute threads (0 = all cores)
	CacheDType   kvcache.DType // element type of cached K/V
	BlockEntries int           // entries per cache block (0 = default)
	// ReserveBlocks free cache blocks are kept for reuse when sessions end;
	// the rest go back to the Go heap.
	ReserveBlocks int
}

// Engine owns a model, its tokenizer and token classes, the compute pool and
// the cache block pool. Sessions share it; their forward passes take turns on
// the compute pool one step at a time, which keeps both cores busy on every
// step instead of splitting them.
type Engine struct {
	Model   *model.Model
	Tok     *tokenizer.Tokenizer
	Classes *fastgen.Classes
	KVPool  *kvcache.Pool

	compute sync.Mutex
	backend model.Backend
	opt     Options
}

// Load opens a model file and prepares an engine for it.
func Load(path string, lo model.LoadOptions, opt Options) (*Engine, error) {
	m, err := model.Load(path, lo)
	if err != nil {
		return nil, err
	}
	e, err := New(m, opt)
	if err != nil {
		m.Close()
		return nil, err
	}
	return e, nil
}

// New prepares an engine for an already loaded model.
func New(m *model.Model, opt Options) (*Engine, error) {
	tok, err := tokenizer.New(m.Vocab)
	if err != nil {
		return nil, &model.Error{Path: m.Path, Problem: "bad tokenizer: " + err.Error()}
	}
	e := &Engine{Model: m, Tok: tok, opt: opt}
	e.Classes = fastgen.NewClasses(tok, tok.ChatMarkers())
	e.backend = opt.Backend
	if e.backend == nil {
		e.backend = model.NewCPU(opt.Threads)
	}
	e.KVPool = kvcache.NewPool(m.Config.HeadDim, opt.CacheDType, opt.BlockEntries, opt.ReserveBlocks)
	return e, nil
}

// Threads is the number of CPU compute threads (0 on other backends).
func (e *Engine) Threads() int {
	if cpu, ok := e.backend.(*model.CPU); ok {
		return cpu.Pool.Threads()
	}
	return 0
}

// Backend is the device the engine computes on.
func (e *Engine) Backend() model.Backend { return e.backend }

// Close releases the backend and the model file.
func (e *Engine) Close() error {
	e.backend.Close()
	return e.Model.Close()
}

// KVOptions choose the cache policy of a session.
type KVOptions struct {
	Mode    string          // kvcache.Mode*: full, fastgen, or a baseline
	FastGen fastgen.Options // for fastgen (and the baselines' profiling)
	Budget  kvcache.Budget  // kept budget of a baseline
	Seed    uint64          // the random baseline's
}

// DefaultKV is FastGen at the spec's defaults.
func DefaultKV() KVOptions { return KVOptions{Mode: kvcache.ModeFastGen, FastGen: fastgen.Defaults()} }

// Validate reports a bad mode, option or missing budget.
func (k KVOptions) Validate() error {
	if err := kvcache.CheckMode(k.Mode); err != nil {
		return err
	}
	switch k.Mode {
	case kvcache.ModeFull:
		return nil
	case kvcache.ModeFastGen:
		return k.FastGen.Validate()
	}
	if k.Budget.Tokens <= 0 && !(k.Budget.Ratio > 0 && k.Budget.Ratio <= 1) {
		return fmt.Errorf("mode %q needs a budget: a kept ratio in (0,1] or a token count", k.Mode)
	}
	_, err := kvcache.BaselinePolicy(k.Mode, k.Budget)
	return err
}

// ErrContextFull means a prompt does not fit the context that is left.
var ErrContextFull = errors.New("context full")

// Session is one sequence: its cache, forward-pass state and history.
type Session struct {
	e       *Engine
	kv      KVOptions
	cache   *kvcache.Cache
	state   model.Runner
	history []int

	// Profile is the last prefill's profile (nil for full mode).
	Profile *fastgen.Profile
	// ProfileTime is how long profiling took in the last prefill.
	ProfileTime time.Duration
	// OnProgress, when set, hears how far a prefill has got, in tokens
	// (estimated from the layers done: a prefill is one batch).
	OnProgress func(processed, total int)
}

// NewSession starts an empty session.
func (e *Engine) NewSession(kv KVOptions) (*Session, error) {
	if kv.Mode == "" {
		kv = DefaultKV()
	}
	if err := kv.Validate(); err != nil {
		return nil, err
	}
	c := e.Model.Config
	cfg := kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads, Score: kv.FastGen.Score, Seed: kv.Seed, MaxLen: c.Ctx}
	r, err := e.backend.NewRunner(e.Model)
	if err != nil {
		return nil, err
	}
	return &Session{e: e, kv: kv, cache: kvcache.New(cfg, e.KVPool), state: r}, nil
}

// Cache is the session's KV cache.
func (s *Session) Cache() *kvcache.Cache { return s.cache }

// History is every token the session has processed.
func (s *Session) History() []int { return s.history }

// Close frees the session's cache blocks at once.
func (s *Session) Close() {
	s.cache.Close()
	closeRunner(s.state)
}

// closeRunner releases what a runner holds beyond the Go heap (a GPU
// runner's device buffers and threads) now rather than when the garbage
// collector finds it.
func closeRunner(r model.Runner) {
	if c, ok := r.(interface{ Close() }); ok {
		c.Close()
	}
}

func (s *Session) flags(tokens []int) []kvcache.Flags {
	f := make([]kvcache.Flags, len(tokens))
	for i, t := range tokens {
		f[i] = s.e.Classes.Of(t)
	}
	return f
}

// timedProfiler measures the time spent profiling inside the forward pass.
// Rows arrive on every worker at once, so their time counts divided by the
// number of workers: its share of the wall clock. A row takes a few hundred
// nanoseconds, and reading the clock around each one cost as much again on
// this project's VMs, so every rowSample-th row per worker is timed and
// stands for its neighbours (tens of thousands of rows: an error well under
// 1% of the total).
type timedProfiler struct {
	p       *fastgen.Profiler
	dur     time.Duration
	workers int
	rows    [64]rowClock // per worker (pools have fewer threads)
	clock   time.Duration
	planned time.Time // the current layer's Plan
}

// clockCost is what reading the clock around an interval adds to it: the
// mean of empty intervals, measured once per process. Each sampled row
// stands for rowSample rows, so uncorrected this would be counted as
// profiling rowSample times over.
var clockCost = sync.OnceValue(func() time.Duration {
	const n = 2000
	var sum time.Duration
	for range n {
		start := time.Now()
		sum += time.Since(start)
	}
	return sum / n
})

// rowClock is one worker's row timing, padded to its own cache line.
type rowClock struct {
	sampled time.Duration
	n       int
	_       [48]byte
}

const rowSample = 8

func (t *timedProfiler) Begin(layer, workers int, c *kvcache.Cache, scale float32) {
	start := time.Now()
	t.p.Begin(layer, workers, c, scale)
	t.workers = workers
	t.dur += time.Since(start)
}

func (t *timedProfiler) Row(worker, layer, kvHead, token int, probs, lse []float32, groups, limit int) {
	rc := &t.rows[worker%len(t.rows)]
	rc.n++
	if rc.n%rowSample != 0 {
		t.p.Row(worker, layer, kvHead, token, probs, lse, groups, limit)
		return
	}
	start := time.Now()
	t.p.Row(worker, layer, kvHead, token, probs, lse, groups, limit)
	rc.sampled += time.Since(start) - t.clock
}

func (t *timedProfiler) Layer(layer int, q []float32, qStride int, c *kvcache.Cache, scale float32, pool *tensor.Pool) {
	start := time.Now()
	t.p.Layer(layer, q, qStride, c, scale, pool)
	t.dur += time.Since(start)
}

var _ fastgen.SumsProfiler = (*timedProfiler)(nil)

// Plan and LayerFromSums serve a backend that computes a layer's sums
// itself (the GPU): the time between them, the device's passes included,
// is the layer's profiling time.
func (t *timedProfiler) Plan(layer int, c *kvcache.Cache) *fastgen.LayerPlan {
	t.planned = time.Now()
	return t.p.Plan(layer, c)
}

func (t *timedProfiler) LayerFromSums(layer int, c *kvcache.Cache, s *fastgen.LayerSums) error {
	err := t.p.LayerFromSums(layer, c, s)
	t.dur += time.Since(t.planned)
	return err
}

func (t *timedProfiler) total() time.Duration {
	var rows time.Duration
	for _, rc := range t.rows {
		rows += rc.sampled * rowSample
	}
	return t.dur + rows/time.Duration(max(1, t.workers))
}

// Prefill runs new prompt tokens (a first prompt or a later chat turn) with
// full attention, profiles every head (FastGen re-profiles each turn; what
// was evicted before stays evicted), and compresses the cache to the chosen
// policies unless hold is set (compare mode forks first, then applies). It
// returns the logits of the last token; they stay valid until the next call.
func (s *Session) Prefill(ctx context.Context, tokens []int, hold bool) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := s.e.Model.Config
	if s.cache.Len()+len(tokens) > c.Ctx {
		return nil, fmt.Errorf("%w: %d tokens cached + %d new exceed the context length %d", ErrContextFull, s.cache.Len(), len(tokens), c.Ctx)
	}
	var prof *timedProfiler
	if s.kv.Mode != kvcache.ModeFull {
		var fixed *kvcache.Policy
		if s.kv.Mode != kvcache.ModeFastGen {
			p, _ := kvcache.BaselinePolicy(s.kv.Mode, s.kv.Budget)
			fixed = &p
		}
		opt := s.kv.FastGen
		if len(opt.Order) == 0 {
			opt = fastgen.Defaults()
		}
		prof = &timedProfiler{p: fastgen.NewProfiler(opt, c.Layers, c.Heads, c.KVHeads, c.HeadDim, len(tokens), s.cache.Len(), fixed), clock: clockCost()}
	}
	b := model.Batch{Tokens: tokens, Flags: s.flags(tokens), Ctx: ctx}
	if s.OnProgress != nil {
		layers, total := c.Layers, len(tokens)
		b.Progress = func(layer int) { s.OnProgress(total*layer/layers, total) }
	}
	if prof != nil {
		b.Profiler = prof
	}
	s.e.compute.Lock()
	logits, err := s.state.Forward(s.cache, b)
	s.e.compute.Unlock()
	if err != nil {
		return nil, err
	}
	s.history = append(s.history, tokens...)
	if prof != nil {
		s.Profile = prof.p.Result()
		s.ProfileTime = prof.total()
		if !hold {
			start := time.Now()
			s.cache.ApplyAll()
			s.ProfileTime += time.Since(start)
		}
	}
	return logits, nil
}

// Decode feeds one token: every head attends over what it keeps plus the
// new token, then re-applies its policy.
func (s *Session) Decode(ctx context.Context, token int) ([]float32, error) {
	return s.DecodeObserved(ctx, token, nil)
}

// DecodeObserved is Decode with an attention observer: obs sees every head's
// attention probabilities right after it attends and before its policy
// evicts anything, which is how a full-cache shadow measures the attention
// mass a compressed cache loses. obs is called concurrently for different
// heads; nil makes it exactly Decode.
func (s *Session) DecodeObserved(ctx context.Context, token int, obs model.AttentionObserver) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.cache.Len() >= s.e.Model.Config.Ctx {
		return nil, fmt.Errorf("%w: the context length %d is reached", ErrContextFull, s.e.Model.Config.Ctx)
	}
	f := [1]kvcache.Flags{s.e.Classes.Of(token)}
	t := [1]int{token}
	s.e.compute.Lock()
	// A full cache never ranks its entries (no policy, and it is never
	// re-profiled), so it skips the per-token score bookkeeping.
	observe := s.kv.Mode != kvcache.ModeFull
	logits, err := s.state.Forward(s.cache, model.Batch{Tokens: t[:], Flags: f[:], Observe: observe, Attention: obs})
	s.e.compute.Unlock()
	if err != nil {
		return nil, err
	}
	s.history = append(s.history, token)
	return logits, nil
}

// Fork copies a session after a held prefill: the copy gets its own cache
// (same entries) with every head on kv's policy (FastGen keeps the profiled
// ones), then both apply their policies. Compare mode decodes the two in lockstep.
func (s *Session) Fork(kv KVOptions) (*Session, error) {
	if err := kv.Validate(); err != nil {
		return nil, err
	}
	r, err := s.e.backend.NewRunner(s.e.Model)
	if err != nil {
		return nil, err
	}
	cache, err := s.cache.Fork()
	if err != nil {
		closeRunner(r)
		return nil, err
	}
	f := &Session{e: s.e, kv: kv, cache: cache, state: r}
	f.history = append([]int(nil), s.history...)
	switch kv.Mode {
	case kvcache.ModeFull:
		f.cache.SetAllPolicies(kvcache.FullPolicy)
	case kvcache.ModeFastGen:
		f.Profile = s.Profile
	default:
		p, _ := kvcache.BaselinePolicy(kv.Mode, kv.Budget)
		f.cache.SetAllPolicies(p)
	}
	return f, nil
}

// Apply compresses a held prefill to its policies.
func (s *Session) Apply() { s.cache.ApplyAll() }
