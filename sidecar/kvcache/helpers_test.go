package kvcache

import (
	"math"
	"slices"
	"testing"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

func f16(h uint16) float32       { return tensor.F16ToF32(h) }
func roundF16(x float32) float32 { return tensor.F16ToF32(tensor.F32ToF16(x)) }

// rowFor is the deterministic K (kind 0) or V (kind 1) row of a position, so
// a test can check that an entry still carries its own data after evictions
// moved it around.
func rowFor(pos, kind, d int) []float32 {
	r := make([]float32, d)
	for x := range r {
		r[x] = float32(math.Sin(float64(pos)*1.37+float64(x)*0.71+float64(kind)*2.1)) * 0.9
	}
	return r
}

// kvRows is the K and V of every KV head of one layer for a position.
func kvRows(pos, kvHeads, d int) (k, v []float32) {
	for kh := 0; kh < kvHeads; kh++ {
		k = append(k, rowFor(pos*kvHeads+kh, 0, d)...)
		v = append(v, rowFor(pos*kvHeads+kh, 1, d)...)
	}
	return k, v
}

type fixture struct {
	t    testing.TB
	pool *Pool
	c    *Cache
	sc   Scratch
}

func newFixture(t testing.TB, layers, kvHeads, d int, dt DType, be int) *fixture {
	pool := NewPool(d, dt, be, 0)
	return &fixture{t: t, pool: pool, c: New(Config{Layers: layers, KVHeads: kvHeads}, pool)}
}

// prefill appends tokens with the given flags in one batch, as the forward
// pass does, without applying policies.
func (f *fixture) prefill(flags []Flags) {
	cfg := f.c.Config()
	for l := 0; l < cfg.Layers; l++ {
		for i, fl := range flags {
			k, v := kvRows(f.c.Len()+i, cfg.KVHeads, f.pool.HeadDim())
			f.c.AppendAt(l, i, fl, k, v)
		}
	}
	f.c.Advance(len(flags))
}

// step is one decode step in the forward pass's order: append every layer's
// row (Attend and Observe of a layer run before the next layer appends, and
// all before Advance), observing probs from probsFor (nil: real attention).
func (f *fixture) step(fl Flags, probsFor func(layer, kh, kept int) []float32) {
	cfg := f.c.Config()
	d := f.pool.HeadDim()
	pos := f.c.Len()
	for l := 0; l < cfg.Layers; l++ {
		k, v := kvRows(pos, cfg.KVHeads, d)
		f.c.AppendAt(l, 0, fl, k, v)
		for kh := 0; kh < cfg.KVHeads; kh++ {
			n := f.c.Kept(l, kh)
			var probs []float32
			if probsFor != nil {
				probs = probsFor(l, kh, n)
			} else {
				probs = make([]float32, n)
				out := make([]float32, d)
				f.c.Attend(l, kh, k[kh*d:(kh+1)*d], 1, n, 0.5, out, probs, nil)
			}
			f.c.Observe(l, kh, probs, 1, n, &f.sc)
		}
	}
	f.c.Advance(1)
}

// positions is the sorted set of positions a head keeps, read in bulk
// (Entries) and checked entry by entry against Pos and EntryFlags.
func (f *fixture) positions(l, kh int) []int32 {
	n := f.c.Kept(l, kh)
	ps, fs := make([]int32, n), make([]Flags, n)
	f.c.Entries(l, kh, ps, fs)
	for i := range ps {
		if ps[i] != f.c.Pos(l, kh, i) || fs[i] != f.c.EntryFlags(l, kh, i) {
			f.t.Fatalf("head (%d,%d) entry %d: Entries says pos %d flags %v, Pos/EntryFlags %d %v", l, kh, i, ps[i], fs[i], f.c.Pos(l, kh, i), f.c.EntryFlags(l, kh, i))
		}
	}
	slices.Sort(ps)
	return ps
}

// checkRows fails unless every kept entry still holds the K/V rows, flags
// and nothing else of its own position: positions never shift.
func (f *fixture) checkRows(l, kh int, flagsOf func(pos int) Flags) {
	f.t.Helper()
	c, d, be := f.c, f.pool.HeadDim(), f.pool.BlockEntries()
	h := c.h(l, kh)
	seen := map[int32]bool{}
	for j := 0; j < h.n; j++ {
		b, i := h.blocks[j/be], j%be
		pos := b.pos[i]
		if seen[pos] {
			f.t.Fatalf("head %d/%d: position %d cached twice", l, kh, pos)
		}
		seen[pos] = true
		id := int(pos)*c.cfg.KVHeads + kh
		wk, wv := rowFor(id, 0, d), rowFor(id, 1, d)
		gk, gv := make([]float32, d), make([]float32, d)
		if f.pool.DType() == F16 {
			for x := 0; x < d; x++ {
				gk[x], gv[x] = f16(b.kh[i*d+x]), f16(b.vh[i*d+x])
				wk[x], wv[x] = roundF16(wk[x]), roundF16(wv[x])
			}
		} else {
			copy(gk, b.kf[i*d:(i+1)*d])
			copy(gv, b.vf[i*d:(i+1)*d])
		}
		if !slices.Equal(gk, wk) || !slices.Equal(gv, wv) {
			f.t.Fatalf("head %d/%d: entry %d (position %d) holds another position's rows", l, kh, j, pos)
		}
		if flagsOf != nil && b.flags[i] != flagsOf(int(pos)) {
			f.t.Fatalf("head %d/%d: position %d has flags %v, want %v", l, kh, pos, b.flags[i], flagsOf(int(pos)))
		}
	}
}

func seq(lo, hi int) []int32 {
	var s []int32
	for p := lo; p < hi; p++ {
		s = append(s, int32(p))
	}
	return s
}
