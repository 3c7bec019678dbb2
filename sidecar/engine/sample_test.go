package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refPick is the sampler's definition written plainly: sort every candidate
// (logit descending, id ascending), cut by top-k, min-p and top-p, and walk
// the sorted list to u·mass. It returns the pick and the sorted candidates.
func refPick(logits []float32, c SamplerConfig, u float64) (int, []int) {
	var idx []int
	for i, l := range logits {
		if !math.IsNaN(float64(l)) && !math.IsInf(float64(l), -1) {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return a - b
	})
	if c.TopK > 0 && c.TopK < len(idx) {
		idx = idx[:c.TopK]
	}
	top := float64(logits[idx[0]])
	var probs []float64
	for _, i := range idx {
		probs = append(probs, math.Exp((float64(logits[i])-top)/c.Temperature))
	}
	n := len(idx)
	for c.MinP > 0 && n > 1 && probs[n-1] < c.MinP*probs[0] {
		n--
	}
	sum := 0.0
	for _, p := range probs[:n] {
		sum += p
	}
	if c.TopP > 0 && c.TopP < 1 {
		acc := 0.0
		for i := range n {
			acc += probs[i]
			if acc > c.TopP*sum {
				n = i + 1
				break
			}
		}
		sum = 0
		for _, p := range probs[:n] {
			sum += p
		}
	}
	r := u * sum
	for i := range n {
		r -= probs[i]
		if r < 0 {
			return idx[i], idx
		}
	}
	return idx[n-1], idx
}

// TestSamplerMatchesSortedDefinition: the linear-time draw picks what the
// sort-and-walk definition picks, over vocabularies with ties, −Inf and NaN
// logits, and every filter, for many uniform draws. Summation order may
// move a draw that lands within rounding of a boundary to the neighbouring
// token; anything else is a bug.
func TestSamplerMatchesSortedDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	configs := []SamplerConfig{
		{Temperature: 1, TopP: 1},
		{Temperature: 0.7, TopP: 0.9},
		{Temperature: 1.3, TopK: 5},
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05},
		{Temperature: 1, MinP: 0.2},
		{Temperature: 0.05, TopP: 0.5},
	}
	trials, off := 0, 0
	for _, vocab := range []int{1, 2, 3, 17, 300, 5000} {
		for rep := range max(4, 20-vocab/300) {
			logits := make([]float32, vocab)
			for i := range logits {
				logits[i] = float32(math.Round(r.NormFloat64()*4*4) / 4) // quarter steps: many ties
			}
			if vocab > 3 && rep%3 == 0 {
				logits[r.IntN(vocab)] = float32(math.Inf(-1))
				logits[r.IntN(vocab)] = float32(math.NaN())
			}
			for _, c := range configs {
				s := NewSampler(c)
				for range 30 {
					u := r.Float64()
					got := s.pick(slices.Clone(logits), u)
					want, sorted := refPick(logits, c, u)
					trials++
					if got == want {
						continue
					}
					gi, wi := slices.Index(sorted, got), slices.Index(sorted, want)
					if gi < 0 || gi-wi > 1 || wi-gi > 1 {
						t.Fatalf("vocab %d %+v u=%v: picked %d (rank %d), want %d (rank %d)", vocab, c, u, got, gi, want, wi)
					}
					off++
				}
			}
		}
	}
	if off > trials/1000 {
		t.Fatalf("%d of %d draws landed on a neighbour: more than rounding explains", off, trials)
	}
	t.Logf("%d draws, %d on a neighbour by rounding", trials, off)
}

// TestSamplerDeterministicAndAllocFree: one seed, one sequence; after the
// first call no allocation.
func TestSamplerDeterministicAndAllocFree(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	work := make([]float32, len(logits))
	draw := func(s *Sampler) int { copy(work, logits); return s.Sample(work, nil) }
	c := SamplerConfig{Temperature: 0.9, TopP: 0.95, Seed: 5}
	a, b := NewSampler(c), NewSampler(c)
	for i := range 50 {
		if x, y := draw(a), draw(b); x != y {
			t.Fatalf("draw %d: %d vs %d from one seed", i, x, y)
		}
	}
	if n := testing.AllocsPerRun(20, func() { draw(a) }); n != 0 {
		t.Errorf("%v allocations per draw", n)
	}
}

// BenchmarkSample: one draw over a real vocabulary size at common settings
// (OpenAI's defaults, a typical chat nucleus, llama.cpp's defaults).
func BenchmarkSample(b *testing.B) {
	for _, vocab := range []int{32000, 128256} {
		for _, c := range []SamplerConfig{{Temperature: 1, TopP: 1}, {Temperature: 0.8, TopP: 0.95}, {Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05}} {
			r := rand.New(rand.NewPCG(1, 2))
			logits := make([]float32, vocab)
			for i := range logits {
				logits[i] = float32(r.NormFloat64() * 3)
			}
			work := make([]float32, vocab)
			s := NewSampler(c)
			b.Run(fmt.Sprintf("vocab%d/T%g_topk%d_topp%g_minp%g", vocab, c.Temperature, c.TopK, c.TopP, c.MinP), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					copy(work, logits)
					s.Sample(work, nil)
				}
			})
		}
		// The log-probability every token reports, and with the five
		// alternatives a client may ask for.
		s := NewSampler(SamplerConfig{})
		logits := make([]float32, vocab)
		for _, k := range []int{0, 5} {
			top := make([]Alternative, 0, k)
			b.Run(fmt.Sprintf("vocab%d/logprob_top%d", vocab, k), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s.LogSoftmax(logits, 0, top)
				}
			})
		}
	}
}

// TestLogSoftmax: the token's log-probability and the top alternatives
// against a float64 log-sum-exp, to well within what a client can see.
func TestLogSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	s := NewSampler(SamplerConfig{})
	for _, vocab := range []int{1, 7, 32000} {
		logits := make([]float32, vocab)
		for i := range logits {
			logits[i] = float32(r.NormFloat64()*5 + 20) // far from 0: the max must be taken out
		}
		var sum float64
		mx := float64(slices.Max(logits))
		for _, v := range logits {
			sum += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(sum)
		tok := r.IntN(vocab)
		lp, top := s.LogSoftmax(logits, tok, make([]Alternative, 0, 5))
		if want := float64(logits[tok]) - lse; math.Abs(lp-want) > 1e-5 {
			t.Errorf("vocab %d: log p = %v, want %v", vocab, lp, want)
		}
		order := make([]int, vocab)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			if logits[a] > logits[b] {
				return -1
			} else if logits[a] < logits[b] {
				return 1
			}
			return 0
		})
		if len(top) != min(5, vocab) {
			t.Fatalf("vocab %d: %d alternatives", vocab, len(top))
		}
		for i, a := range top {
			if a.Token != order[i] || math.Abs(a.Logprob-(float64(logits[a.Token])-lse)) > 1e-5 {
				t.Errorf("vocab %d alternative %d: %+v, want token %d", vocab, i, a, order[i])
			}
		}
	}
}
