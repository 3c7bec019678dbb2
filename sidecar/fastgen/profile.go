package fastgen

import (
	"math"
	"sort"

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

	// scratch, reused across heads and layers
	probs, row []float32
	colsum     []float64
	order      []int32
	inFreq     []bool
	sums       []float64
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
	return p
}

// Layer profiles every KV head of one layer. q holds the n prompt rows of
// post-RoPE queries (nHeads·headDim each, row stride qStride); the cache
// already holds the layer's keys for those rows.
func (p *Profiler) Layer(layer int, q []float32, qStride int, cache *kvcache.Cache, scale float32) {
	groups := p.nHeads / p.nKV
	most := 0
	for kh := 0; kh < p.nKV; kh++ {
		most = max(most, cache.Kept(layer, kh))
	}
	p.probs = grow(p.probs, groups*most)
	p.row = grow(p.row, most)
	p.colsum = growF64(p.colsum, most)
	p.inFreq = growBool(p.inFreq, most)
	p.sums = growF64(p.sums, len(p.candidates)*groups)
	first := 0
	if p.opt.RecoveryRows > 0 && p.opt.RecoveryRows < p.n {
		first = p.n - p.opt.RecoveryRows
	}
	for kh := 0; kh < p.nKV; kh++ {
		hp := HeadProfile{Layer: layer, KVHead: kh, Recovery: make([]float64, len(p.candidates))}
		total := cache.Kept(layer, kh)
		base := total - p.n
		colsum := p.colsum[:total]
		clear(colsum)
		// Pass 1: column sums over every prompt row (the frequency scores),
		// and the category masses.
		var mass Mass
		for i := 0; i < p.n; i++ {
			limit := p.rowProbs(layer, kh, q[i*qStride+kh*groups*p.headDim:], groups, base+i+1, cache, scale)
			row := p.meanRow(groups, limit)
			cur := p.basePos + int32(i)
			for j, a := range row {
				colsum[j] += float64(a)
				switch f := cache.EntryFlags(layer, kh, j); {
				case f&kvcache.FlagSpecial != 0:
					mass.Special += float64(a)
				case f&kvcache.FlagPunct != 0:
					mass.Punct += float64(a)
				case cur-cache.Pos(layer, kh, j) < p.window:
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
			p.finishHead(layer, kh, total, cache, hp)
			continue
		}

		// The frequent ranking of every row: entries by final column sum.
		p.order = p.order[:0]
		for j := 0; j < total; j++ {
			p.order = append(p.order, int32(j))
		}
		sort.SliceStable(p.order, func(a, b int) bool { return colsum[p.order[a]] > colsum[p.order[b]] })

		// Pass 2: what each candidate keeps at each row.
		sums := p.sums[:len(p.candidates)*groups]
		clear(sums)
		for i := first; i < p.n; i++ {
			limit := p.rowProbs(layer, kh, q[i*qStride+kh*groups*p.headDim:], groups, base+i+1, cache, scale)
			cur := p.basePos + int32(i)
			inFreq := p.inFreq[:limit]
			clear(inFreq)
			k := kvcache.Budget{Ratio: p.opt.RFreq}.At(int(cur) + 1)
			for _, j := range p.order {
				if k == 0 {
					break
				}
				if int(j) < limit {
					inFreq[j] = true
					k--
				}
			}
			rows := 1
			if p.opt.GQA == AggMin {
				rows = groups
			} else {
				p.meanRow(groups, limit)
			}
			for g := 0; g < rows; g++ {
				row := p.row[:limit]
				if p.opt.GQA == AggMin {
					row = p.probs[g*limit : (g+1)*limit]
				}
				for j, a := range row {
					var m kvcache.Component
					f := cache.EntryFlags(layer, kh, j)
					if f&kvcache.FlagSpecial != 0 {
						m |= kvcache.Special
					}
					if f&kvcache.FlagPunct != 0 {
						m |= kvcache.Punct
					}
					if inFreq[j] {
						m |= kvcache.Frequent
					}
					if cur-cache.Pos(layer, kh, j) < p.window {
						m |= kvcache.Local
					}
					for c, cand := range p.candidates {
						if cand.IsFull() || cand.Keep&m != 0 {
							sums[c*groups+g] += float64(a)
						}
					}
				}
			}
		}
		rowsCounted := float64(p.n - first)
		for c := range p.candidates {
			r := math.Inf(1)
			if p.opt.GQA == AggMean {
				r = sums[c*groups] / rowsCounted
			} else {
				for g := 0; g < groups; g++ {
					r = math.Min(r, sums[c*groups+g]/rowsCounted)
				}
			}
			hp.Recovery[c] = r
		}
		hp.Recovery[len(hp.Recovery)-1] = 1
		hp.Policy = p.candidates[Choose(hp.Recovery, p.opt.Threshold)]
		p.finishHead(layer, kh, total, cache, hp)
	}
}

// finishHead seeds the head's scores with the prompt's column sums (the
// paper's rule) and sets its policy; the policy is applied once the whole
// prefill is done.
func (p *Profiler) finishHead(layer, kh, total int, cache *kvcache.Cache, hp HeadProfile) {
	for j := range p.row[:total] {
		p.row[j] = float32(p.colsum[j])
	}
	cache.AddScores(layer, kh, p.row[:total])
	cache.SetPolicy(layer, kh, hp.Policy)
	p.heads = append(p.heads, hp)
}

// rowProbs fills p.probs with the group's attention over the first limit
// entries and returns the number it covers.
func (p *Profiler) rowProbs(layer, kh int, q []float32, groups, limit int, cache *kvcache.Cache, scale float32) int {
	return cache.Probs(layer, kh, q[:groups*p.headDim], groups, limit, scale, p.probs[:groups*limit])
}

// meanRow averages the group's rows in p.probs into p.row.
func (p *Profiler) meanRow(groups, limit int) []float32 {
	row := p.row[:limit]
	copy(row, p.probs[:limit])
	for g := 1; g < groups; g++ {
		for j, a := range p.probs[g*limit : (g+1)*limit] {
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
