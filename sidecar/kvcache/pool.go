// Package kvcache is the one KV cache behind every mode: a ragged store per
// (layer, KV head) holding only the entries that head's policy keeps, in
// fixed-size blocks drawn from a Pool. Full caches, FastGen's five policies
// and the fixed baselines are all policies of this store, so every mode runs
// the same attention loop over kept entries only, and evicted entries free
// real memory.
package kvcache

import (
	"fmt"
	"sync"
)

// DType is the element type of stored K and V rows.
type DType uint8

const (
	F32 DType = iota
	F16
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// DefaultDType is the element type the commands store K and V in unless
// told otherwise: llama.cpp's default, half the memory of f32. (The zero
// value, F32, stays what a bare Options or NewPool call gets: float32
// throughout, as the reference runs.)
const DefaultDType = F16

// ParseDType reads a cache dtype name as given on the command line.
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "F32":
		return F32, nil
	case "f16", "F16":
		return F16, nil
	}
	return 0, fmt.Errorf("unknown KV cache dtype %q (want f32 or f16)", s)
}

// Size is the bytes of one element.
func (d DType) Size() int {
	if d == F16 {
		return 2
	}
	return 4
}

// DefaultBlockEntries is the number of entries per block. Small blocks keep
// the allocated bytes within one partly filled block of what a head keeps;
// 16 entries amortise the per-block bookkeeping well for head dims ≥ 8.
const DefaultBlockEntries = 16

// block holds up to Pool.blockEntries entries of one head. Exactly one of
// kf/vf or kh/vh is in use, by dtype.
type block struct {
	kf, vf []float32
	kh, vh []uint16
	pos    []int32
	flags  []Flags
	score  []float32
}

// Pool hands out blocks of one shape and takes them back. Blocks released by
// finished sessions stay on a free list up to the reserve; beyond it they are
// dropped so the Go heap can give the memory back. Pool is safe for use by
// many sessions at once.
type Pool struct {
	headDim      int
	blockEntries int
	dtype        DType
	reserve      int // free blocks kept for reuse

	mu         sync.Mutex
	noHostRows bool // K/V rows live on a device (SetHostRows)
	free       []block
	allocated  int64 // blocks alive: in use + on the free list
	inUse      int64
}

// MinReserveBlocks is the least number of free blocks a pool keeps. A head
// whose kept count sits at a block boundary takes a block when a decode step
// appends and frees it when the step evicts, every step; with nothing on the
// free list each of those steps would allocate a block and drop one. Within a
// step only one layer's heads hold such a block at once, so a small floor
// makes steady-state decoding allocation-free for up to this many KV heads.
const MinReserveBlocks = 64

// NewPool makes a pool of blocks for rows of headDim elements.
// reserveBlocks free blocks (at least MinReserveBlocks) are kept after
// release instead of being dropped.
func NewPool(headDim int, dtype DType, blockEntries, reserveBlocks int) *Pool {
	if blockEntries <= 0 {
		blockEntries = DefaultBlockEntries
	}
	return &Pool{headDim: headDim, blockEntries: blockEntries, dtype: dtype, reserve: max(reserveBlocks, MinReserveBlocks)}
}

// BlockEntries is the number of entries a block holds.
func (p *Pool) BlockEntries() int { return p.blockEntries }

// HeadDim is the row length of the pool's blocks.
func (p *Pool) HeadDim() int { return p.headDim }

// DType is the element type of the pool's K/V rows.
func (p *Pool) DType() DType { return p.dtype }

// EntryBytes is the memory one cached entry takes: its K and V rows, the
// absolute position, the class flags and the frequency score.
func (p *Pool) EntryBytes() int64 {
	return int64(2*p.headDim*p.dtype.Size() + 4 + 1 + 4)
}

// BlockBytes is the memory one block takes.
func (p *Pool) BlockBytes() int64 { return int64(p.blockEntries) * p.EntryBytes() }

// Bytes is the memory held by the pool's live blocks, in use or free.
func (p *Pool) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocated * p.BlockBytes()
}

// InUseBytes is the memory of blocks currently held by caches.
func (p *Pool) InUseBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse * p.BlockBytes()
}

func (p *Pool) get() block {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse++
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = block{}
		p.free = p.free[:n-1]
		return b
	}
	p.allocated++
	n, d := p.blockEntries, p.headDim
	b := block{pos: make([]int32, n), flags: make([]Flags, n), score: make([]float32, n)}
	if p.noHostRows {
		return b
	}
	// K and V rows share one allocation: attention reads a block's values
	// right after its keys.
	if p.dtype == F16 {
		kv := make([]uint16, 2*n*d)
		b.kh, b.vh = kv[:n*d:n*d], kv[n*d:]
	} else {
		kv := make([]float32, 2*n*d)
		b.kf, b.vf = kv[:n*d:n*d], kv[n*d:]
	}
	return b
}

func (p *Pool) put(bs []block) {
	if len(bs) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse -= int64(len(bs))
	for _, b := range bs {
		if len(p.free) < p.reserve {
			p.free = append(p.free, b)
		} else {
			p.allocated-- // dropped: the GC reclaims it
		}
	}
}
