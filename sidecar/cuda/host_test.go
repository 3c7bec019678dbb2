package cuda

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// rowLog is a kvcache.Mirror that, like the device, keeps each entry's
// position in slots and applies moves only when flushed, through moveLog.
type rowLog struct {
	kvHeads int
	be      int
	slots   [][]int32
	logs    []moveLog
}

func (r *rowLog) Blocks(l, kh, n int) {
	h := l*r.kvHeads + kh
	for len(r.slots[h]) < n*r.be {
		r.slots[h] = append(r.slots[h], -1)
	}
}
func (r *rowLog) Move(l, kh, dst, src int)                    { r.logs[l*r.kvHeads+kh].move(dst, src) }
func (r *rowLog) Fork(*kvcache.Cache) (kvcache.Mirror, error) { return nil, nil }
func (r *rowLog) Close()                                      {}

// flush applies every head's resolved moves as the kv_move kernel does: all
// reads before any write.
func (r *rowLog) flush(t *testing.T, c *kvcache.Cache) {
	for h := range r.logs {
		l, kh := h/r.kvHeads, h%r.kvHeads
		n := c.Kept(l, kh)
		dst, src := r.logs[h].resolve(n, nil, nil)
		vals := make([]int32, len(src))
		for i, s := range src {
			vals[i] = r.slots[h][s]
		}
		for i, d := range dst {
			if slices.Contains(src, d) {
				t.Fatalf("head %d: entry %d is both a source and a destination", h, d)
			}
			r.slots[h][d] = vals[i]
		}
	}
}

// TestMovesResolveToIndependentCopies evicts with random and local policies,
// flushing only once per step as the device does, and checks that the
// resolved copies leave every entry where the host cache says.
func TestMovesResolveToIndependentCopies(t *testing.T) {
	const layers, kvHeads, be = 2, 2, 4
	pool := kvcache.NewPool(8, kvcache.F32, be, 0)
	pool.SetHostRows(false)
	c := kvcache.New(kvcache.Config{Layers: layers, KVHeads: kvHeads, Seed: 3}, pool)
	r := &rowLog{kvHeads: kvHeads, be: be, slots: make([][]int32, layers*kvHeads), logs: make([]moveLog, layers*kvHeads)}
	c.SetMirror(r)
	c.SetAllPolicies(kvcache.Policy{Keep: kvcache.Local | kvcache.Random, Window: kvcache.Budget{Tokens: 2}, Random: kvcache.Budget{Ratio: 0.4}})
	rng := rand.New(rand.NewPCG(5, 6))
	for step := 0; step < 80; step++ {
		n := 1 + rng.IntN(3) // several appends between flushes, like a prefill
		for l := 0; l < layers; l++ {
			for i := 0; i < n; i++ {
				c.AppendAt(l, i, 0, nil, nil)
				for kh := 0; kh < kvHeads; kh++ {
					r.slots[l*kvHeads+kh][c.Kept(l, kh)-1] = int32(c.Len() + i)
				}
			}
		}
		c.Advance(n)
		c.ApplyAll()
		r.flush(t, c)
		for h := range r.slots {
			l, kh := h/kvHeads, h%kvHeads
			for j := 0; j < c.Kept(l, kh); j++ {
				if got, want := r.slots[h][j], c.Pos(l, kh, j); got != want {
					t.Fatalf("step %d head %d entry %d: device would hold position %d, host says %d", step, h, j, got, want)
				}
			}
		}
	}
}

// fakeSlabs is a block pool over fake device allocations; live holds the
// slabs allocated and not yet freed, and a free of anything else fails.
func fakeSlabs(t *testing.T, blockBytes uint64, perSlab, reserve int) (*slabs, map[uint64]bool) {
	var next uint64 = 1 << 20
	live := map[uint64]bool{}
	return newSlabs(blockBytes, perSlab, reserve, func(n uint64) (uint64, error) {
		b := next
		next += n
		live[b] = true
		return b, nil
	}, func(b uint64) error {
		if !live[b] {
			t.Fatalf("free of %#x, not a live slab", b)
		}
		delete(live, b)
		return nil
	}), live
}

// TestSlabsFreeWhatIsEvicted checks the device block pool's accounting: in
// use tracks what caches hold, and slabs beyond the reserve go back.
func TestSlabsFreeWhatIsEvicted(t *testing.T) {
	p, live := fakeSlabs(t, 64, 8, 8)
	var held []uint64
	for i := 0; i < 100; i++ {
		b, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(held, b) {
			t.Fatalf("block %#x handed out twice", b)
		}
		held = append(held, b)
	}
	if got := p.inUseBytes(); got != 100*64 {
		t.Fatalf("in use %d bytes, want %d", got, 100*64)
	}
	if err := p.put(held[:90]); err != nil {
		t.Fatal(err)
	}
	held = held[90:]
	if got := p.inUseBytes(); got != 10*64 {
		t.Fatalf("in use %d bytes after eviction, want %d", got, 10*64)
	}
	// at most the reserve plus partly used slabs stay allocated
	if got, max := p.bytes(), uint64(10+8+2*8)*64; got > max {
		t.Fatalf("pool holds %d bytes after freeing 90 of 100 blocks, want ≤ %d", got, max)
	}
	if err := p.put(held); err != nil {
		t.Fatal(err)
	}
	if got := p.inUseBytes(); got != 0 {
		t.Fatalf("in use %d bytes after freeing every block", got)
	}
	if err := p.close(); err != nil || len(live) != 0 {
		t.Fatalf("close left %d slabs (%v)", len(live), err)
	}
}

// TestWeightsByName reads a synthesized model's tensors the way the backend
// uploads them.
func TestWeightsByName(t *testing.T) {
	dir := t.TempDir()
	s := model.Shape{Dim: 64, Hidden: 96, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 64, Ctx: 32}
	path := filepath.Join(dir, "m.gguf")
	if err := model.Synthesize(path, s, tensor.Q8_0, 1); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(path, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w, err := openWeights(m)
	if err != nil {
		t.Fatal(err)
	}
	defer w.closer.Close()
	if len(w.layers) != 2 || w.layers[1].wk.Rows != 32 || !supported(w.layers[0].wq.Type) || len(w.outNorm) != 64 {
		t.Fatalf("unexpected weights: %d layers, wk rows %d, wq %s, out norm %d", len(w.layers), w.layers[1].wk.Rows, w.layers[0].wq.Type, len(w.outNorm))
	}
	_ = os.Remove(path)
}

// TestSlabsRandomChurn gets and puts blocks at random, as decode steps and
// evictions do, and checks the pool's books after every operation: each
// block handed out once, the counts, and no empty slab kept beyond what the
// reserve needs.
func TestSlabsRandomChurn(t *testing.T) {
	const perSlab, reserve = 4, 6
	p, live := fakeSlabs(t, 16, perSlab, reserve)
	rng := rand.New(rand.NewPCG(1, 2))
	held := map[uint64]bool{}
	var order []uint64
	for step := 0; step < 20000; step++ {
		if len(order) == 0 || rng.IntN(100) < 52 {
			b, err := p.get()
			if err != nil {
				t.Fatal(err)
			}
			if held[b] {
				t.Fatalf("step %d: block %#x handed out twice", step, b)
			}
			held[b] = true
			order = append(order, b)
		} else {
			n := 1 + rng.IntN(min(len(order), 9))
			var bs []uint64
			for range n {
				i := rng.IntN(len(order))
				bs = append(bs, order[i])
				delete(held, order[i])
				order[i] = order[len(order)-1]
				order = order[:len(order)-1]
			}
			if err := p.put(bs); err != nil {
				t.Fatal(err)
			}
		}
		if p.inUse != len(held) || p.idle != p.count*perSlab-len(held) || len(live) != p.count {
			t.Fatalf("step %d: in use %d (held %d), idle %d, slabs %d (live %d)", step, p.inUse, len(held), p.idle, p.count, len(live))
		}
		if len(p.empty) > 0 && p.idle-perSlab >= reserve {
			t.Fatalf("step %d: an empty slab is kept with %d other free blocks (reserve %d)", step, p.idle-perSlab, reserve)
		}
	}
	if err := p.close(); err != nil || len(live) != 0 {
		t.Fatalf("close left %d slabs (%v)", len(live), err)
	}
}
