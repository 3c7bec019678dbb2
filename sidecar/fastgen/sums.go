package fastgen

import (
	"fmt"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// A backend that holds the keys and queries elsewhere (the GPU) profiles a
// layer without handing the Profiler its attention rows: it asks for the
// layer's Plan, computes the LayerSums the plan defines where its data
// lives (kernels/fastgen.cu: prof_pass1, prof_rank, prof_pass2), and hands
// them to LayerFromSums, which chooses each head's policy exactly as Layer
// does from its own sums.

// SumsProfiler is the Profiler as such a backend sees it.
type SumsProfiler interface {
	Plan(layer int, cache *kvcache.Cache) *LayerPlan
	LayerFromSums(layer int, cache *kvcache.Cache, s *LayerSums) error
}

var _ SumsProfiler = (*Profiler)(nil)

// LayerPlan is what computing one layer's sums takes besides the keys and
// queries. Its slices stay valid until the Profiler's next layer.
type LayerPlan struct {
	// Candidates counts the candidate policies, full (the last) included.
	Candidates int
	// RankFreq and RankLocal are the candidates frequent and local join
	// (full's, Candidates−1, when the order leaves them out).
	RankFreq, RankLocal int
	// Window is local's: a row at position cur keeps entries with
	// cur − pos < Window.
	Window int32
	// Start is the first prompt row counted in recovery.
	Start int
	// FreqK holds, per prompt row, how many entries frequent keeps: the
	// row's visible entries that rank first by final column sum (ties to
	// the lower entry index).
	FreqK []int32
	// PerGroup asks for sums per query head of a KV head's group (GQA min);
	// otherwise of the group's mean attention.
	PerGroup bool
	// Fixed is a baseline's fixed policy: only column sums and masses count.
	Fixed bool
	// Heads holds each KV head's entries, the prompt's last: prompt row i
	// sees the first Total − n + i + 1.
	Heads []PlanHead
}

// PlanHead is one KV head's entries in cache order.
type PlanHead struct {
	Total int
	// First is, per entry, the candidate its class (special, punct) joins,
	// full's for other entries.
	First []int8
	Pos   []int32
	Flags []kvcache.Flags
}

// LayerSums is one layer's profiling sums, per KV head, over the group-mean
// probability a of each (prompt row, visible entry) (with PerGroup, Sums
// takes each query head's own probability instead).
type LayerSums struct {
	// Colsum[kh][j]: Σ over every prompt row of a(row, j), Total entries.
	Colsum [][]float32
	// Mass[kh]: Σ over every prompt row of a, by the entry's category:
	// special, else punct, else inside the window, else other.
	Mass []Mass
	// Sums[kh][g·Candidates + c]: Σ over counted rows of a(row, j) over the
	// entries the row keeps first at candidate c: the least of First[j],
	// RankFreq if the row's frequent set holds j, RankLocal if j is inside
	// the row's window. g is the query head (PerGroup) or 0.
	Sums [][]float64
}

// Plan describes layer for a backend that computes its sums itself; the
// layer's prompt entries must be in the cache.
func (p *Profiler) Plan(layer int, cache *kvcache.Cache) *LayerPlan {
	p.entries(layer, cache)
	pl := &p.plan
	if pl.FreqK == nil {
		pl.FreqK = make([]int32, p.n)
		for i, k := range p.freqK {
			pl.FreqK[i] = int32(k)
		}
	}
	pl.Candidates, pl.RankFreq, pl.RankLocal = len(p.candidates), p.rankFreq, p.rankLocal
	pl.Window, pl.Start = p.window, p.start
	pl.PerGroup, pl.Fixed = p.bucketRows() > 1, p.fixed != nil
	pl.Heads = pl.Heads[:0]
	for kh := range p.hs {
		h := &p.hs[kh]
		pl.Heads = append(pl.Heads, PlanHead{Total: h.total, First: h.first[:h.total], Pos: h.pos[:h.total], Flags: h.flags[:h.total]})
	}
	return pl
}

// LayerFromSums finishes layer from sums computed as its Plan describes:
// each head's policy is chosen, and its scores and policy written to the
// cache, as Layer does.
func (p *Profiler) LayerFromSums(layer int, cache *kvcache.Cache, s *LayerSums) error {
	nc := len(p.candidates)
	if len(s.Colsum) != p.nKV || len(s.Mass) != p.nKV || (p.fixed == nil && len(s.Sums) != p.nKV) {
		return fmt.Errorf("fastgen: layer %d sums cover %d/%d/%d KV heads, want %d", layer, len(s.Colsum), len(s.Mass), len(s.Sums), p.nKV)
	}
	for kh := range p.nKV {
		total := cache.Kept(layer, kh)
		if len(s.Colsum[kh]) != total || p.fixed == nil && len(s.Sums[kh]) != nc*p.bucketRows() {
			return fmt.Errorf("fastgen: layer %d head %d: %d column sums and %d candidate sums, want %d and %d",
				layer, kh, len(s.Colsum[kh]), len(s.Sums[kh]), total, nc*p.bucketRows())
		}
	}
	for kh := range p.nKV {
		var sums []float64
		if p.fixed == nil {
			sums = s.Sums[kh]
		}
		p.heads = append(p.heads, p.conclude(layer, kh, s.Mass[kh], sums, s.Colsum[kh], cache))
	}
	p.begun = false
	return nil
}
