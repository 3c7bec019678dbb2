// Package eval measures what FastGen's compressed KV cache costs in quality
// against a full cache, and compares it with fixed-policy baselines tuned to
// the same realised pruned ratio (the spec's "Quantities to report").
//
// The metric functions here are pure so they can be checked against known
// answers; sweep.go runs the model, report.go and plot.go write the results.
package eval

import (
	"math"
	"slices"
	"strings"
)

// LogProbs returns the log-softmax of logits in float64, so that KL and
// perplexity over many steps do not lose precision to float32 rounding.
func LogProbs(logits []float32, dst []float64) []float64 {
	dst = slices.Grow(dst[:0], len(logits))[:len(logits)]
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(sum)
	for i, v := range logits {
		dst[i] = float64(v) - lse
	}
	return dst
}

// KL is KL(p ‖ q) for two distributions given as log-probabilities.
// Terms with p = 0 contribute nothing, as the limit p·log p → 0 says.
func KL(logP, logQ []float64) float64 {
	var kl float64
	for i, lp := range logP {
		if math.IsInf(lp, -1) {
			continue
		}
		kl += math.Exp(lp) * (lp - logQ[i])
	}
	return math.Max(kl, 0) // rounding can leave −1e-17 for identical inputs
}

// Perplexity is exp of the mean negative log-likelihood per token.
func Perplexity(nllSum float64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return math.Exp(nllSum / float64(n))
}

// DeltaPPLPct is the relative perplexity increase of the compressed cache
// over the full one, in percent, from their summed NLLs over the same n
// teacher-forced tokens.
func DeltaPPLPct(fullNLL, compNLL float64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	// exp(a/n)/exp(b/n) − 1, computed as one exp so that large NLLs cannot
	// overflow either perplexity on its own.
	return 100 * math.Expm1((compNLL-fullNLL)/float64(n))
}

// FirstDivergence is the index of the first position where a and b differ.
// Identical sequences diverge at their length; a prefix diverges where the
// shorter one ends.
func FirstDivergence[T comparable](a, b []T) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return len(a)
	}
	return n
}

// ExactMatch is the share of the reference's positions where the candidate
// has the same token. Positions past the candidate's end count as misses.
func ExactMatch[T comparable](ref, cand []T) float64 {
	if len(ref) == 0 {
		if len(cand) == 0 {
			return 1
		}
		return 0
	}
	hit := 0
	for i := 0; i < min(len(ref), len(cand)); i++ {
		if ref[i] == cand[i] {
			hit++
		}
	}
	return float64(hit) / float64(len(ref))
}

// LCS is the length of the longest common subsequence of a and b.
func LCS[T comparable](a, b []T) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	// One row of the DP table is enough: row i depends only on row i−1.
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			switch {
			case a[i-1] == b[j-1]:
				cur[j] = prev[j-1] + 1
			case prev[j] >= cur[j-1]:
				cur[j] = prev[j]
			default:
				cur[j] = cur[j-1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// RougeLSeq is the ROUGE-L F1 (β = 1) of a candidate against a reference.
// Two empty sequences agree perfectly.
func RougeLSeq[T comparable](ref, cand []T) float64 {
	if len(ref) == 0 && len(cand) == 0 {
		return 1
	}
	l := LCS(ref, cand)
	if l == 0 {
		return 0
	}
	p := float64(l) / float64(len(cand))
	r := float64(l) / float64(len(ref))
	return 2 * p * r / (p + r)
}

// RougeL is ROUGE-L F1 over whitespace-separated words, as ROUGE is usually
// reported for text.
func RougeL(ref, cand string) float64 {
	return RougeLSeq(strings.Fields(ref), strings.Fields(cand))
}

// Percentile is the q-quantile (0 ≤ q ≤ 1) of xs with linear interpolation
// between order statistics; xs is sorted in place.
func Percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	pos := q * float64(len(xs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(xs)-1)
	return xs[lo] + (pos-float64(lo))*(xs[hi]-xs[lo])
}

// AttentionLoss is 1 − Σ_{j kept} a_j for one head at one step: a holds the
// full cache's attention by absolute position, kept the positions the
// compressed head attended over.
func AttentionLoss(a []float32, kept []int32) float64 {
	var s float64
	for _, p := range kept {
		if int(p) < len(a) {
			s += float64(a[p])
		}
	}
	return math.Max(0, 1-s)
}
