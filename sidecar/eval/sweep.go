package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// DefaultThresholds are the FastGen points of the default sweep: the paper's
// 0.98/0.95/0.93 plus looser and tighter ones, since a small model prunes less.
var DefaultThresholds = []float64{0.80, 0.85, 0.90, 0.93, 0.95, 0.98, 0.99}

// DefaultBaselines are the fixed policies every FastGen point is compared with.
var DefaultBaselines = []string{kvcache.ModeLocal, kvcache.ModeFrequent, kvcache.ModeH2O, kvcache.ModeStreaming, kvcache.ModeRandom}

// MethodFastGen names the FastGen rows of the results.
const MethodFastGen = "fastgen"

// Options configure a sweep.
type Options struct {
	Thresholds []float64
	Baselines  []string
	// MaxTokens caps the continuation (reference and free-running output).
	MaxTokens int
	// FastGen holds r_l, r_f, the order and the other profiling choices;
	// its Threshold is replaced by each of Thresholds.
	FastGen fastgen.Options
	// Ablations adds FastGen variants without each component and with the
	// order special→frequent→local→punct (the paper's Tables 4–5).
	Ablations bool
	// Workers is how many prompts run at once (0 = GOMAXPROCS).
	Workers int
	// SharedEngine interleaves every worker's steps on the caller's engine
	// (one compute mutex, all its threads per step). Otherwise each worker
	// gets its own single-threaded engine over the same loaded model, so
	// prompts really run in parallel.
	SharedEngine bool
	// Progress, when set, is called after each (prompt, method, point) unit.
	Progress func(done, total int)
}

// Method is one row family of the results: FastGen, an ablation, or a baseline.
type Method struct {
	Name  string
	Mode  string              // kvcache mode
	Order []kvcache.Component // FastGen candidate order (FastGen and ablations)
}

// Methods lists the methods a sweep with opt measures, FastGen first.
func Methods(opt Options) []Method {
	base := opt.FastGen.Order
	if len(base) == 0 {
		base = fastgen.DefaultOrder
	}
	ms := []Method{{Name: MethodFastGen, Mode: kvcache.ModeFastGen, Order: base}}
	if opt.Ablations {
		for _, drop := range base {
			var o []kvcache.Component
			for _, c := range base {
				if c != drop {
					o = append(o, c)
				}
			}
			ms = append(ms, Method{Name: "fastgen-no-" + componentName(drop), Mode: kvcache.ModeFastGen, Order: o})
		}
		ms = append(ms, Method{Name: "fastgen-order-sflp", Mode: kvcache.ModeFastGen,
			Order: []kvcache.Component{kvcache.Special, kvcache.Frequent, kvcache.Local, kvcache.Punct}})
	}
	for _, b := range opt.Baselines {
		ms = append(ms, Method{Name: b, Mode: b})
	}
	return ms
}

func componentName(c kvcache.Component) string {
	switch c {
	case kvcache.Special:
		return "special"
	case kvcache.Punct:
		return "punct"
	case kvcache.Frequent:
		return "frequent"
	case kvcache.Local:
		return "local"
	}
	return fmt.Sprint(uint8(c))
}

// Point is one method at one FastGen threshold, aggregated over prompts.
// Baselines carry the threshold of the FastGen point they are matched to.
// The JSON names of the first fields are fixed: other tools read them.
type Point struct {
	Method          string  `json:"method"`
	Threshold       float64 `json:"threshold"`
	PrunedRatio     float64 `json:"pruned_ratio"` // at the end of the teacher-forced continuation
	KVBytesRatio    float64 `json:"kv_bytes_ratio"`
	DPPLPct         float64 `json:"dppl_pct"`
	KL              float64 `json:"kl"`
	Top1            float64 `json:"top1"`
	FirstDivergence float64 `json:"first_divergence"`
	ExactMatch      float64 `json:"exact_match"`
	RougeL          float64 `json:"rouge_l"`
	AttnLoss        float64 `json:"attn_loss"`

	PrunedRatioAvg float64 `json:"pruned_ratio_avg"` // averaged over decode steps
	AttnLossP95    float64 `json:"attn_loss_p95"`
	KVBytes        int64   `json:"kv_bytes"`      // summed over prompts, at the end
	KVBytesFull    int64   `json:"kv_bytes_full"` // the shadow full cache's
	// ProfileShare is profiling time over prefill + decode time of the
	// free-running generation (FastGen rows only: baselines share their
	// FastGen point's prefill).
	ProfileShare   *float64 `json:"profile_share,omitempty"`
	DecodeTokS     float64  `json:"decode_tok_s"`
	FullDecodeTokS float64  `json:"full_decode_tok_s"`
	// MatchErr is the largest |pruned ratio − FastGen's| over prompts
	// (baselines only).
	MatchErr *float64 `json:"match_err,omitempty"`
	Prompts  int      `json:"prompts"`
	Tokens   int      `json:"tokens"` // teacher-forced predictions scored
}

// PolicyShare is the share of FastGen's heads on each policy in one layer at
// one threshold (the paper's Fig. 3), over all prompts.
type PolicyShare struct {
	Threshold float64   `json:"threshold"`
	Layer     int       `json:"layer"`
	Share     []float64 `json:"share"` // in fastgen.PolicyNames order
}

// Result is a whole sweep.
type Result struct {
	Model    string        `json:"model"`
	Prompts  int           `json:"prompts"`
	Points   []Point       `json:"points"`
	Policies []PolicyShare `json:"policies"`
	Elapsed  float64       `json:"elapsed_s"`
}

// Run sweeps every prompt over every method and threshold.
func Run(ctx context.Context, e *engine.Engine, prompts []Prompt, opt Options) (*Result, error) {
	if len(opt.Thresholds) == 0 {
		opt.Thresholds = DefaultThresholds
	}
	if opt.MaxTokens <= 0 {
		opt.MaxTokens = 128
	}
	if len(opt.FastGen.Order) == 0 {
		opt.FastGen = fastgen.Defaults()
	}
	for _, b := range opt.Baselines {
		if _, err := kvcache.BaselinePolicy(b, kvcache.Budget{Tokens: 1}); err != nil || b == kvcache.ModeFull || b == kvcache.ModeFastGen {
			return nil, fmt.Errorf("bad baseline %q (want local, frequent, h2o, streaming or random)", b)
		}
	}
	for _, t := range opt.Thresholds {
		o := opt.FastGen
		o.Threshold = t
		if err := o.Validate(); err != nil {
			return nil, err
		}
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(prompts))
	methods := Methods(opt)
	total := len(prompts) * len(opt.Thresholds) * len(methods)
	start := time.Now()

	var mu sync.Mutex
	done := 0
	tick := func() {
		mu.Lock()
		done++
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
		mu.Unlock()
	}

	engines := make([]*engine.Engine, workers)
	for w := range engines {
		if opt.SharedEngine || workers == 1 {
			engines[w] = e
			continue
		}
		// Threads=1 pools start no goroutines, so these engines need no Close
		// (which would also close the shared model).
		we, err := engine.New(e.Model, engine.Options{Threads: 1, CacheDType: e.KVPool.DType(), BlockEntries: e.KVPool.BlockEntries()})
		if err != nil {
			return nil, err
		}
		engines[w] = we
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]*promptResult, len(prompts))
	jobs := make(chan int)
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(pe *engine.Engine) {
			defer wg.Done()
			for i := range jobs {
				r, err := runPrompt(ctx, pe, prompts[i], methods, opt, tick)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("prompt %d: %w", i+1, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				results[i] = r
			}
		}(engines[w])
	}
feed:
	for i := range prompts {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := aggregate(results, methods, opt.Thresholds, e.Model.Config.Layers)
	res.Model = e.Model.Config.Name
	res.Prompts = len(prompts)
	res.Elapsed = time.Since(start).Seconds()
	return res, nil
}

// measure is one method at one point on one prompt.
type measure struct {
	prunedEnd, prunedAvg float64
	bytes, fullBytes     int64
	nllFull, nllComp, kl float64
	top1, n              int
	losses               []float64
	firstDiv             int
	exact, rouge         float64
	profile, gen         time.Duration // FastGen rows only
	decTokens            int
	decDur               time.Duration
	matchErr             float64
	budget               int
}

type promptResult struct {
	m             map[key]*measure
	policies      map[float64][][]int // threshold → layer → policy index counts
	fullDecTokens int
	fullDecDur    time.Duration
}

type key struct {
	method string
	ti     int
}

// shadow is the full cache's teacher-forced run over the reference,
// recorded once per prompt. Decoding is deterministic, so replaying it
// beside each compressed run is the same as running a shadow in lockstep,
// at a fraction of the cost.
type shadow struct {
	ref   []int
	lp    [][]float64   // step k: log-probs predicting ref[k+1]
	att   [][][]float32 // step k, head (layer-major): attention by position, group-averaged
	bytes int64         // the full cache's allocated bytes at the end
}

// attnRecorder averages each head's group of query rows into one attention
// distribution indexed by absolute position (Cache.Pos), so compressed caches
// can be matched entry by entry whatever they evicted.
type attnRecorder struct {
	cache   *kvcache.Cache
	kvHeads int
	rows    [][]float32
}

func (r *attnRecorder) Attention(_, layer, kvHead, _ int, probs []float32, groups, limit int) {
	row := r.rows[layer*r.kvHeads+kvHead]
	inv := 1 / float32(groups)
	for g := 0; g < groups; g++ {
		for i, p := range probs[g*limit : (g+1)*limit] {
			row[r.cache.Pos(layer, kvHead, i)] += p * inv
		}
	}
}

func runPrompt(ctx context.Context, e *engine.Engine, p Prompt, methods []Method, opt Options, tick func()) (*promptResult, error) {
	cfg := e.Model.Config
	toks := e.Tok.Encode(p.Text, true, false)
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty prompt")
	}
	maxNew := min(opt.MaxTokens, cfg.Ctx-len(toks)-1)
	if maxNew < 2 {
		return nil, fmt.Errorf("%w: %d prompt tokens leave no room to generate in %d", engine.ErrContextFull, len(toks), cfg.Ctx)
	}
	pr := &promptResult{m: map[key]*measure{}, policies: map[float64][][]int{}}
	var sh *shadow
	var fullOut []int
	var fullText string
	for _, m := range methods {
		if m.Mode != kvcache.ModeFastGen {
			continue
		}
		for ti, t := range opt.Thresholds {
			fo := opt.FastGen
			fo.Threshold, fo.Order = t, m.Order
			kv := engine.KVOptions{Mode: kvcache.ModeFastGen, FastGen: fo}
			base, err := e.NewSession(kv)
			if err != nil {
				return nil, err
			}
			// One held prefill per point: the compressed runs and the full
			// shadow all fork from it, so they share the prompt's K/V exactly.
			t0 := time.Now()
			logits, err := base.Prefill(ctx, toks, true)
			prefillDur := time.Since(t0)
			if err != nil {
				base.Close()
				return nil, err
			}
			first := append([]float32(nil), logits...)
			if sh == nil {
				full := engine.KVOptions{Mode: kvcache.ModeFull}
				if fullOut, pr.fullDecDur, err = greedyFork(ctx, e, base, full, first, maxNew); err != nil {
					base.Close()
					return nil, err
				}
				pr.fullDecTokens = max(0, len(fullOut)-1)
				fullText = e.Tok.Decode(fullOut)
				ref := fullOut
				if p.Continuation != "" {
					ref = e.Tok.Encode(p.Continuation, false, false)
					ref = ref[:min(len(ref), maxNew)]
				}
				if sh, err = recordShadow(ctx, base, ref); err != nil {
					base.Close()
					return nil, err
				}
			}
			mm, err := teacherForce(ctx, base, kv, nil, sh)
			if err != nil {
				base.Close()
				return nil, err
			}
			applyDur, err := freeRun(ctx, e, base, kv, nil, first, maxNew, fullOut, fullText, mm)
			if err != nil {
				base.Close()
				return nil, err
			}
			mm.profile = base.ProfileTime + applyDur
			mm.gen = prefillDur + applyDur + mm.decDur
			pr.m[key{m.Name, ti}] = mm
			if m.Name == MethodFastGen {
				pr.policies[t] = policyCounts(base.Profile, cfg.Layers)
			}
			tick()
			if m.Name == MethodFastGen {
				for _, bm := range methods {
					if bm.Mode == kvcache.ModeFastGen {
						continue
					}
					bmm, err := matchBaseline(ctx, e, base, bm.Mode, mm.prunedEnd, sh, first, maxNew, fullOut, fullText)
					if err != nil {
						base.Close()
						return nil, err
					}
					pr.m[key{bm.Name, ti}] = bmm
					tick()
				}
			}
			base.Close()
		}
	}
	return pr, nil
}

func policyCounts(p *fastgen.Profile, layers int) [][]int {
	out := make([][]int, layers)
	for l := range out {
		out[l] = make([]int, len(fastgen.PolicyNames))
	}
	if p == nil {
		return out
	}
	for _, h := range p.Heads {
		name := h.Policy.Name()
		for i, n := range fastgen.PolicyNames {
			if n == name {
				out[h.Layer][i]++
			}
		}
	}
	return out
}

// greedyFork decodes greedily from a fork of a held prefill, up to maxNew
// tokens or an end-of-generation token (not included).
func greedyFork(ctx context.Context, e *engine.Engine, base *engine.Session, kv engine.KVOptions, first []float32, maxNew int) ([]int, time.Duration, error) {
	s, err := base.Fork(kv)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	s.Apply()
	out, dur, err := greedy(ctx, e, s, first, maxNew)
	return out, dur, err
}

func greedy(ctx context.Context, e *engine.Engine, s *engine.Session, logits []float32, maxNew int) ([]int, time.Duration, error) {
	var out []int
	start := time.Now()
	for len(out) < maxNew {
		tok := tensor.Argmax(logits)
		if e.Tok.IsEOG(tok) {
			break
		}
		out = append(out, tok)
		if len(out) == maxNew {
			break
		}
		var err error
		if logits, err = s.Decode(ctx, tok); err != nil {
			return nil, 0, err
		}
	}
	return out, time.Since(start), nil
}

func recordShadow(ctx context.Context, base *engine.Session, ref []int) (*shadow, error) {
	s, err := base.Fork(engine.KVOptions{Mode: kvcache.ModeFull})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Apply()
	c := s.Cache()
	cfg := c.Config()
	heads := cfg.Layers * cfg.KVHeads
	sh := &shadow{ref: ref}
	rec := &attnRecorder{cache: c, kvHeads: cfg.KVHeads}
	for k := 0; k+1 < len(ref); k++ {
		t := c.Len()
		rec.rows = make([][]float32, heads)
		flat := make([]float32, heads*(t+1))
		for h := range rec.rows {
			rec.rows[h] = flat[h*(t+1) : (h+1)*(t+1)]
		}
		logits, err := s.DecodeObserved(ctx, ref[k], rec)
		if err != nil {
			return nil, err
		}
		sh.lp = append(sh.lp, LogProbs(logits, nil))
		sh.att = append(sh.att, rec.rows)
	}
	sh.bytes = c.Bytes()
	return sh, nil
}

// teacherForce feeds the reference through a fork of base with cache options
// kv and compares each step's prediction and kept set with the shadow's.
func teacherForce(ctx context.Context, base *engine.Session, kv engine.KVOptions, setup func(*kvcache.Cache), sh *shadow) (*measure, error) {
	s, err := base.Fork(kv)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if setup != nil {
		setup(s.Cache())
	}
	s.Apply()
	c := s.Cache()
	cfg := c.Config()
	m := &measure{}
	var kept []int32
	var lp []float64
	steps := len(sh.lp)
	for k := 0; k < steps; k++ {
		// What each head attends at this step: its kept entries plus the new
		// token, whose position is the current length.
		t := int32(c.Len())
		for l := 0; l < cfg.Layers; l++ {
			for h := 0; h < cfg.KVHeads; h++ {
				kept = kept[:0]
				for i := 0; i < c.Kept(l, h); i++ {
					kept = append(kept, c.Pos(l, h, i))
				}
				kept = append(kept, t)
				m.losses = append(m.losses, AttentionLoss(sh.att[k][l*cfg.KVHeads+h], kept))
			}
		}
		logits, err := s.Decode(ctx, sh.ref[k])
		if err != nil {
			return nil, err
		}
		lp = LogProbs(logits, lp)
		next := sh.ref[k+1]
		m.nllComp -= lp[next]
		m.nllFull -= sh.lp[k][next]
		m.kl += KL(sh.lp[k], lp)
		if tensor.Argmax(lp) == tensor.Argmax(sh.lp[k]) {
			m.top1++
		}
		m.prunedAvg += c.PrunedRatio()
	}
	m.n = steps
	if steps > 0 {
		m.prunedAvg /= float64(steps)
	}
	m.prunedEnd = c.PrunedRatio()
	m.bytes, m.fullBytes = c.Bytes(), sh.bytes
	return m, nil
}

// freeRun decodes greedily from a fork of base with options kv and compares
// the output with the full cache's. It returns how long Apply took, which is
// part of FastGen's profiling cost.
func freeRun(ctx context.Context, e *engine.Engine, base *engine.Session, kv engine.KVOptions, setup func(*kvcache.Cache), first []float32, maxNew int,
	fullOut []int, fullText string, m *measure) (time.Duration, error) {
	s, err := base.Fork(kv)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if setup != nil {
		setup(s.Cache())
	}
	t0 := time.Now()
	s.Apply()
	applyDur := time.Since(t0)
	out, dur, err := greedy(ctx, e, s, first, maxNew)
	if err != nil {
		return 0, err
	}
	m.firstDiv = FirstDivergence(fullOut, out)
	m.exact = ExactMatch(fullOut, out)
	m.rouge = RougeL(fullText, e.Tok.Decode(out))
	m.decTokens, m.decDur = max(0, len(out)-1), dur
	return applyDur, nil
}

// matchBaseline tunes a baseline's budget so that its realised pruned ratio
// at the end of the teacher-forced run matches target (the FastGen point's on
// the same prompt), then measures it.
//
// Budgets are shares of the current length (Budget.Ratio), so a baseline's
// cache grows with the sequence as FastGen's does and the two also agree on
// average over the steps, not only at the end. A whole-token budget per head
// moves the ratio in steps of 1/t, too coarse for 1 pp on short sequences, so
// the budget is counted in head-tokens B over all H heads: each head keeps
// ⌊B/H⌋ entries at the end, and B mod H heads spread evenly over the layers
// keep one more. That is the same policy for every head up to one token.
// The ratio falls as B grows, so a safeguarded secant search finds the
// closest B; the first
// probe is exact for every baseline that keeps its whole budget (all but H2O,
// whose recent and heavy halves may overlap).
func matchBaseline(ctx context.Context, e *engine.Engine, base *engine.Session, mode string, target float64, sh *shadow,
	first []float32, maxNew int, fullOut []int, fullText string) (*measure, error) {
	cfg := base.Cache().Config()
	heads := cfg.Layers * cfg.KVHeads
	tEnd := base.Cache().Len() + len(sh.lp)
	kv := engine.KVOptions{Mode: mode, Budget: kvcache.Budget{Ratio: 1}}
	setupFor := func(b int) func(*kvcache.Cache) {
		return func(c *kvcache.Cache) {
			k, extra := b/heads, b%heads
			for i := 0; i < heads; i++ {
				ki := k
				// Heads i with ⌊(i+1)·extra/H⌋ > ⌊i·extra/H⌋: extra of them, evenly spaced.
				if (i+1)*extra/heads > i*extra/heads {
					ki++
				}
				// ceil((ki − ¼)/tEnd · tEnd) = ki at the end, safe from rounding.
				p, _ := kvcache.BaselinePolicy(mode, kvcache.Budget{Ratio: (float64(ki) - 0.25) / float64(tEnd)})
				c.SetPolicy(i/cfg.KVHeads, i%cfg.KVHeads, p)
			}
		}
	}
	tried := map[int]*measure{}
	try := func(b int) (*measure, error) {
		if m, ok := tried[b]; ok {
			return m, nil
		}
		m, err := teacherForce(ctx, base, kv, setupFor(b), sh)
		if err != nil {
			return nil, err
		}
		m.budget = b
		m.matchErr = math.Abs(m.prunedEnd - target)
		tried[b] = m
		return m, nil
	}
	// Up to 2t per head: H2O's recent and heavy halves overlap, so it needs
	// a nominal budget above t to keep everything (a FastGen point on full).
	lo, hi := heads, 2*heads*tEnd
	b := min(hi, max(lo, int(math.Round((1-target)*float64(heads*tEnd)))))
	var best *measure
	for range 24 {
		m, err := try(b)
		if err != nil {
			return nil, err
		}
		if best == nil || m.matchErr < best.matchErr {
			best = m
		}
		if best.matchErr <= 0.5/float64(heads*tEnd) {
			break
		}
		if m.prunedEnd > target {
			lo = b + 1 // prunes too much: keep more
		} else {
			hi = b - 1
		}
		if lo > hi {
			break
		}
		// Scale the budget by the kept entries still missing (a secant step
		// through the origin: H2O's kept count is close to proportional to
		// its budget), falling back to bisection when that leaves the bracket
		// or repeats a probe.
		next := b
		if kept := 1 - m.prunedEnd; kept > 0 {
			next = int(math.Round(float64(b) * (1 - target) / kept))
		}
		if _, seen := tried[next]; seen || next < lo || next > hi {
			next = (lo + hi) / 2
		}
		b = next
	}
	if _, err := freeRun(ctx, e, base, kv, setupFor(best.budget), first, maxNew, fullOut, fullText, best); err != nil {
		return nil, err
	}
	return best, nil
}

// aggregate pools the per-prompt measures of each method and point: ratios
// and sequence metrics are means over prompts, ΔPPL, KL and top-1 pool the
// tokens of all prompts, attention loss pools every head and step.
func aggregate(rs []*promptResult, methods []Method, ths []float64, layers int) *Result {
	res := &Result{}
	var fullTok int
	var fullDur time.Duration
	for _, r := range rs {
		fullTok += r.fullDecTokens
		fullDur += r.fullDecDur
	}
	fullTokS := rate(fullTok, fullDur)
	for _, m := range methods {
		for ti, t := range ths {
			pt := Point{Method: m.Name, Threshold: t, FullDecodeTokS: fullTokS}
			var losses []float64
			var nllF, nllC, kl, div float64
			var top1, n, decTok int
			var decDur, prof, gen time.Duration
			var matchErr float64
			for _, r := range rs {
				mm := r.m[key{m.Name, ti}]
				if mm == nil {
					continue
				}
				pt.Prompts++
				pt.PrunedRatio += mm.prunedEnd
				pt.PrunedRatioAvg += mm.prunedAvg
				pt.KVBytes += mm.bytes
				pt.KVBytesFull += mm.fullBytes
				nllF += mm.nllFull
				nllC += mm.nllComp
				kl += mm.kl
				top1 += mm.top1
				n += mm.n
				losses = append(losses, mm.losses...)
				div += float64(mm.firstDiv)
				pt.ExactMatch += mm.exact
				pt.RougeL += mm.rouge
				decTok += mm.decTokens
				decDur += mm.decDur
				prof += mm.profile
				gen += mm.gen
				matchErr = math.Max(matchErr, mm.matchErr)
			}
			if pt.Prompts == 0 {
				continue
			}
			np := float64(pt.Prompts)
			pt.PrunedRatio /= np
			pt.PrunedRatioAvg /= np
			pt.ExactMatch /= np
			pt.RougeL /= np
			pt.FirstDivergence = div / np
			if pt.KVBytesFull > 0 {
				pt.KVBytesRatio = float64(pt.KVBytes) / float64(pt.KVBytesFull)
			}
			pt.Tokens = n
			if n > 0 {
				pt.DPPLPct = DeltaPPLPct(nllF, nllC, n)
				pt.KL = kl / float64(n)
				pt.Top1 = float64(top1) / float64(n)
			}
			if len(losses) > 0 {
				var s float64
				for _, l := range losses {
					s += l
				}
				pt.AttnLoss = s / float64(len(losses))
				pt.AttnLossP95 = Percentile(losses, 0.95)
			}
			pt.DecodeTokS = rate(decTok, decDur)
			if m.Mode == kvcache.ModeFastGen {
				share := 0.0
				if gen > 0 {
					share = float64(prof) / float64(gen)
				}
				pt.ProfileShare = &share
			} else {
				pt.MatchErr = &matchErr
			}
			res.Points = append(res.Points, pt)
		}
	}
	for _, t := range ths {
		counts := make([][]int, layers)
		for l := range counts {
			counts[l] = make([]int, len(fastgen.PolicyNames))
		}
		for _, r := range rs {
			for l, row := range r.policies[t] {
				for i, c := range row {
					counts[l][i] += c
				}
			}
		}
		for l, row := range counts {
			tot := 0
			for _, c := range row {
				tot += c
			}
			ps := PolicyShare{Threshold: t, Layer: l, Share: make([]float64, len(row))}
			for i, c := range row {
				if tot > 0 {
					ps.Share[i] = float64(c) / float64(tot)
				}
			}
			res.Policies = append(res.Policies, ps)
		}
	}
	return res
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
