package kvcache

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// shadow is a Mirror that keeps its own copy of each entry's position, the
// way a device keeps the rows, by replaying the cache's calls.
type shadow struct {
	kvHeads, be int
	pos         [][]int32 // per head: one slot per entry of its blocks
	blocks      []int
	closed      bool
	failFork    bool // Fork fails, as a device out of memory would
}

func (s *shadow) Blocks(l, kh, n int) {
	i := l*s.kvHeads + kh
	s.blocks[i] = n
	for len(s.pos[i]) < n*s.be {
		s.pos[i] = append(s.pos[i], -1)
	}
	s.pos[i] = s.pos[i][:n*s.be]
}

func (s *shadow) Move(l, kh, dst, src int) {
	p := s.pos[l*s.kvHeads+kh]
	p[dst] = p[src]
}

func (s *shadow) Fork(f *Cache) (Mirror, error) {
	c := &shadow{kvHeads: s.kvHeads, be: s.be, blocks: append([]int(nil), s.blocks...)}
	for _, p := range s.pos {
		c.pos = append(c.pos, append([]int32(nil), p...))
	}
	if s.failFork {
		return nil, errors.New("no device memory")
	}
	return c, nil
}

func (s *shadow) Close() { s.closed = true }

// TestMirrorFollowsEvictions replays appends, evictions and a fork on a
// shadow without host rows and checks that it holds every kept entry where
// the host's metadata says.
func TestMirrorFollowsEvictions(t *testing.T) {
	const layers, kvHeads, d, be = 2, 3, 4, 4
	pool := NewPool(d, F16, be, 0)
	pool.SetHostRows(false)
	c := New(Config{Layers: layers, KVHeads: kvHeads, Seed: 7}, pool)
	sh := &shadow{kvHeads: kvHeads, be: be, pos: make([][]int32, layers*kvHeads), blocks: make([]int, layers*kvHeads)}
	c.SetMirror(sh)
	c.SetAllPolicies(Policy{Keep: Local | Random, Window: Budget{Tokens: 3}, Random: Budget{Tokens: 9}})
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(c *Cache, sh *shadow) {
		t.Helper()
		for l := 0; l < layers; l++ {
			for kh := 0; kh < kvHeads; kh++ {
				i := l*kvHeads + kh
				if want := (c.Kept(l, kh) + be - 1) / be; sh.blocks[i] != want {
					t.Fatalf("head %d/%d: mirror holds %d blocks, cache %d", l, kh, sh.blocks[i], want)
				}
				for j := 0; j < c.Kept(l, kh); j++ {
					if got, want := sh.pos[i][j], c.Pos(l, kh, j); got != want {
						t.Fatalf("head %d/%d entry %d: mirror has position %d, cache %d", l, kh, j, got, want)
					}
				}
			}
		}
	}
	var sc Scratch
	for step := 0; step < 60; step++ {
		for l := 0; l < layers; l++ {
			c.AppendAt(l, 0, 0, nil, nil)
			for kh := 0; kh < kvHeads; kh++ {
				// the device writes the new row itself: record its position
				sh.pos[l*kvHeads+kh][c.Kept(l, kh)-1] = int32(c.Len())
				c.AddScores(l, kh, []float32{rng.Float32()})
				c.Apply(l, kh, &sc)
			}
		}
		c.Advance(1)
		check(c, sh)
	}
	f, err := c.Fork()
	if err != nil {
		t.Fatal(err)
	}
	fsh := f.Mirror().(*shadow)
	check(f, fsh)
	f.Close()
	if !fsh.closed || sh.closed {
		t.Fatal("closing the fork must close its mirror only")
	}
	// A fork the device cannot hold fails and gives its blocks back.
	inUse := c.Pool().InUseBytes()
	sh.failFork = true
	if f, err := c.Fork(); err == nil || f != nil {
		t.Fatalf("a failing mirror's fork returned %v, %v", f, err)
	}
	if got := c.Pool().InUseBytes(); got != inUse {
		t.Errorf("a failed fork left %d bytes of blocks in use, want %d", got, inUse)
	}
	sh.failFork = false
	c.Close()
	if !sh.closed {
		t.Fatal("Close did not close the mirror")
	}
}
