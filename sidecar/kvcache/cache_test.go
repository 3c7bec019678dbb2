package kvcache

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func TestLocalWindowSlides(t *testing.T) {
	for _, w := range []int{1, 3, 5, 16} {
		t.Run(fmt.Sprint("w=", w), func(t *testing.T) {
			f := newFixture(t, 2, 2, 8, F32, 4)
			const L = 20
			f.prefill(make([]Flags, L))
			f.c.SetAllPolicies(Policy{Keep: Local, Window: Budget{Tokens: w}})
			f.c.ApplyAll()
			for l := 0; l < 2; l++ {
				for kh := 0; kh < 2; kh++ {
					if got := f.positions(l, kh); !slices.Equal(got, seq(L-w, L)) {
						t.Fatalf("after prefill head %d/%d keeps %v, want the last %d positions", l, kh, got, w)
					}
					f.c.TakeEvicted(l, kh)
				}
			}
			for s := 0; s < 12; s++ {
				f.step(0, nil)
				p := f.c.Len() - 1 // the step's token
				for l := 0; l < 2; l++ {
					for kh := 0; kh < 2; kh++ {
						if got := f.positions(l, kh); !slices.Equal(got, seq(p-w+1, p+1)) {
							t.Fatalf("step at %d: head %d/%d keeps %v, want %v", p, l, kh, got, seq(p-w+1, p+1))
						}
						// Exactly the entry at t−w leaves (t = p+1).
						if ev := f.c.TakeEvicted(l, kh); !slices.Equal(ev, []int32{int32(p - w)}) {
							t.Fatalf("step at %d: head %d/%d evicted %v, want [%d]", p, l, kh, ev, p-w)
						}
						f.checkRows(l, kh, nil)
					}
				}
			}
		})
	}
}

// TestFrequentEvictsLowestFirst checks the heavy-hitter rule against a
// reference that ranks every cached position by its score: the top
// ceil(r_f·t) stay, with t counting the step's own token, and the protected
// (special) entries stay whatever they score.
func TestFrequentEvictsLowestFirst(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  Policy
	}{
		{"ratio", Policy{Keep: Frequent, Frequent: Budget{Ratio: 0.3}}},
		{"tokens", Policy{Keep: Frequent, Frequent: Budget{Tokens: 5}}},
		{"special+ratio", Policy{Keep: Special | Frequent, Frequent: Budget{Ratio: 0.3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			f := newFixture(t, 1, 1, 4, F32, 4)
			const L = 16
			flags := make([]Flags, L)
			flagOf := func(p int) Flags {
				if p%7 == 3 {
					return FlagSpecial
				}
				return 0
			}
			for p := range flags {
				flags[p] = flagOf(p)
			}
			f.prefill(flags)
			score := map[int32]float64{}
			seed := make([]float32, L)
			for p := range seed {
				seed[p] = rng.Float32()
				score[int32(p)] = float64(seed[p])
			}
			f.c.AddScores(0, 0, seed) // the prompt's entries are in order before any eviction
			f.c.SetPolicy(0, 0, tc.pol)
			f.c.ApplyAll()
			want := func(t int) []int32 {
				var all []int32
				for p := range score {
					all = append(all, p)
				}
				sort.Slice(all, func(a, b int) bool { return score[all[a]] > score[all[b]] })
				k := min(tc.pol.Frequent.At(t), len(all))
				keep := append([]int32(nil), all[:k]...)
				for _, p := range all[k:] {
					if tc.pol.Keep&Special != 0 && flagOf(int(p)) != 0 {
						keep = append(keep, p)
					}
				}
				slices.Sort(keep)
				for p := range score {
					if !slices.Contains(keep, p) {
						delete(score, p) // evicted for good
					}
				}
				return keep
			}
			if got, w := f.positions(0, 0), want(L); !slices.Equal(got, w) {
				t.Fatalf("after prefill keeps %v, want %v", got, w)
			}
			for s := 0; s < 30; s++ {
				p := int32(f.c.Len())
				score[p] = 0
				step := map[int32]float32{}
				f.step(flagOf(int(p)), func(l, kh, n int) []float32 {
					probs := make([]float32, n)
					for j := range probs {
						pos := f.c.Pos(l, kh, j)
						step[pos] = rng.Float32() / float32(n)
						probs[j] = step[pos]
					}
					return probs
				})
				for pos, a := range step {
					score[pos] += float64(a)
				}
				if got, w := f.positions(0, 0), want(int(p)+1); !slices.Equal(got, w) {
					t.Fatalf("step at %d keeps %v, want %v", p, got, w)
				}
				for j := 0; j < f.c.Kept(0, 0); j++ {
					pos := f.c.Pos(0, 0, j)
					if got := f.c.Score(0, 0, j); math.Abs(float64(got)-score[pos]) > 1e-5 {
						t.Fatalf("position %d scores %v, want %v", pos, got, score[pos])
					}
				}
				f.checkRows(0, 0, func(p int) Flags { return flagOf(p) })
			}
		})
	}
}

func TestFrequentHandBuilt(t *testing.T) {
	// Scores 5, 1, 4, 0.5 (special), 3 with room for the top 3: the
	// lowest-scoring entry no other component protects (1) goes; the special
	// one stays though it scores least.
	f := newFixture(t, 1, 1, 4, F32, 2)
	f.prefill([]Flags{0, 0, 0, FlagSpecial, 0})
	f.c.AddScores(0, 0, []float32{5, 1, 4, 0.5, 3})
	f.c.SetPolicy(0, 0, Policy{Keep: Special | Frequent, Frequent: Budget{Tokens: 3}})
	f.c.ApplyAll()
	if got := f.positions(0, 0); !slices.Equal(got, []int32{0, 2, 3, 4}) {
		t.Fatalf("keeps %v, want [0 2 3 4]", got)
	}
	if ev := f.c.TakeEvicted(0, 0); !slices.Equal(ev, []int32{1}) {
		t.Fatalf("evicted %v, want [1]", ev)
	}
	// A new token that draws 3.5 of attention outranks position 4 (3),
	// which goes next.
	f.step(0, func(l, kh, n int) []float32 {
		probs := make([]float32, n)
		for j := range probs {
			if f.c.Pos(l, kh, j) == 5 {
				probs[j] = 3.5
			}
		}
		return probs
	})
	if got := f.positions(0, 0); !slices.Equal(got, []int32{0, 2, 3, 5}) {
		t.Fatalf("after a step keeps %v, want [0 2 3 5]", got)
	}
}

func TestSpecialPunctRetention(t *testing.T) {
	prompt := []Flags{FlagSpecial, 0, FlagPunct, 0, 0, FlagPunct, FlagSpecial, 0}
	for _, tc := range []struct {
		name string
		keep Component
		// kept after prefill, then after steps of a normal, a punct and a
		// special token
		prefill []int32
		steps   [3][]int32
	}{
		{"special", Special, []int32{0, 6}, [3][]int32{{0, 6}, {0, 6}, {0, 6, 10}}},
		{"special+punct", Special | Punct, []int32{0, 2, 5, 6}, [3][]int32{{0, 2, 5, 6}, {0, 2, 5, 6, 9}, {0, 2, 5, 6, 9, 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, 2, 8, F32, 4)
			f.prefill(prompt)
			f.c.SetAllPolicies(Policy{Keep: tc.keep})
			f.c.ApplyAll()
			for kh := 0; kh < 2; kh++ {
				if got := f.positions(0, kh); !slices.Equal(got, tc.prefill) {
					t.Fatalf("head %d after prefill keeps %v, want %v", kh, got, tc.prefill)
				}
			}
			for s, fl := range []Flags{0, FlagPunct, FlagSpecial} {
				f.step(fl, nil)
				for kh := 0; kh < 2; kh++ {
					if got := f.positions(0, kh); !slices.Equal(got, tc.steps[s]) {
						t.Fatalf("head %d after step %d keeps %v, want %v", kh, s, got, tc.steps[s])
					}
				}
			}
		})
	}
}

// TestAttendFirst: a head on the special policy attends to a normal new
// token at its own step, then drops it.
func TestAttendFirst(t *testing.T) {
	const d = 8
	f := newFixture(t, 1, 1, d, F32, 4)
	f.prefill([]Flags{FlagSpecial, 0, 0, FlagSpecial})
	f.c.SetAllPolicies(Policy{Keep: Special})
	f.c.ApplyAll()
	f.c.TakeEvicted(0, 0)
	p := f.c.Len()
	k, v := kvRows(p, 1, d)
	f.c.AppendAt(0, 0, 0, k, v)
	n := f.c.Kept(0, 0)
	if n != 3 {
		t.Fatalf("the step attends over %d entries, want 2 kept + the new token", n)
	}
	probs, out := make([]float32, n), make([]float32, d)
	f.c.Attend(0, 0, k, 1, n, 0.5, out, probs, nil)
	want := make([]float64, d)
	for j := 0; j < n; j++ {
		_, vj := kvRows(int(f.c.Pos(0, 0, j)), 1, d)
		for x := range want {
			want[x] += float64(probs[j]) * float64(vj[x])
		}
	}
	sawNew := false
	for j := 0; j < n; j++ {
		if f.c.Pos(0, 0, j) == int32(p) && probs[j] > 0 {
			sawNew = true
		}
	}
	if !sawNew {
		t.Fatal("the new token got no attention at its own step")
	}
	for x := range out {
		if math.Abs(float64(out[x])-want[x]) > 1e-5 {
			t.Fatalf("out[%d] = %v, want %v (the new token's V included)", x, out[x], want[x])
		}
	}
	f.c.Observe(0, 0, probs, 1, n, &f.sc)
	f.c.Advance(1)
	if got := f.positions(0, 0); !slices.Equal(got, []int32{0, 3}) {
		t.Fatalf("after the step keeps %v, want [0 3]", got)
	}
	if ev := f.c.TakeEvicted(0, 0); !slices.Equal(ev, []int32{int32(p)}) {
		t.Fatalf("evicted %v, want the new token [%d]", ev, p)
	}
}

// TestUnion: an entry kept by any component stays; one kept by none goes.
func TestUnion(t *testing.T) {
	f := newFixture(t, 1, 1, 4, F32, 4)
	flags := make([]Flags, 12)
	flags[1] = FlagSpecial
	flags[4] = FlagPunct
	f.prefill(flags)
	scores := make([]float32, 12)
	scores[5], scores[7], scores[10] = 9, 8, 7 // 10 is also in the window
	f.c.AddScores(0, 0, scores)
	f.c.SetPolicy(0, 0, Policy{Keep: Special | Punct | Frequent | Local, Window: Budget{Tokens: 3}, Frequent: Budget{Tokens: 3}})
	f.c.ApplyAll()
	if got, want := f.positions(0, 0), []int32{1, 4, 5, 7, 9, 10, 11}; !slices.Equal(got, want) {
		t.Fatalf("keeps %v, want %v", got, want)
	}
	// With no attention this step the window moves past 9 (kept by no
	// other component) but 10 stays as a heavy hitter.
	f.step(0, func(_, _, n int) []float32 { return make([]float32, n) })
	if got, want := f.positions(0, 0), []int32{1, 4, 5, 7, 10, 11, 12}; !slices.Equal(got, want) {
		t.Fatalf("after a step keeps %v, want %v", got, want)
	}
	f.checkRows(0, 0, func(p int) Flags {
		if p < len(flags) {
			return flags[p]
		}
		return 0
	})
}

func TestRandomKeepsBudgetReproducibly(t *testing.T) {
	run := func(seed uint64) [][]int32 {
		pool := NewPool(4, F32, 4, 0)
		c := New(Config{Layers: 2, KVHeads: 3, Seed: seed}, pool)
		f := &fixture{t: t, pool: pool, c: c}
		f.prefill(make([]Flags, 40))
		pol, _ := BaselinePolicy(ModeRandom, Budget{Tokens: 8})
		c.SetAllPolicies(pol)
		c.ApplyAll()
		for s := 0; s < 10; s++ {
			f.step(0, nil)
		}
		var out [][]int32
		for l := 0; l < 2; l++ {
			for kh := 0; kh < 3; kh++ {
				if n := c.Kept(l, kh); n != 8 {
					t.Fatalf("head %d/%d keeps %d, want the budget 8", l, kh, n)
				}
				f.checkRows(l, kh, nil)
				out = append(out, f.positions(l, kh))
			}
		}
		c.Close()
		return out
	}
	a, b, other := run(7), run(7), run(8)
	if !slices.EqualFunc(a, b, slices.Equal) {
		t.Fatalf("same seed, different choices:\n%v\n%v", a, b)
	}
	if slices.EqualFunc(a, other, slices.Equal) {
		t.Fatal("seeds 7 and 8 chose the same entries in every head")
	}
	if slices.Equal(a[0], a[1]) && slices.Equal(a[1], a[2]) {
		t.Fatal("every head drew the same entries: heads must draw independently")
	}
}

func TestStreamingKeepsSinksAndWindow(t *testing.T) {
	f := newFixture(t, 1, 1, 4, F32, 4)
	f.prefill(make([]Flags, 30))
	pol, _ := BaselinePolicy(ModeStreaming, Budget{Tokens: 12})
	f.c.SetAllPolicies(pol)
	f.c.ApplyAll()
	for s := 0; s <= 5; s++ {
		t1 := f.c.Len()
		want := append(seq(0, StreamingSinks), seq(t1-8, t1)...)
		if got := f.positions(0, 0); !slices.Equal(got, want) {
			t.Fatalf("at t=%d keeps %v, want %v", t1, got, want)
		}
		f.step(0, nil)
	}
}

func TestScoreModes(t *testing.T) {
	// Position 0 gathered 3 over 10 steps (0.3 a step), position 8 1.5
	// over 2 (0.75), position 9 0.5 over 1. Cumulative keeps the old heavy
	// hitter, mean the recent one.
	for _, tc := range []struct {
		mode ScoreMode
		want int32
	}{{ScoreCumulative, 0}, {ScoreMean, 8}} {
		pool := NewPool(4, F32, 4, 0)
		c := New(Config{Layers: 1, KVHeads: 1, Score: tc.mode}, pool)
		f := &fixture{t: t, pool: pool, c: c}
		f.prefill(make([]Flags, 10))
		s := make([]float32, 10)
		s[0], s[8], s[9] = 3, 1.5, 0.5
		for i := 1; i < 8; i++ {
			s[i] = 0.1
		}
		c.AddScores(0, 0, s)
		c.SetAllPolicies(Policy{Keep: Frequent, Frequent: Budget{Tokens: 1}})
		c.ApplyAll()
		if got := f.positions(0, 0); !slices.Equal(got, []int32{tc.want}) {
			t.Errorf("mode %d keeps %v, want [%d]", tc.mode, got, tc.want)
		}
	}
}

func TestObserveAveragesGroups(t *testing.T) {
	f := newFixture(t, 1, 1, 4, F32, 4)
	f.prefill(make([]Flags, 3))
	f.c.SetAllPolicies(Policy{Keep: Local, Window: Budget{Tokens: 100}})
	k, v := kvRows(3, 1, 4)
	f.c.AppendAt(0, 0, 0, k, v)
	// Two query heads' rows, at Attend's stride min(limit, Kept) = 4: a
	// limit above Kept must not skew the stride.
	probs := []float32{0.1, 0.2, 0.3, 0.4, 0.3, 0.3, 0.2, 0.2}
	f.c.Observe(0, 0, probs, 2, 9, &f.sc)
	for j, want := range []float32{0.2, 0.25, 0.25, 0.3} {
		if got := f.c.Score(0, 0, j); math.Abs(float64(got-want)) > 1e-7 {
			t.Errorf("score[%d] = %v, want the group mean %v", j, got, want)
		}
	}
	// Full heads never evict but keep scoring, so that a later chat turn
	// can re-profile them onto a policy that ranks.
	f.c.SetAllPolicies(FullPolicy)
	f.c.Observe(0, 0, probs, 2, 4, &f.sc)
	if got := f.c.Score(0, 0, 0); math.Abs(float64(got-0.4)) > 1e-7 {
		t.Errorf("a full head's score is %v, want 0.4 (two steps of its group mean)", got)
	}
	if n := f.c.Kept(0, 0); n != 4 {
		t.Errorf("a full head kept %d entries, want all 4", n)
	}
}

func TestBytesAndPrunedRatio(t *testing.T) {
	for _, dt := range []DType{F32, F16} {
		for _, be := range []int{1, 4, 16} {
			for _, reserve := range []int{5, 100} {
				t.Run(fmt.Sprint(dt, "/", be, "/", reserve), func(t *testing.T) {
					const layers, kvh, d = 2, 3, 8
					pool := NewPool(d, dt, be, reserve)
					if want := int64(2*d*map[DType]int{F32: 4, F16: 2}[dt] + 9); pool.EntryBytes() != want {
						t.Fatalf("EntryBytes = %d, want %d", pool.EntryBytes(), want)
					}
					c := New(Config{Layers: layers, KVHeads: kvh, Seed: 3}, pool)
					f := &fixture{t: t, pool: pool, c: c}
					f.prefill(make([]Flags, 37))
					c.SetPolicy(0, 0, Policy{Keep: Local, Window: Budget{Tokens: 5}})
					c.SetPolicy(0, 1, Policy{Keep: Random, Random: Budget{Tokens: 13}})
					c.SetPolicy(1, 2, Policy{Keep: Frequent, Frequent: Budget{Ratio: 0.5}})
					c.ApplyAll()
					peak := pool.Bytes()
					for s := 0; s < 6; s++ {
						f.step(0, nil)
					}
					check := func() {
						t.Helper()
						var kept, want int64
						for l := 0; l < layers; l++ {
							for kh := 0; kh < kvh; kh++ {
								n := int64(c.Kept(l, kh))
								kept += n
								want += (n + int64(be) - 1) / int64(be) * pool.BlockBytes()
							}
						}
						got := c.Bytes()
						if got != want {
							t.Fatalf("Bytes = %d, want %d (whole blocks per head)", got, want)
						}
						if slack := got - kept*pool.EntryBytes(); slack < 0 || slack >= int64(layers*kvh)*pool.BlockBytes() {
							t.Fatalf("Bytes %d is not kept×EntryBytes (%d) plus under one block per head", got, kept*pool.EntryBytes())
						}
						t1 := int64(c.Len())
						if full := c.FullBytes(); full != (t1+int64(be)-1)/int64(be)*int64(layers*kvh)*pool.BlockBytes() {
							t.Fatalf("FullBytes = %d at t=%d", full, t1)
						}
						if pr, want := c.PrunedRatio(), 1-float64(kept)/float64(layers*kvh*int(t1)); math.Abs(pr-want) > 1e-12 {
							t.Fatalf("PrunedRatio = %v, want %v", pr, want)
						}
						if pool.InUseBytes() != got {
							t.Fatalf("pool in use %d, cache holds %d", pool.InUseBytes(), got)
						}
					}
					check()
					peak = max(peak, pool.Bytes())
					c.Close()
					c.Close() // a second Close is harmless
					if pool.InUseBytes() != 0 {
						t.Fatalf("after Close the pool still has %d bytes in use", pool.InUseBytes())
					}
					// The free list keeps up to the reserve (never under the floor).
					kept := int64(max(reserve, MinReserveBlocks)) * pool.BlockBytes()
					if want := min(peak, kept); pool.Bytes() != want {
						t.Fatalf("after Close the pool holds %d bytes, want the reserve %d", pool.Bytes(), want)
					}
					// Blocks from the free list are reused, not allocated anew.
					c2 := New(Config{Layers: 1, KVHeads: 1}, pool)
					f2 := &fixture{t: t, pool: pool, c: c2}
					f2.prefill(make([]Flags, be))
					if pool.Bytes() != min(peak, kept) {
						t.Fatalf("a new cache allocated instead of reusing a free block")
					}
					c2.Close()
				})
			}
		}
	}
	if c := New(Config{Layers: 1, KVHeads: 1}, NewPool(4, F32, 4, 0)); c.PrunedRatio() != 0 || c.Bytes() != 0 || c.FullBytes() != 0 {
		t.Fatal("an empty cache reports memory or pruning")
	}
}

func TestForkIndependence(t *testing.T) {
	pool := NewPool(8, F16, 4, 0)
	a := New(Config{Layers: 2, KVHeads: 2}, pool)
	fa := &fixture{t: t, pool: pool, c: a}
	fa.prefill([]Flags{FlagSpecial, 0, FlagPunct, 0, 0, 0, 0, 0, 0, 0})
	scores := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for l := 0; l < 2; l++ {
		for kh := 0; kh < 2; kh++ {
			a.AddScores(l, kh, scores)
		}
	}
	b, err := a.Fork()
	if err != nil {
		t.Fatal(err)
	}
	fb := &fixture{t: t, pool: pool, c: b}
	b.SetAllPolicies(Policy{Keep: Special | Punct})
	b.ApplyAll()
	for l := 0; l < 2; l++ {
		for kh := 0; kh < 2; kh++ {
			if got := fa.positions(l, kh); !slices.Equal(got, seq(0, 10)) {
				t.Fatalf("evicting in the fork changed the original: %v", got)
			}
			if got := fb.positions(l, kh); !slices.Equal(got, []int32{0, 2}) {
				t.Fatalf("fork keeps %v, want [0 2]", got)
			}
			fa.checkRows(l, kh, nil)
			fb.checkRows(l, kh, nil)
			for j := 0; j < 10; j++ {
				if a.Score(l, kh, j) != scores[j] {
					t.Fatal("the original's scores changed")
				}
			}
		}
	}
	// Both decode on; the original (full) keeps growing, the fork keeps
	// only what its policy allows.
	fa.step(0, nil)
	fb.step(0, nil)
	if a.Len() != 11 || b.Len() != 11 || a.Kept(1, 1) != 11 || b.Kept(1, 1) != 2 {
		t.Fatalf("after a step: lens %d %d, kept %d %d", a.Len(), b.Len(), a.Kept(1, 1), b.Kept(1, 1))
	}
	a.Close()
	if pool.InUseBytes() != b.Bytes() {
		t.Fatalf("closing the original left %d bytes in use, the fork holds %d", pool.InUseBytes(), b.Bytes())
	}
	fb.checkRows(0, 0, nil)
	b.Close()
	if pool.InUseBytes() != 0 {
		t.Fatalf("after both Close %d bytes in use", pool.InUseBytes())
	}
}

// TestAttendMatchesMaskedReference: attention over a pruned store equals
// attention over the full sequence masked to the kept entries, computed in
// float64 from the same (dtype-rounded) rows.
func TestAttendMatchesMaskedReference(t *testing.T) {
	for _, dt := range []DType{F32, F16} {
		for _, keep := range []float64{1, 0.7, 0.5, 0.3} {
			t.Run(fmt.Sprintf("%v/keep=%v", dt, keep), func(t *testing.T) {
				const L, d, groups = 100, 32, 3
				pool := NewPool(d, dt, 16, 0)
				c := New(Config{Layers: 1, KVHeads: 1, Seed: 11}, pool)
				f := &fixture{t: t, pool: pool, c: c}
				f.prefill(make([]Flags, L))
				if keep < 1 {
					c.SetAllPolicies(Policy{Keep: Random, Random: Budget{Ratio: keep}})
					c.ApplyAll()
				}
				n := c.Kept(0, 0)
				if want := (Budget{Ratio: keep}).At(L); n != want {
					t.Fatalf("kept %d, want %d", n, want)
				}
				kept := map[int32]bool{}
				for j := 0; j < n; j++ {
					kept[c.Pos(0, 0, j)] = true
				}
				rng := rand.New(rand.NewPCG(5, 6))
				q := make([]float32, groups*d)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				const scale = 0.4
				out, probs := make([]float32, groups*d), make([]float32, groups*n)
				c.Attend(0, 0, q, groups, n, scale, out, probs, nil)
				round := func(x float32) float64 {
					if dt == F16 {
						return float64(roundF16(x))
					}
					return float64(x)
				}
				for g := 0; g < groups; g++ {
					// Reference: every position of the full sequence, masked.
					logit := make([]float64, L)
					mx := math.Inf(-1)
					for p := 0; p < L; p++ {
						if !kept[int32(p)] {
							continue
						}
						k := rowFor(p, 0, d)
						for x := 0; x < d; x++ {
							logit[p] += float64(q[g*d+x]) * round(k[x])
						}
						logit[p] *= scale
						mx = math.Max(mx, logit[p])
					}
					var z float64
					for p := 0; p < L; p++ {
						if kept[int32(p)] {
							logit[p] = math.Exp(logit[p] - mx)
							z += logit[p]
						}
					}
					ref := make([]float64, d)
					for p := 0; p < L; p++ {
						if kept[int32(p)] {
							logit[p] /= z
							v := rowFor(p, 1, d)
							for x := range ref {
								ref[x] += logit[p] * round(v[x])
							}
						}
					}
					for j := 0; j < n; j++ {
						p := c.Pos(0, 0, j)
						if got := float64(probs[g*n+j]); math.Abs(got-logit[p]) > 1e-6+1e-5*logit[p] {
							t.Fatalf("group %d: prob of position %d = %v, want %v", g, p, got, logit[p])
						}
					}
					for x := range ref {
						if got := float64(out[g*d+x]); math.Abs(got-ref[x]) > 2e-6 {
							t.Fatalf("group %d: out[%d] = %v, want %v", g, x, got, ref[x])
						}
					}
				}
				c.Close()
			})
		}
	}
}

// TestKth: the k-th largest key and its ties within the top k, whatever
// the split (above, below or at keys, or none), with many ties.
func TestKth(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(70)
		keys := make([]float32, n)
		for i := range keys {
			keys[i] = float32(rng.IntN(1+n/3)) / 8 // ties, and zeros
		}
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		slices.Reverse(sorted)
		splits := []float32{0, sorted[0] + 1, sorted[n-1], sorted[n/2], float32(rng.IntN(1+n/3)) / 8, 1.0 / 16}
		for _, split := range splits {
			for k := 1; k <= n; k++ {
				hi, lo := make([]float32, n), make([]float32, n)
				thr, ties := kth(keys, hi, lo, k, split)
				above := 0
				for _, v := range keys {
					above += b2i(v > sorted[k-1])
				}
				if thr != sorted[k-1] || ties != k-above {
					t.Fatalf("keys %v, k %d, split %v: got %v with %d ties, want %v with %d", keys, k, split, thr, ties, sorted[k-1], k-above)
				}
			}
		}
	}
}

func TestQuickselect(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for trial := 0; trial < 500; trial++ {
		n := 1 + rng.IntN(40)
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.IntN(6)) // many ties
			if trial%2 == 1 {
				s[i] = rng.Float32()
			}
		}
		sorted := slices.Clone(s)
		slices.SortFunc(sorted, func(a, b float32) int {
			switch {
			case a > b:
				return -1
			case a < b:
				return 1
			}
			return 0
		})
		k := rng.IntN(n)
		if got := quickselect(slices.Clone(s), k); got != sorted[k] {
			t.Fatalf("quickselect(%v, %d) = %v, want %v", s, k, got, sorted[k])
		}
	}
}

// TestQuickselectPartitions checks the order quickselect leaves behind,
// which kthScore counts on: everything before index k at least s[k],
// everything after at most, on keys with many ties.
func TestQuickselectPartitions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 2000; trial++ {
		n := 1 + rng.IntN(300)
		s := make([]float32, n)
		levels := 1 + rng.IntN(20)
		for i := range s {
			s[i] = float32(rng.IntN(levels))
		}
		want := slices.Clone(s)
		slices.SortFunc(want, func(a, b float32) int { return cmp.Compare(b, a) })
		k := rng.IntN(n)
		got := quickselect(s, k)
		if got != want[k] {
			t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, want[k])
		}
		for i, v := range s {
			if (i < k && v < got) || (i > k && v > got) {
				t.Fatalf("n=%d k=%d: s[%d]=%v on the wrong side of %v", n, k, i, v, got)
			}
		}
	}
}
