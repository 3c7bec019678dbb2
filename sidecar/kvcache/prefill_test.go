package kvcache

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttendPrefillMatchesAttend checks the whole-prompt path against one
// Attend per token with the causal limit, on both element types, several
// block sizes, head dims and group counts, after a history the random
// policy has thinned (so entries before the batch are ragged), with batches
// that are whole tiles, short of one, and longer.
func TestAttendPrefillMatchesAttend(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range []DType{F32, F16} {
		for _, c := range []struct{ d, be, groups, hist, n int }{
			{16, 16, 1, 0, 1}, {16, 16, 1, 0, 6}, {48, 16, 3, 40, 13}, {64, 64, 2, 100, 29},
			{64, 5, 1, 17, 7}, {32, 16, 4, 0, 40},
		} {
			t.Run(fmt.Sprintf("%v/d%d/be%d/g%d/hist%d/n%d", dt, c.d, c.be, c.groups, c.hist, c.n), func(t *testing.T) {
				const kvHeads = 2
				pool := NewPool(c.d, dt, c.be, 0)
				cache := New(Config{Layers: 1, KVHeads: kvHeads, Seed: 3}, pool)
				defer cache.Close()
				f := &fixture{t: t, pool: pool, c: cache}
				if c.hist > 0 {
					f.prefill(make([]Flags, c.hist))
					cache.SetAllPolicies(Policy{Keep: Random, Random: Budget{Ratio: 0.6}})
					cache.ApplyAll()
				}
				f.prefill(make([]Flags, c.n))
				if !cache.CanAttendPrefill() {
					t.Fatal("CanAttendPrefill false for host rows in whole panels")
				}
				qs := kvHeads * c.groups * c.d
				q := make([]float32, c.n*qs)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				const scale = 0.3
				var sc PrefillScratch
				got, want := make([]float32, len(q)), make([]float32, len(q))
				for kh := range kvHeads {
					off := kh * c.groups * c.d
					cache.AttendPrefill(0, kh, q[off:], qs, c.groups, c.n, scale, got[off:], qs, &sc)
					kept := cache.Kept(0, kh)
					probs := make([]float32, c.groups*kept)
					for i := range c.n {
						row := q[i*qs+off:][:c.groups*c.d]
						cache.Attend(0, kh, row, c.groups, kept-c.n+i+1, scale, want[i*qs+off:][:c.groups*c.d], probs, nil)
					}
				}
				for i := range got {
					if math.Abs(float64(got[i]-want[i])) > 2e-5*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("value %d (token %d): %v, Attend %v", i, i/qs, got[i], want[i])
					}
				}
			})
		}
	}
}
