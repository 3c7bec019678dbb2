package fastgen

import (
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// Mass is the mean attention mass a head puts on each token category (the
// paper's Fig. 4). A key counts once, in the first category that holds it:
// special, then punct, then local (inside the window), then other.
type Mass struct {
	Special, Punct, Local, Other float64
}

// HeadProfile is the profiling result of one (layer, KV head).
type HeadProfile struct {
	Layer, KVHead int
	Policy        kvcache.Policy
	// Recovery holds the recovery of each candidate, in candidate order
	// (the last is full, always 1).
	Recovery []float64
	Mass     Mass
}

// Profile is the result of profiling one prompt (or one chat turn).
type Profile struct {
	Candidates []kvcache.Policy
	Heads      []HeadProfile // layer-major
	Threshold  float64
}

// Choose returns the index of the first candidate whose recovery reaches t.
// Candidates are supersets in order, so that is the cheapest. At t ≥ 1 only
// the last (full) qualifies: recovery on the prompt cannot promise that a
// pruning policy stays lossless during decode.
func Choose(recovery []float64, t float64) int {
	last := len(recovery) - 1
	if t >= 1 {
		return last
	}
	for i, r := range recovery[:last] {
		if r >= t {
			return i
		}
	}
	return last
}

// Profiler profiles the prompt rows of one prefill, layer by layer, from
// attention probabilities recomputed from the queries so that no L×L map is
// kept: pass 1 streams rows into column sums and category masses, pass 2
// streams them again to measure what each candidate keeps with the final
// ranking. It writes each head's chosen policy and scores into the cache;
// the caller applies them once the prefill is done (Cache.ApplyAll).
type Profiler struct {
	opt        Options
	candidates []kvcache.Policy
	fixed      *kvcache.Policy
	heads      []HeadProfile

	nHeads, nKV, headDim int
	n                    int   // prompt rows this turn
	basePos              int32 // absolute position of row 0
	window               int32
	// rank[c] is the index of component c in the candidate order: an entry
	// is kept by candidate k iff one of its components has rank ≤ k.
	rankSpecial, rankPunct, rankFreq, rankLocal int

	workers []*headWorker // scratch, one per goroutine, reused across layers
}

// headWorker is one goroutine's scratch for profiling a head.
type headWorker struct {
	probs, row []float32
	colsum     []float64
	order      []int32
	inFreq     []bool
	first      []int8 // per entry: the rank of its static (class) components
	pos        []int32
	flags      []kvcache.Flags
	sums       []float64 // per candidate × group: mass first kept by that candidate
}

// NewProfiler prepares to profile n new prompt tokens starting at absolute
// position basePos (> 0 in a later chat turn, whose new rows also attend to
// what earlier turns kept). nHeads query heads share nKV KV heads. With fixed
// set, every head gets that policy (a baseline) and only the scores and
// masses are measured.
func NewProfiler(opt Options, layers, nHeads, nKV, headDim, n, basePos int, fixed *kvcache.Policy) *Profiler {
	p := &Profiler{
		opt: opt, candidates: opt.Candidates(n), fixed: fixed,
		nHeads: nHeads, nKV: nKV, headDim: headDim, n: n, basePos: int32(basePos),
	}
	p.window = int32(p.candidates[0].Window.Tokens)
	p.heads = make([]HeadProfile, 0, layers*nKV)
	never := len(p.candidates) - 1 // only full keeps it
	p.rankSpecial, p.rankPunct, p.rankFreq, p.rankLocal = never, never, never, never
	for k, c := range opt.Order {
		switch c {
		case kvcache.Special:
			p.rankSpecial = k
		case kvcache.Punct:
			p.rankPunct = k
		case kvcache.Frequent:
			p.rankFreq = k
		case kvcache.Local:
			p.rankLocal = k
		}
	}
	workers := min(nKV, runtime.GOMAXPROCS(0))
	for range workers {
		p.workers = append(p.workers, &headWorker{})
	}
	return p
}

// Layer profiles every KV head of one layer, heads in parallel. q holds the
// n prompt rows of post-RoPE queries (nHeads·headDim each, row stride
// qStride); the cache already holds the layer's keys for those rows.
func (p *Profiler) Layer(layer int, q []float32, qStride int, cache *kvcache.Cache, scale float32) {
	results := make([]HeadProfile, p.nKV)
	var next atomic.Int32
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for kh := int(next.Add(1) - 1); kh < p.nKV; kh = int(next.Add(1) - 1) {
				results[kh] = p.head(w, layer, kh, q, qStride, cache, scale)
			}
		}()
	}
	wg.Wait()
	p.heads = append(p.heads, results...)
}

// head profiles one (layer, KV head), seeds its scores with the prompt's
// column sums (the paper's rule) and sets its chosen policy; the policy is
// applied once the whole prefill is done. Heads touch only their own store.
func (p *Profiler) head(w *headWorker, layer, kh int, q []float32, qStride int, cache *kvcache.Cache, scale float32) HeadProfile {
	groups := p.nHeads / p.nKV
	total := cache.Kept(layer, kh)
	base := total - p.n
	w.probs = grow(w.probs, groups*total)
	w.row = grow(w.row, total)
	w.colsum = growF64(w.colsum, total)
	w.inFreq = growBool(w.inFreq, total)
	w.sums = growF64(w.sums, len(p.candidates)*groups)
	if cap(w.first) < total {
		w.first, w.pos, w.flags = make([]int8, total), make([]int32, total), make([]kvcache.Flags, total)
	}
	first, pos, flags := w.first[:total], w.pos[:total], w.flags[:total]
	never := int8(len(p.candidates) - 1)
	for j := range first {
		f := cache.EntryFlags(layer, kh, j)
		r := never
		if f&kvcache.FlagSpecial != 0 {
			r = min(r, int8(p.rankSpecial))
		}
		if f&kvcache.FlagPunct != 0 {
			r = min(r, int8(p.rankPunct))
		}
		first[j], pos[j], flags[j] = r, cache.Pos(layer, kh, j), f
	}
	qRow := func(i int) []float32 { return q[i*qStride+kh*groups*p.headDim:][:groups*p.headDim] }

	hp := HeadProfile{Layer: layer, KVHead: kh, Recovery: make([]float64, len(p.candidates))}
	colsum := w.colsum[:total]
	clear(colsum)
	// Pass 1: column sums over every prompt row (the frequency scores), and
	// the category masses.
	var mass Mass
	for i := 0; i < p.n; i++ {
		limit := cache.Probs(layer, kh, qRow(i), groups, base+i+1, scale, w.probs[:groups*(base+i+1)])
		row := w.meanRow(groups, limit)
		cur := p.basePos + int32(i)
		for j, a := range row {
			colsum[j] += float64(a)
			switch f := flags[j]; {
			case f&kvcache.FlagSpecial != 0:
				mass.Special += float64(a)
			case f&kvcache.FlagPunct != 0:
				mass.Punct += float64(a)
			case cur-pos[j] < p.window:
				mass.Local += float64(a)
			default:
				mass.Other += float64(a)
			}
		}
	}
	inv := 1 / float64(p.n)
	hp.Mass = Mass{mass.Special * inv, mass.Punct * inv, mass.Local * inv, mass.Other * inv}

	if p.fixed != nil {
		hp.Policy = *p.fixed
	} else {
		hp.Policy = p.candidates[Choose(p.recovery(w, layer, kh, base, qRow, cache, scale, hp.Recovery), p.opt.Threshold)]
	}
	for j := range w.row[:total] {
		w.row[j] = float32(colsum[j])
	}
	cache.AddScores(layer, kh, w.row[:total])
	cache.SetPolicy(layer, kh, hp.Policy)
	return hp
}

// recovery is pass 2: the attention mass each candidate keeps at each row,
// with the frequent set ranked by the final column sums. It fills and
// returns rec.
func (p *Profiler) recovery(w *headWorker, layer, kh, base int, qRow func(int) []float32, cache *kvcache.Cache, scale float32, rec []float64) []float64 {
	groups := p.nHeads / p.nKV
	total := base + p.n
	colsum, first, pos := w.colsum[:total], w.first[:total], w.pos[:total]
	w.order = w.order[:0]
	for j := 0; j < total; j++ {
		w.order = append(w.order, int32(j))
	}
	sort.SliceStable(w.order, func(a, b int) bool { return colsum[w.order[a]] > colsum[w.order[b]] })

	start := 0
	if p.opt.RecoveryRows > 0 && p.opt.RecoveryRows < p.n {
		start = p.n - p.opt.RecoveryRows
	}
	nc := len(p.candidates)
	sums := w.sums[:nc*groups]
	clear(sums)
	rows := 1
	if p.opt.GQA == AggMin {
		rows = groups
	}
	for i := start; i < p.n; i++ {
		limit := cache.Probs(layer, kh, qRow(i), groups, base+i+1, scale, w.probs[:groups*(base+i+1)])
		cur := p.basePos + int32(i)
		inFreq := w.inFreq[:limit]
		clear(inFreq)
		k := kvcache.Budget{Ratio: p.opt.RFreq}.At(int(cur) + 1)
		for _, j := range w.order {
			if k == 0 {
				break
			}
			if int(j) < limit {
				inFreq[j] = true
				k--
			}
		}
		if rows == 1 {
			w.meanRow(groups, limit)
		}
		for g := 0; g < rows; g++ {
			row := w.row[:limit]
			if rows > 1 {
				row = w.probs[g*limit : (g+1)*limit]
			}
			bucket := sums[g*nc : (g+1)*nc]
			for j, a := range row {
				r := first[j]
				if inFreq[j] {
					r = min(r, int8(p.rankFreq))
				}
				if cur-pos[j] < p.window {
					r = min(r, int8(p.rankLocal))
				}
				bucket[r] += float64(a)
			}
		}
	}
	// Candidates are supersets in order: candidate c keeps the mass first
	// kept by any candidate up to c.
	counted := float64(p.n - start)
	for c := range rec {
		rec[c] = math.Inf(1)
	}
	for g := 0; g < rows; g++ {
		var acc float64
		for c := 0; c < nc; c++ {
			acc += sums[g*nc+c]
			rec[c] = math.Min(rec[c], acc/counted)
		}
	}
	rec[nc-1] = 1
	return rec
}

// meanRow averages the group's rows in w.probs into w.row.
func (w *headWorker) meanRow(groups, limit int) []float32 {
	row := w.row[:limit]
	copy(row, w.probs[:limit])
	for g := 1; g < groups; g++ {
		for j, a := range w.probs[g*limit : (g+1)*limit] {
			row[j] += a
		}
	}
	if groups > 1 {
		inv := 1 / float32(groups)
		for j := range row {
			row[j] *= inv
		}
	}
	return row
}

// Result returns the profile of every layer profiled so far.
func (p *Profiler) Result() *Profile {
	return &Profile{Candidates: p.candidates, Heads: p.heads, Threshold: p.opt.Threshold}
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

func growBool(s []bool, n int) []bool {
	if cap(s) < n {
		return make([]bool, n)
	}
	return s[:n]
}
