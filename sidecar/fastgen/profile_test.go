package fastgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// The Profiler recomputes attention from queries and cached keys. With
// one-hot keys (key of position p = e_p, head dim ≥ every position) and a
// scale of 1, q·k_p = q[p], so a query whose entries are log A[p] makes the
// softmax reproduce any attention row A exactly (to float32 rounding).

const hdim = 128 // ≥ every position used below

// turn is one prompt turn of a single-layer cache for the profiler.
type turn struct {
	flags []kvcache.Flags // of the turn's new tokens
	// maps[kh][g][i] is query head g of KV head kh's attention at row i
	// over the head's visible store entries (kept earlier entries first,
	// then the turn's tokens up to i).
	maps [][][][]float64
}

type bench struct {
	t     *testing.T
	pool  *kvcache.Pool
	cache *kvcache.Cache
	nKV   int
	// what every head's store held when the turn began: positions and flags
	pos   [][]int32
	flags [][]kvcache.Flags
}

func newBench(t *testing.T, nKV int) *bench {
	pool := kvcache.NewPool(hdim, kvcache.F32, 4, 0)
	return &bench{t: t, pool: pool, cache: kvcache.New(kvcache.Config{Layers: 1, KVHeads: nKV}, pool), nKV: nKV}
}

// profile appends a turn, profiles it and returns the profile; the caller
// applies policies (ApplyAll) when it wants the evictions.
func (b *bench) profile(opt Options, tr turn, fixed *kvcache.Policy) *Profile {
	c := b.cache
	n, groups := len(tr.flags), len(tr.maps[0])
	basePos := c.Len()
	b.pos, b.flags = nil, nil
	for kh := 0; kh < b.nKV; kh++ {
		var ps []int32
		var fs []kvcache.Flags
		for j := 0; j < c.Kept(0, kh); j++ {
			ps, fs = append(ps, c.Pos(0, kh, j)), append(fs, c.EntryFlags(0, kh, j))
		}
		for i := 0; i < n; i++ {
			ps, fs = append(ps, int32(basePos+i)), append(fs, tr.flags[i])
		}
		b.pos, b.flags = append(b.pos, ps), append(b.flags, fs)
	}
	for i := 0; i < n; i++ {
		k := make([]float32, b.nKV*hdim)
		for kh := 0; kh < b.nKV; kh++ {
			k[kh*hdim+basePos+i] = 1
		}
		c.AppendAt(0, i, tr.flags[i], k, make([]float32, b.nKV*hdim))
	}
	nHeads := b.nKV * groups
	stride := nHeads * hdim
	q := make([]float32, n*stride)
	for i := 0; i < n; i++ {
		for kh := 0; kh < b.nKV; kh++ {
			for g := 0; g < groups; g++ {
				row := tr.maps[kh][g][i]
				qh := q[i*stride+(kh*groups+g)*hdim:]
				for j, a := range row {
					qh[b.pos[kh][j]] = float32(math.Log(a))
				}
			}
		}
	}
	// Pass 2 recomputed from the queries as for a layer too large to keep
	// (on a fork, whose scores and policies it writes), and from the rows
	// pass 1 kept in half precision: the same recoveries to its rounding
	// (documented at Profiler.store), and the same policies unless one is
	// that close to the threshold. The callers check the recomputed
	// profile, exact to float32 rounding.
	fork := b.fork()
	re := NewProfiler(opt, 1, nHeads, b.nKV, hdim, n, basePos, fixed)
	re.storeLimit = 0
	re.Layer(0, q, stride, fork, 1, nil)
	fork.Close()
	recomputed := re.Result()
	p := NewProfiler(opt, 1, nHeads, b.nKV, hdim, n, basePos, fixed)
	p.Layer(0, q, stride, c, 1, nil)
	kept := p.Result()
	for h := range kept.Heads {
		if a, r := kept.Heads[h], recomputed.Heads[h]; !approxEqual(a.Recovery, r.Recovery, 5e-4) || a.Policy != r.Policy && !nearAny(r.Recovery, opt.Threshold, 5e-4) {
			b.t.Fatalf("head %d: from kept rows %v (%s), recomputed %v (%s)", h, a.Recovery, a.Policy.Name(), r.Recovery, r.Policy.Name())
		}
	}
	// A backend's sums (the GPU's kernels), from the exact rows, give
	// the same profile.
	fork = b.fork()
	dev := NewProfiler(opt, 1, nHeads, b.nKV, hdim, n, basePos, fixed)
	if err := dev.LayerFromSums(0, fork, kernelSums(dev.Plan(0, fork), tr.maps, n, basePos)); err != nil {
		b.t.Fatal(err)
	}
	fork.Close()
	for h, d := range dev.Result().Heads {
		r := recomputed.Heads[h]
		if !approxEqual(d.Recovery, r.Recovery, 2e-5) || d.Policy != r.Policy && !nearAny(r.Recovery, opt.Threshold, 2e-5) ||
			!approxEqual([]float64{d.Mass.Special, d.Mass.Punct, d.Mass.Local, d.Mass.Other}, []float64{r.Mass.Special, r.Mass.Punct, r.Mass.Local, r.Mass.Other}, 2e-5) {
			b.t.Fatalf("head %d: from a backend's sums %v %+v (%s), recomputed %v %+v (%s)", h, d.Recovery, d.Mass, d.Policy.Name(), r.Recovery, r.Mass, r.Policy.Name())
		}
	}
	c.Advance(n)
	return recomputed
}

// fork copies the bench's cache.
func (b *bench) fork() *kvcache.Cache {
	f, err := b.cache.Fork()
	if err != nil {
		b.t.Fatal(err)
	}
	return f
}

// kernelSums computes a layer's sums as LayerPlan defines them (what
// prof_pass1, prof_rank and prof_pass2 compute on the GPU), in float64
// from explicit rows: maps[kh][g][i][j] is query head g's attention at
// prompt row i over the head's first Total − n + i + 1 entries.
func kernelSums(pl *LayerPlan, maps [][][][]float64, n, basePos int) *LayerSums {
	s := &LayerSums{}
	for kh, h := range pl.Heads {
		groups := len(maps[kh])
		mean := func(i, j int) float64 {
			var a float64
			for g := range groups {
				a += maps[kh][g][i][j]
			}
			return a / float64(groups)
		}
		colsum64 := make([]float64, h.Total)
		var m Mass
		for i := 0; i < n; i++ {
			cur := int32(basePos + i)
			for j := 0; j < h.Total-n+i+1; j++ {
				a := mean(i, j)
				colsum64[j] += a
				switch {
				case h.Flags[j]&kvcache.FlagSpecial != 0:
					m.Special += a
				case h.Flags[j]&kvcache.FlagPunct != 0:
					m.Punct += a
				case cur-h.Pos[j] < pl.Window:
					m.Local += a
				default:
					m.Other += a
				}
			}
		}
		colsum := make([]float32, h.Total)
		for j, v := range colsum64 {
			colsum[j] = float32(v)
		}
		s.Colsum, s.Mass = append(s.Colsum, colsum), append(s.Mass, m)
		if pl.Fixed {
			continue
		}
		order := make([]int, h.Total)
		for j := range order {
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return colsum[order[a]] > colsum[order[b]] })
		rows := 1
		if pl.PerGroup {
			rows = groups
		}
		sums := make([]float64, rows*pl.Candidates)
		for i := pl.Start; i < n; i++ {
			cur, limit := int32(basePos+i), h.Total-n+i+1
			inFreq := map[int]bool{}
			for _, j := range order {
				if len(inFreq) == int(pl.FreqK[i]) {
					break
				}
				if j < limit {
					inFreq[j] = true
				}
			}
			for j := 0; j < limit; j++ {
				r := int(h.First[j])
				if inFreq[j] {
					r = min(r, pl.RankFreq)
				}
				if cur-h.Pos[j] < pl.Window {
					r = min(r, pl.RankLocal)
				}
				for g := range rows {
					a := mean(i, j)
					if pl.PerGroup {
						a = maps[kh][g][i][j]
					}
					sums[g*pl.Candidates+r] += a
				}
			}
		}
		s.Sums = append(s.Sums, sums)
	}
	return s
}

// reference is the spec's recovery, computed directly from explicit rows:
// recovery(C) = mean over rows of the mass C keeps, frequent ranking by the
// column sums of the group-mean rows, GQA by mean or min.
func reference(opt Options, rows [][][]float64, pos []int32, flags []kvcache.Flags, basePos int) (rec, colsum []float64) {
	groups, n := len(rows), len(rows[0])
	total := len(pos)
	mean := make([][]float64, n)
	colsum = make([]float64, total)
	for i := range mean {
		mean[i] = make([]float64, len(rows[0][i]))
		for g := range rows {
			for j, a := range rows[g][i] {
				mean[i][j] += a / float64(groups)
			}
		}
		for j, a := range mean[i] {
			colsum[j] += a
		}
	}
	order := make([]int, total)
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return colsum[order[a]] > colsum[order[b]] })
	w := max(1, int(math.Ceil(opt.RLocal*float64(n)-1e-9)))
	first := 0
	if opt.RecoveryRows > 0 && opt.RecoveryRows < n {
		first = n - opt.RecoveryRows
	}
	var keep kvcache.Component
	for _, c := range opt.Order {
		keep |= c
		kept := func(i, j int) bool {
			cur := int32(basePos + i)
			k := int(math.Ceil(opt.RFreq*float64(cur+1) - 1e-9))
			inFreq := false
			for _, o := range order {
				if k == 0 {
					break
				}
				if o < len(rows[0][i]) {
					if o == j {
						inFreq = true
					}
					k--
				}
			}
			return keep&kvcache.Special != 0 && flags[j]&kvcache.FlagSpecial != 0 ||
				keep&kvcache.Punct != 0 && flags[j]&kvcache.FlagPunct != 0 ||
				keep&kvcache.Frequent != 0 && inFreq ||
				keep&kvcache.Local != 0 && cur-pos[j] < int32(w)
		}
		recOf := func(m [][]float64) float64 {
			var s float64
			for i := first; i < n; i++ {
				for j, a := range m[i] {
					if kept(i, j) {
						s += a
					}
				}
			}
			return s / float64(n-first)
		}
		if opt.GQA == AggMin {
			r := math.Inf(1)
			for g := range rows {
				r = math.Min(r, recOf(rows[g]))
			}
			rec = append(rec, r)
		} else {
			rec = append(rec, recOf(mean))
		}
	}
	return append(rec, 1), colsum
}

// rowsFrom builds an attention map over a causal prompt from a function of
// (row, key) weights, floored and normalised.
func rowsFrom(n, base int, w func(i, j int) float64) [][]float64 {
	rows := make([][]float64, n)
	for i := range rows {
		rows[i] = make([]float64, base+i+1)
		var z float64
		for j := range rows[i] {
			rows[i][j] = math.Max(w(i, j), 1e-9)
			z += rows[i][j]
		}
		for j := range rows[i] {
			rows[i][j] /= z
		}
	}
	return rows
}

func opts(t float64, mod ...func(*Options)) Options {
	o := Defaults()
	o.Threshold = t
	for _, m := range mod {
		m(&o)
	}
	return o
}

func TestProfilerHandBuilt(t *testing.T) {
	const L = 10
	flags := make([]kvcache.Flags, L)
	flags[0] = kvcache.FlagSpecial // BOS
	flags[4], flags[7] = kvcache.FlagPunct, kvcache.FlagPunct
	one := func(f func(i, j int) float64) [][][]float64 { return [][][]float64{rowsFrom(L, 0, f)} }
	bos := func(i, j int) float64 { return b2f(j == 0) }
	// Attention sinks on BOS and on the last punctuation seen.
	punct := func(i, j int) float64 {
		last := 0
		for p := 4; p <= i; p += 3 {
			last = p
		}
		return b2f(j == last)
	}
	// Every row from 2 on looks at position 2, a normal token.
	heavy := func(i, j int) float64 {
		if i < 2 {
			return b2f(j == 0)
		}
		return b2f(j == 2)
	}
	self := func(i, j int) float64 { return b2f(j == i) }
	uniform := func(i, j int) float64 { return 1 }
	for _, tc := range []struct {
		name string
		maps [][][]float64
		opt  Options
		want string
	}{
		{"bos sink", one(bos), opts(0.98), "special"},
		{"punct sinks", one(punct), opts(0.98), "special+punct"},
		{"heavy hitter", one(heavy), opts(0.98), "special+punct+frequent"},
		{"diagonal", one(self), opts(0.98), "special+punct+frequent+local"},
		{"uniform", one(uniform), opts(0.98), "full"},
		{"uniform, T=0", one(uniform), opts(0), "special"},
		{"bos sink, T=1", one(bos), opts(1), "full"}, // recovery 1 is still not lossless in decode
		{"bos sink, T>1 clamps to full", one(bos), opts(1.5), "full"},
		// Without frequent in the order the heavy hitter needs local (the
		// window ceil(0.3·10) = 3 misses position 2 from row 5 on): full.
		{"heavy hitter, no frequent", one(heavy), opts(0.98, func(o *Options) {
			o.Order = []kvcache.Component{kvcache.Special, kvcache.Punct, kvcache.Local}
		}), "full"},
		// Only the last 3 rows judged: rows 7–9 attend inside the window.
		{"last rows only", one(func(i, j int) float64 {
			if i < 7 {
				return 1
			}
			return b2f(j == i)
		}), opts(0.98, func(o *Options) { o.RecoveryRows = 3 }), "special+punct+frequent+local"},
		// GQA: one query head on BOS, the other on itself. The mean
		// recovers (1 + 0.1)/2 ≥ 0.5 with special alone; the min of the
		// group (0.1) needs local.
		{"gqa mean", [][][]float64{rowsFrom(L, 0, bos), rowsFrom(L, 0, self)}, opts(0.5), "special"},
		{"gqa min", [][][]float64{rowsFrom(L, 0, bos), rowsFrom(L, 0, self)}, opts(0.5, func(o *Options) { o.GQA = AggMin }), "special+punct+frequent+local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, 1)
			prof := b.profile(tc.opt, turn{flags: flags, maps: [][][][]float64{tc.maps}}, nil)
			hp := prof.Heads[0]
			want, colsum := reference(tc.opt, tc.maps, b.pos[0], b.flags[0], 0)
			if !approxEqual(hp.Recovery, want, 1e-5) {
				t.Fatalf("recovery %v, want %v", hp.Recovery, want)
			}
			if hp.Policy.Name() != tc.want {
				t.Fatalf("chose %s (recovery %v), want %s", hp.Policy.Name(), hp.Recovery, tc.want)
			}
			if got := b.cache.Policy(0, 0); got != hp.Policy {
				t.Fatalf("the cache's policy is %+v, the profile's %+v", got, hp.Policy)
			}
			if last := prof.Candidates[len(prof.Candidates)-1]; !last.IsFull() || hp.Recovery[len(hp.Recovery)-1] != 1 {
				t.Fatal("the last candidate must be full, recovering 1")
			}
			// Scores are seeded with the prompt's column sums.
			for j := range colsum {
				if got := b.cache.Score(0, 0, j); math.Abs(float64(got)-colsum[j]) > 1e-5 {
					t.Fatalf("score of %d = %v, want the column sum %v", j, got, colsum[j])
				}
			}
			m := hp.Mass
			if s := m.Special + m.Punct + m.Local + m.Other; math.Abs(s-1) > 1e-5 {
				t.Fatalf("masses %+v sum to %v, want 1", m, s)
			}
		})
	}
}

// TestProfilerMatchesReference compares random maps against the reference
// over several KV heads, GQA groups, options and a second chat turn that
// attends to what the first kept.
func TestProfilerMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	randomMaps := func(nKV, groups, n int, base []int) [][][][]float64 {
		maps := make([][][][]float64, nKV)
		for kh := range maps {
			for g := 0; g < groups; g++ {
				// Peaky rows: a few keys draw most of the mass.
				maps[kh] = append(maps[kh], rowsFrom(n, base[kh], func(i, j int) float64 {
					return math.Pow(rng.Float64(), 6)
				}))
			}
		}
		return maps
	}
	randomFlags := func(n int) []kvcache.Flags {
		f := make([]kvcache.Flags, n)
		for i := range f {
			switch r := rng.IntN(10); {
			case i == 0 || r == 0:
				f[i] = kvcache.FlagSpecial
			case r < 3:
				f[i] = kvcache.FlagPunct
			}
		}
		return f
	}
	for trial := 0; trial < 12; trial++ {
		nKV, groups := 1+rng.IntN(3), 1+rng.IntN(3)
		opt := opts([]float64{0.9, 0.95, 0.98, 0.5}[trial%4], func(o *Options) {
			o.RLocal, o.RFreq = 0.1+0.4*rng.Float64(), 0.1+0.4*rng.Float64()
			o.GQA = Aggregation(trial % 2)
			if trial%3 == 0 {
				o.RecoveryRows = 4
			}
			// The paper's ablations reorder and drop components: frequent
			// then takes mass from class buckets too, or from none.
			switch trial % 4 {
			case 1:
				o.Order = []kvcache.Component{kvcache.Frequent, kvcache.Special, kvcache.Local, kvcache.Punct}
			case 2:
				o.Order = []kvcache.Component{kvcache.Special, kvcache.Local, kvcache.Frequent}
			}
		})
		b := newBench(t, nKV)
		n1 := 12 + rng.IntN(8)
		if trial%3 == 1 {
			n1 = 40 + rng.IntN(60) // several of pass 2's tiles
		}
		zero := make([]int, nKV)
		tr := turn{flags: randomFlags(n1), maps: randomMaps(nKV, groups, n1, zero)}
		check := func(prof *Profile, tr turn, basePos int) {
			t.Helper()
			for kh, hp := range prof.Heads {
				want, _ := reference(opt, tr.maps[kh], b.pos[kh], b.flags[kh], basePos)
				if !approxEqual(hp.Recovery, want, 2e-5) {
					t.Fatalf("trial %d head %d: recovery %v, want %v", trial, kh, hp.Recovery, want)
				}
				if i := Choose(want, opt.Threshold); prof.Candidates[i] != hp.Policy && !nearAny(want, opt.Threshold, 1e-4) {
					t.Fatalf("trial %d head %d: chose %s, want %s", trial, kh, hp.Policy.Name(), prof.Candidates[i].Name())
				}
			}
		}
		check(b.profile(opt, tr, nil), tr, 0)
		b.cache.ApplyAll()
		// A second turn: its rows attend to the kept entries of the first.
		base := make([]int, nKV)
		for kh := range base {
			base[kh] = b.cache.Kept(0, kh)
		}
		n2 := 6 + rng.IntN(6)
		basePos := b.cache.Len()
		tr2 := turn{flags: randomFlags(n2), maps: randomMaps(nKV, groups, n2, base)}
		check(b.profile(opt, tr2, nil), tr2, basePos)
		b.cache.Close()
	}
}

func TestProfilerFixedPolicy(t *testing.T) {
	const L = 8
	b := newBench(t, 2)
	fixed := kvcache.Policy{Keep: kvcache.Local, Window: kvcache.Budget{Tokens: 3}}
	uniform := rowsFrom(L, 0, func(i, j int) float64 { return 1 })
	prof := b.profile(Defaults(), turn{flags: make([]kvcache.Flags, L), maps: [][][][]float64{{uniform}, {uniform}}}, &fixed)
	for kh, hp := range prof.Heads {
		if hp.Policy != fixed || b.cache.Policy(0, kh) != fixed {
			t.Fatalf("head %d got %+v, want the fixed baseline", kh, hp.Policy)
		}
	}
	b.cache.ApplyAll()
	for kh := 0; kh < 2; kh++ {
		if b.cache.Kept(0, kh) != 3 {
			t.Fatalf("head %d keeps %d, want the window 3", kh, b.cache.Kept(0, kh))
		}
	}
}

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		rec  []float64
		t    float64
		want int
	}{
		{[]float64{0.5, 0.9, 0.99, 0.995, 1}, 0.98, 2},
		{[]float64{0.5, 0.9, 0.98, 0.995, 1}, 0.98, 2}, // ≥, not >
		{[]float64{0.5, 0.9, 0.97, 0.97, 1}, 0.98, 4},
		{[]float64{1, 1, 1, 1, 1}, 1, 4}, // T ≥ 1: full only
		{[]float64{0, 0, 0, 0, 1}, 0, 0},
		{[]float64{math.NaN(), 0.99, 1}, 0.98, 1},
		{[]float64{1}, 0.5, 0}, // an empty order leaves full alone
	} {
		if got := Choose(tc.rec, tc.t); got != tc.want {
			t.Errorf("Choose(%v, %v) = %d, want %d", tc.rec, tc.t, got, tc.want)
		}
	}
}

func TestCandidates(t *testing.T) {
	o := Defaults()
	cs := o.Candidates(10)
	var names []string
	for _, c := range cs {
		names = append(names, c.Name())
	}
	if !slices.Equal(names, PolicyNames) {
		t.Fatalf("candidates %v, want %v", names, PolicyNames)
	}
	for _, c := range cs[:4] {
		if c.Window != (kvcache.Budget{Tokens: 3}) || c.Frequent != (kvcache.Budget{Ratio: 0.3}) {
			t.Fatalf("candidate %s: window %v frequent %v, want ceil(0.3·10) = 3 tokens and r_f 0.3", c.Name(), c.Window, c.Frequent)
		}
	}
	// Full stays last whatever the order; the window is never empty.
	o.Order = []kvcache.Component{kvcache.Local, kvcache.Special}
	cs = o.Candidates(1)
	if len(cs) != 3 || !cs[2].IsFull() || cs[0].Keep != kvcache.Local || cs[1].Keep != kvcache.Local|kvcache.Special || cs[0].Window.Tokens != 1 {
		t.Fatalf("candidates %+v", cs)
	}
	o.Order = nil
	if cs := o.Candidates(5); len(cs) != 1 || !cs[0].IsFull() {
		t.Fatalf("an empty order gives %+v, want full alone", cs)
	}
}

func TestOptions(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Options){
		"T<0":      func(o *Options) { o.Threshold = -0.1 },
		"T>1":      func(o *Options) { o.Threshold = 1.5 },
		"T NaN":    func(o *Options) { o.Threshold = math.NaN() },
		"r_l NaN":  func(o *Options) { o.RLocal = math.NaN() },
		"r_f>1":    func(o *Options) { o.RFreq = 2 },
		"rows<0":   func(o *Options) { o.RecoveryRows = -1 },
		"full":     func(o *Options) { o.Order = []kvcache.Component{kvcache.Full} },
		"twice":    func(o *Options) { o.Order = []kvcache.Component{kvcache.Local, kvcache.Local} },
		"combined": func(o *Options) { o.Order = []kvcache.Component{kvcache.Local | kvcache.Special} },
	} {
		o := Defaults()
		mod(&o)
		if o.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, o)
		}
	}
	order, err := ParseOrder("special, punct,local")
	if err != nil || !slices.Equal(order, []kvcache.Component{kvcache.Special, kvcache.Punct, kvcache.Local}) {
		t.Fatalf("ParseOrder = %v, %v", order, err)
	}
	if _, err := ParseOrder("special,recent"); err == nil {
		t.Fatal("ParseOrder accepted an unknown component")
	}
	if a, err := ParseAggregation("min"); err != nil || a != AggMin {
		t.Fatalf("ParseAggregation(min) = %v, %v", a, err)
	}
	if _, err := ParseAggregation("max"); err == nil {
		t.Fatal("ParseAggregation accepted max")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func approxEqual(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

// nearAny reports a recovery within eps of the threshold, where rounding
// (float32, or the kept rows' half precision) may decide the choice.
func nearAny(rec []float64, t, eps float64) bool {
	for _, r := range rec {
		if math.Abs(r-t) < eps {
			return true
		}
	}
	return false
}
