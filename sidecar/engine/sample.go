package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

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
type Sampler struct {
	cfg   SamplerConfig
	rng   *rand.Rand
	idx   []int
	probs []float64
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
	// Candidates sorted by logit, best first; top-k cuts the list early.
	s.idx = s.idx[:0]
	for i := range logits {
		s.idx = append(s.idx, i)
	}
	slices.SortFunc(s.idx, func(a, b int) int {
		if logits[a] != logits[b] {
			if logits[a] > logits[b] {
				return -1
			}
			return 1
		}
		return a - b // ties by id: the same seed always samples the same token
	})
	cand := s.idx
	if c.TopK > 0 && c.TopK < len(cand) {
		cand = cand[:c.TopK]
	}
	s.probs = s.probs[:0]
	top := float64(logits[cand[0]])
	var sum float64
	for _, i := range cand {
		p := math.Exp((float64(logits[i]) - top) / c.Temperature)
		s.probs = append(s.probs, p)
		sum += p
	}
	n := len(cand)
	if c.MinP > 0 {
		for n > 1 && s.probs[n-1] < c.MinP*s.probs[0] {
			sum -= s.probs[n-1]
			n--
		}
	}
	if c.TopP > 0 && c.TopP < 1 {
		var acc float64
		for i := 0; i < n; i++ {
			acc += s.probs[i]
			if acc >= c.TopP*sum {
				n = i + 1
				break
			}
		}
		sum = 0
		for _, p := range s.probs[:n] {
			sum += p
		}
	}
	r := s.rng.Float64() * sum
	for i := 0; i < n; i++ {
		r -= s.probs[i]
		if r < 0 {
			return cand[i]
		}
	}
	return cand[n-1]
}

// LogSoftmax returns log p(token) under logits, and fills top (best first)
// with the k most likely alternatives.
func LogSoftmax(logits []float32, token int, top []Alternative) (float64, []Alternative) {
	mx := float64(logits[tensor.Argmax(logits)])
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(sum)
	k := cap(top)
	top = top[:0]
	for i, v := range logits {
		lp := float64(v) - lse
		if len(top) < k {
			top = append(top, Alternative{i, lp})
		} else if k > 0 && lp > top[k-1].Logprob {
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
