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
			{64, 5, 1, 17, 7}, {32, 5, 2, 60, 21}, {32, 16, 4, 0, 40}, {16, 16, 8, 9, 11},
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
				for i := range got {
					got[i] = float32(math.NaN()) // AttendPrefill must overwrite its outputs
				}
				for kh := range kvHeads {
					off := kh * c.groups * c.d
					sink := &rowRecorder{}
					cache.AttendPrefill(0, kh, q[off:], qs, c.groups, c.n, scale, got[off:], qs, &sc, sink)
					if len(sink.rows) != c.n {
						t.Fatalf("head %d: %d rows sunk, want %d", kh, len(sink.rows), c.n)
					}
					kept := cache.Kept(0, kh)
					for i := range c.n {
						limit := kept - c.n + i + 1
						probs, lse := make([]float32, c.groups*limit), make([]float32, c.groups)
						row := q[i*qs+off:][:c.groups*c.d]
						cache.Attend(0, kh, row, c.groups, limit, scale, want[i*qs+off:][:c.groups*c.d], probs, lse)
						r := sink.rows[i]
						if r.kvHead != kh || r.token != i || r.limit != limit || len(r.probs) != len(probs) {
							t.Fatalf("head %d token %d: sunk head %d token %d limit %d (%d probs), want limit %d", kh, i, r.kvHead, r.token, r.limit, len(r.probs), limit)
						}
						for j := range probs {
							if math.Abs(float64(r.probs[j]-probs[j])) > 1e-5*(1+float64(probs[j])) {
								t.Fatalf("head %d token %d: prob %d = %v, Attend %v", kh, i, j, r.probs[j], probs[j])
							}
						}
						for g := range lse {
							if math.Abs(float64(r.lse[g]-lse[g])) > 1e-4 {
								t.Fatalf("head %d token %d: lse[%d] = %v, Attend %v", kh, i, g, r.lse[g], lse[g])
							}
						}
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

type sunkRow struct {
	kvHead, token, limit int
	probs, lse           []float32
}

type rowRecorder struct{ rows []sunkRow }

func (r *rowRecorder) PromptRow(kvHead, token int, probs, lse []float32, groups, limit int) {
	r.rows = append(r.rows, sunkRow{kvHead, token, limit, append([]float32(nil), probs...), append([]float32(nil), lse...)})
}
