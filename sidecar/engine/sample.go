package engine

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// SamplerConfig chooses the next token from logits. Temperature 0 is greedy.
type SamplerConfig struct {
	Temperature   float64
	TopK          int     // 0 = off
	TopP          float64 // 1 or 0 = off
	MinP          float64 // 0 = off
	RepeatPenalty float64 // 1 or 0 = off
	RepeatLastN   int     // window of the penalty (0 = 64)
	Seed          uint64
}

// Validate reports the first out-of-range setting.
func (c SamplerConfig) Validate() error {
	switch {
	case math.IsNaN(c.Temperature) || c.Temperature < 0 || c.Temperature > 100:
		return fmt.Errorf("temperature %v out of range [0, 100]", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top_k %d must be ≥ 0", c.TopK)
	case math.IsNaN(c.TopP) || c.TopP < 0 || c.TopP > 1:
		return fmt.Errorf("top_p %v out of range [0, 1]", c.TopP)
	case math.IsNaN(c.MinP) || c.MinP < 0 || c.MinP > 1:
		return fmt.Errorf("min_p %v out of range [0, 1]", c.MinP)
	case math.IsNaN(c.RepeatPenalty) || c.RepeatPenalty < 0 || c.RepeatPenalty > 10:
		return fmt.Errorf("repeat penalty %v out of range [0, 10]", c.RepeatPenalty)
	}
	return nil
}

// Sampler draws tokens deterministically for a given seed. Its scratch is
// reused, so sampling allocates nothing after the first call.
//
// The filters and the draw are defined over the candidates in descending
// order (logit, then token id for ties): top-k keeps the first k, min-p
// those within a factor of the best, top-p the shortest prefix holding that
// share of the mass, and the draw walks that order. None of it needs the
// order itself, only where a running sum crosses a value, so instead of
// sorting the vocabulary (5 ms a token at 32k entries, 28 ms at 128k) each
// step partitions around pivots as quickselect does: linear time on average.
type Sampler struct {
	cfg  SamplerConfig
	rng  *rand.Rand
	cand []int     // candidate token ids, partially ordered
	p    []float32 // probability (up to a common factor) by token id
}

// NewSampler makes a sampler.
func NewSampler(cfg SamplerConfig) *Sampler {
	return &Sampler{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
}

// Sample picks the next token. history is the sequence so far (for the
// repetition penalty); logits may be modified.
func (s *Sampler) Sample(logits []float32, history []int) int {
	c := s.cfg
	if c.RepeatPenalty > 0 && c.RepeatPenalty != 1 {
		n := c.RepeatLastN
		if n <= 0 {
			n = 64
		}
		start := max(0, len(history)-n)
		for _, t := range history[start:] {
			if t >= 0 && t < len(logits) {
				// As llama.cpp: shrink positive logits, grow negative ones.
				if logits[t] > 0 {
					logits[t] /= float32(c.RepeatPenalty)
				} else {
					logits[t] *= float32(c.RepeatPenalty)
				}
			}
		}
	}
	if c.Temperature == 0 {
		return tensor.Argmax(logits)
	}
	return s.pick(logits, s.rng.Float64())
}

// scratch is s.p at length n, grown only when a vocabulary is larger than
// any before.
func (s *Sampler) scratch(n int) []float32 {
	if cap(s.p) < n {
		s.p = make([]float32, n)
	}
	return s.p[:n]
}

// pick is the draw for a uniform u in [0, 1).
func (s *Sampler) pick(logits []float32, u float64) int {
	c := s.cfg
	p := s.scratch(len(logits))
	topK := c.TopK > 0 && c.TopK < len(logits)
	// Candidates: every token but NaN and −Inf, which are never drawn.
	// Without top-k every token also needs its probability, from the
	// vector softmax of logits/T; NaN goes in as −Inf so that it cannot
	// poison the rest.
	negInf := float32(math.Inf(-1))
	s.cand = s.cand[:0]
	for i, l := range logits {
		if l == l && l != negInf {
			s.cand = append(s.cand, i)
		}
		if !topK {
			if l != l {
				l = negInf
			}
			p[i] = l
		}
	}
	if len(s.cand) == 0 {
		return tensor.Argmax(logits)
	}
	o := order{logits: logits}
	cand := s.cand
	if topK && c.TopK < len(cand) {
		o.selectFirst(cand, c.TopK)
		cand = cand[:c.TopK]
	}
	if topK {
		top := math.Inf(-1)
		for _, i := range cand {
			top = max(top, float64(logits[i]))
		}
		for _, i := range cand {
			p[i] = float32(math.Exp((float64(logits[i]) - top) / c.Temperature))
		}
	} else {
		tensor.Scale(float32(1/c.Temperature), p)
		tensor.Softmax(p)
	}
	if c.MinP > 0 {
		// min-p keeps p ≥ MinP·p_best.
		var best float32
		for _, i := range cand {
			best = max(best, p[i])
		}
		n := 0
		for _, i := range cand {
			if float64(p[i]) >= c.MinP*float64(best) {
				cand[n] = i
				n++
			}
		}
		cand = cand[:n]
	}
	sum := mass(p, cand)
	o.p = p
	if c.TopP > 0 && c.TopP < 1 {
		// The nucleus: the shortest prefix whose mass exceeds TopP·sum.
		k := o.crossing(cand, c.TopP*sum)
		cand = cand[:k+1]
		sum = mass(p, cand)
	}
	return cand[o.crossing(cand, u*sum)]
}

// mass is Σ p over cand, in four independent sums so that the additions
// need not wait on each other.
func mass(p []float32, cand []int) float64 {
	var a, b, c, d float64
	i := 0
	for ; i+4 <= len(cand); i += 4 {
		a += float64(p[cand[i]])
		b += float64(p[cand[i+1]])
		c += float64(p[cand[i+2]])
		d += float64(p[cand[i+3]])
	}
	for ; i < len(cand); i++ {
		a += float64(p[cand[i]])
	}
	return a + b + c + d
}

// order is the candidates' sampling order: higher logit first, then lower
// token id, so that equal logits never make a seed's draw depend on the
// partition's history. p is the probability of each token id.
type order struct {
	logits []float32
	p      []float32
}

func (o order) before(a, b int) bool {
	if la, lb := o.logits[a], o.logits[b]; la != lb {
		return la > lb
	}
	return a < b
}

// partition puts the elements of c that come before c's middle-of-three
// pivot first, then the pivot, then the rest, and returns the pivot's index
// and the mass (by o.p, when set) of the elements before it.
func (o order) partition(c []int) (int, float64) {
	n := len(c)
	a, b, d := 0, n/2, n-1
	// Median of three, moved to the end.
	if o.before(c[b], c[a]) {
		a, b = b, a
	}
	if o.before(c[d], c[b]) {
		b = d
		if o.before(c[b], c[a]) {
			b = a
		}
	}
	c[b], c[d] = c[d], c[b]
	pv := c[d]
	// Branch-free Lomuto: every element is swapped to j and j advances
	// only past those before the pivot. On random logits the comparison is
	// a coin toss, and a branch on it mispredicts every other element.
	j := 0
	var mass float64
	for i := 0; i < d; i++ {
		x := c[i]
		in := b2i(o.before(x, pv))
		c[i], c[j] = c[j], x
		j += in
		if o.p != nil {
			mass += float64(o.p[x]) * float64(in)
		}
	}
	c[j], c[d] = c[d], c[j]
	return j, mass
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// selectFirst rearranges c so that its first k elements are the first k in
// order (in no particular order among themselves).
func (o order) selectFirst(c []int, k int) {
	lo, hi := 0, len(c)
	for hi-lo > 1 {
		j, _ := o.partition(c[lo:hi])
		j += lo
		switch {
		case j == k || j == k-1:
			return
		case j > k:
			hi = j
		default:
			lo = j + 1
		}
	}
}

// crossing returns the index in c of the element at which the running mass
// of c, taken in order, first exceeds t, rearranging c so that the elements
// before it in order come before that index. Where rounding leaves t at or
// above the total, it is the last element in order.
func (o order) crossing(c []int, t float64) int {
	lo, hi := 0, len(c)
	var acc float64 // mass of c[:lo], all of which precede c[lo:hi]
	for hi-lo > 1 {
		j, m := o.partition(c[lo:hi])
		j += lo
		switch {
		case acc+m > t:
			hi = j
		case acc+m+float64(o.p[c[j]]) > t:
			return j
		default:
			acc += m + float64(o.p[c[j]])
			lo = j + 1
		}
	}
	if lo >= len(c) {
		// Past the end by rounding: the last window's pivot, left at the
		// end, is the last in order.
		return len(c) - 1
	}
	return lo
}

// LogSoftmax returns log p(token) under logits, and fills top (best first)
// with the k most likely alternatives.
//
// It runs after every sampled token, so the normaliser comes from the
// vector exponentials of tensor.ExpSum over a scratch copy (the
// sampler's), summed in float64: a float64 math.Exp per vocabulary entry
// cost 0.6 ms a token at 32k entries, longer than sampling. Without
// alternatives asked for (the usual case) nothing else walks the logits.
func (s *Sampler) LogSoftmax(logits []float32, token int, top []Alternative) (float64, []Alternative) {
	scratch := s.scratch(len(logits))
	copy(scratch, logits)
	mx := logits[tensor.Argmax(logits)]
	lse := float64(mx) + math.Log(tensor.ExpSum(scratch, mx))
	k := cap(top)
	top = top[:0]
	if k == 0 {
		return float64(logits[token]) - lse, top
	}
	for i, v := range logits {
		lp := float64(v) - lse
		if len(top) < k {
			top = append(top, Alternative{i, lp})
		} else if lp > top[k-1].Logprob {
			top[k-1] = Alternative{i, lp}
		} else {
			continue
		}
		for j := len(top) - 1; j > 0 && top[j].Logprob > top[j-1].Logprob; j-- {
			top[j], top[j-1] = top[j-1], top[j]
		}
	}
	return float64(logits[token]) - lse, top
}

// Alternative is a candidate token and its log-probability.
type Alternative struct {
	Token   int
	Logprob float64
}
