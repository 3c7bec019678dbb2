package kvcache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// BenchmarkAttend is one decode step's attention for a group of 4 query
// heads (Llama-3-8B's GQA shape, head dim 128) over a head that held 2048
// entries, full and pruned: the loop visits kept entries only, so time should
// fall with the pruned ratio.
func BenchmarkAttend(b *testing.B) {
	const L, d, groups = 2048, 128, 4
	for _, dt := range []DType{F32, F16} {
		for _, pruned := range []float64{0, 0.3, 0.5, 0.7} {
			b.Run(fmt.Sprintf("%v/pruned=%.0f%%", dt, pruned*100), func(b *testing.B) {
				pool := NewPool(d, dt, DefaultBlockEntries, 0)
				c := New(Config{Layers: 1, KVHeads: 1, Seed: 1}, pool)
				f := &fixture{t: b, pool: pool, c: c}
				f.prefill(make([]Flags, L))
				if pruned > 0 {
					c.SetAllPolicies(Policy{Keep: Random, Random: Budget{Tokens: L - int(pruned*L)}})
					c.ApplyAll()
				}
				n := c.Kept(0, 0)
				rng := rand.New(rand.NewPCG(1, 2))
				q := make([]float32, groups*d)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				out, probs := make([]float32, groups*d), make([]float32, groups*n)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					c.Attend(0, 0, q, groups, n, 0.088, out, probs, nil)
				}
				b.ReportMetric(float64(n), "entries")
			})
		}
	}
}

// BenchmarkObserve is one head's decode bookkeeping per step in steady
// state: append the token, fold the group's attention into the scores,
// re-apply the policy (which ranks and evicts) and hand the evictions to the
// caller, as the engine does. It must not allocate.
func BenchmarkObserve(b *testing.B) {
	const d, groups = 128, 4
	for _, tc := range []struct {
		name string
		pol  Policy
		mode ScoreMode
	}{
		{"special+punct+frequent+local", Policy{Keep: Special | Punct | Frequent | Local, Window: Budget{Tokens: 600}, Frequent: Budget{Tokens: 600}}, ScoreCumulative},
		{"frequent/mean", Policy{Keep: Frequent, Frequent: Budget{Tokens: 1200}}, ScoreMean},
		{"local", Policy{Keep: Local, Window: Budget{Tokens: 1200}}, ScoreCumulative},
		{"random", Policy{Keep: Random, Random: Budget{Tokens: 1200}}, ScoreCumulative},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pool := NewPool(d, F16, DefaultBlockEntries, 0)
			c := New(Config{Layers: 1, KVHeads: 1, Score: tc.mode, Seed: 1}, pool)
			f := &fixture{t: b, pool: pool, c: c}
			flags := make([]Flags, 2048)
			for i := range flags {
				if i%13 == 0 {
					flags[i] = FlagPunct
				}
			}
			f.prefill(flags)
			c.SetAllPolicies(tc.pol)
			c.ApplyAll()
			k, v := kvRows(0, 1, d)
			rng := rand.New(rand.NewPCG(3, 4))
			probs := make([]float32, groups*4096)
			for i := range probs {
				probs[i] = rng.Float32() / 1000
			}
			var sc Scratch
			step := func() {
				c.AppendAt(0, 0, 0, k, v)
				n := c.Kept(0, 0)
				c.Observe(0, 0, probs[:groups*n], groups, n, &sc)
				c.TakeEvicted(0, 0)
				c.Advance(1)
			}
			for range 64 { // reach steady state: scratch and eviction list sized
				step()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(c.Kept(0, 0)), "entries")
		})
	}
}

// BenchmarkApplyHeads is a whole model's policy step as a GPU decode step
// leaves it to the host (sidecar/cuda: applyScores): 1.1B's 22 layers × 4
// KV heads, each adding the step's scores and re-applying a frequent +
// local policy (307 tokens each, 15% of the 2048-token prompt: ~20% of the
// context kept, steady however many steps run), the heads
// spread over workers goroutines started each step, or over a persistent
// tensor.Pool of as many threads (what sidecar/cuda does). It shows what
// the host's share of such a step costs and whether spreading it pays on
// the machine at hand.
func BenchmarkApplyHeads(b *testing.B) {
	const layers, kvHeads, d, L = 22, 4, 64, 2048
	for _, tc := range []struct {
		workers int
		pool    bool
		gap     time.Duration
	}{{1, false, 0}, {2, false, 0}, {4, false, 0}, {8, false, 0}, {2, true, 0}, {4, true, 0}, {8, true, 0},
		{8, false, 1700 * time.Microsecond}, {8, true, 1700 * time.Microsecond}} {
		workers := tc.workers
		name := fmt.Sprintf("goroutines=%d", workers)
		if tc.pool {
			name = fmt.Sprintf("pool=%d", workers)
		}
		if tc.gap > 0 {
			// Steps a GPU's time apart (the caller spins in the sync meanwhile):
			// what a worker left idle that long costs to wake.
			name += fmt.Sprintf("/gap=%v", tc.gap)
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, layers, kvHeads, d, F16, DefaultBlockEntries)
			c := f.c
			flags := make([]Flags, L)
			f.prefill(flags)
			c.SetAllPolicies(Policy{Keep: Frequent | Local, Window: Budget{Tokens: 307}, Frequent: Budget{Tokens: 307}})
			c.ApplyAll()
			rng := rand.New(rand.NewPCG(5, 6))
			delta := make([]float32, L+1)
			for i := range delta {
				delta[i] = rng.Float32() / 500
			}
			scs := make([]Scratch, workers)
			k, v := kvRows(0, kvHeads, d)
			var pool *tensor.Pool
			if tc.pool {
				pool = tensor.NewPool(workers)
				defer pool.Close()
			}
			task := &applyHeadsTask{c: c, delta: delta, scs: scs, kvHeads: kvHeads}
			var applying time.Duration
			step := func() {
				if tc.gap > 0 {
					for start := time.Now(); time.Since(start) < tc.gap; {
					}
				}
				for l := 0; l < layers; l++ {
					c.AppendAt(l, 0, 0, k, v)
				}
				start := time.Now()
				if pool != nil {
					pool.Parallel(layers*kvHeads, 1, task)
				} else {
					var wg sync.WaitGroup
					for w := range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for h := w; h < layers*kvHeads; h += workers {
								task.Run(w, h, h+1)
							}
						}()
					}
					wg.Wait()
				}
				for h := 0; h < layers*kvHeads; h++ {
					c.TakeEvicted(h/kvHeads, h%kvHeads)
				}
				c.Advance(1)
				applying += time.Since(start)
			}
			for range 32 {
				step()
			}
			applying = 0
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(applying.Microseconds())/float64(b.N), "apply-us")
			b.ReportMetric(float64(c.Kept(0, 0)), "entries/head")
		})
	}
}

// applyHeadsTask is BenchmarkApplyHeads' work on a tensor.Pool, a head an
// item.
type applyHeadsTask struct {
	c       *Cache
	delta   []float32
	scs     []Scratch
	kvHeads int
}

func (t *applyHeadsTask) Run(worker, lo, hi int) {
	for h := lo; h < hi; h++ {
		l, kh := h/t.kvHeads, h%t.kvHeads
		t.c.AddScores(l, kh, t.delta[:t.c.Kept(l, kh)])
		t.c.Apply(l, kh, &t.scs[worker])
	}
}

// TestDecodeStepsDoNotAllocate pins the zero-allocation promise of the
// decode path in steady state, for both element types (f16 is the
// commands' default, f32 the reference runs').
func TestDecodeStepsDoNotAllocate(t *testing.T) {
	for _, dt := range []DType{F16, F32} {
		testDecodeStepsDoNotAllocate(t, dt)
	}
}

func testDecodeStepsDoNotAllocate(t *testing.T, dt DType) {
	const d, groups = 16, 2
	for _, pol := range []Policy{
		{Keep: Special | Punct | Frequent | Local, Window: Budget{Tokens: 40}, Frequent: Budget{Ratio: 0.3}},
		{Keep: Random, Random: Budget{Tokens: 50}},
		{Keep: Sink | Local, Sinks: 4, Window: Budget{Tokens: 30}},
		FullPolicy,
	} {
		pool := NewPool(d, dt, 4, 0)
		c := New(Config{Layers: 1, KVHeads: 1, Seed: 2}, pool)
		f := &fixture{t: t, pool: pool, c: c}
		f.prefill(make([]Flags, 200))
		c.SetAllPolicies(pol)
		c.ApplyAll()
		k, v := kvRows(0, 1, d)
		q := make([]float32, groups*d)
		out, probs := make([]float32, groups*d), make([]float32, groups*1000)
		var sc Scratch
		step := func() {
			c.AppendAt(0, 0, 0, k, v)
			n := c.Kept(0, 0)
			c.Attend(0, 0, q, groups, n, 0.25, out, probs, nil)
			c.Observe(0, 0, probs, groups, n, &sc)
			c.TakeEvicted(0, 0)
			c.Advance(1)
		}
		for range 20 {
			step()
		}
		if pol.IsFull() {
			// A full cache grows, and takes a block every BlockEntries
			// steps; between those steps nothing is allocated.
			step = func() {
				c.Attend(0, 0, q, groups, c.Kept(0, 0), 0.25, out, probs, nil)
			}
		}
		if a := testing.AllocsPerRun(100, step); a != 0 {
			t.Errorf("%s, %s: %v allocations per decode step", dt, pol.Name(), a)
		}
	}
}

// attendLayer attends every KV head of one layer for one decode query per
// head, heads split across a tensor.Pool as the forward pass splits them.
type attendLayer struct {
	c      *Cache
	layer  int
	n      int
	q, out []float32
	probs  [][]float32
}

func (a *attendLayer) Run(worker, lo, hi int) {
	d := a.c.pool.headDim
	for kh := lo; kh < hi; kh++ {
		a.c.Attend(a.layer, kh, a.q[kh*d:(kh+1)*d], 1, a.n, 0.125, a.out[kh*d:(kh+1)*d], a.probs[worker], nil)
	}
}

// streamTask reads x in 16 KB pieces on every worker.
type streamTask struct {
	x    []float32
	sums []float32
}

func (s *streamTask) Run(worker, lo, hi int) {
	x := s.x[lo*4096 : hi*4096]
	s.sums[worker] += tensor.Dot(x, x)
}

// BenchmarkAttendDecode is the attention of one 110M decode step after a
// 576-token context (12 layers × 12 heads of dim 64, f16: 21 MB of K/V),
// heads split over the pool as the forward pass splits them. In "dram", 8 MB
// of other memory is streamed between layers, as the weights are, so the
// rows come from DRAM as they do in decode; in "cached" the K/V stays in
// L3. Only attention is timed; KV-GB/s compares with bandwidth-GB/s
// (tensor.MeasureBandwidth).
func BenchmarkAttendDecode(b *testing.B) {
	const layers, heads, d, ctx = 12, 12, 64, 576
	tp := tensor.NewPool(0)
	defer tp.Close()
	pool := NewPool(d, F16, DefaultBlockEntries, 0)
	c := New(Config{Layers: layers, KVHeads: heads, MaxLen: ctx}, pool)
	f := &fixture{t: b, pool: pool, c: c}
	f.prefill(make([]Flags, ctx))
	rng := rand.New(rand.NewPCG(3, 4))
	a := &attendLayer{c: c, n: ctx, q: make([]float32, heads*d), out: make([]float32, heads*d)}
	for i := range a.q {
		a.q[i] = float32(rng.NormFloat64())
	}
	for range tp.Threads() {
		a.probs = append(a.probs, make([]float32, ctx))
	}
	// 8 MB a layer, rotating through 96 MB: more than the L3 between one
	// step's visit to a layer and the next. Non-zero, or the reads would
	// all hit the kernel's one zero page.
	const slice = 2 << 20
	other := make([]float32, layers*slice)
	for i := range other {
		other[i] = 1
	}
	st := &streamTask{sums: make([]float32, tp.Threads())}
	kvBytes := float64(layers * heads * ctx * d * 2 * 2)
	bw := tensor.MeasureBandwidth(tp, 256<<20, 3)
	for _, dram := range []bool{true, false} {
		name := "cached"
		if dram {
			name = "dram"
		}
		b.Run(name, func(b *testing.B) {
			var spent time.Duration
			for b.Loop() {
				for l := range layers {
					if dram {
						st.x = other[l*slice : (l+1)*slice]
						tp.Parallel(len(st.x)/4096, 1, st)
					}
					a.layer = l
					start := time.Now()
					tp.Parallel(heads, 1, a)
					spent += time.Since(start)
				}
			}
			b.ReportMetric(kvBytes*float64(b.N)/spent.Seconds()/1e9, "KV-GB/s")
			b.ReportMetric(float64(spent.Microseconds())/float64(b.N), "attn-µs/op")
			b.ReportMetric(bw, "bandwidth-GB/s")
		})
	}
}
