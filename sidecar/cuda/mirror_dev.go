//go:build cuda

package cuda

import (
	"fmt"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// devMirror holds one cache's K/V rows on the device: per (layer, KV head) a
// table of device blocks whose entry j is the host's entry j
// (kvcache.Mirror). It is driven by the host cache's calls and by the
// runner, always with the backend entered (Backend.mu held), except the
// cache's own Blocks/Move calls, which only record.
type devMirror struct {
	b         *Backend
	cache     *kvcache.Cache
	pool      *slabs
	kvHeads   int
	hd, be    int
	f16       bool
	maxBlocks int

	tables  []uint64 // heads × maxBlocks block addresses (host copy)
	nblk    []int    // blocks held per head (≥ the host's: grow runs ahead)
	hostBlk []int    // blocks the host head holds, as last told
	dtables cu.DevicePtr
	logs    []moveLog
	// patch holds (table index, block address) pairs that grow set since
	// the last flush, which table_set writes on the device. Released slots
	// are not cleared there: no kernel reads past a head's kept entries.
	patch  []uint64
	dpatch devBuf

	mu      sync.Mutex // pending: heads apply their policies concurrently
	pending []uint64   // blocks released by evictions, freed after the moves

	mvHead, mvDst, mvSrc []int32
	dmv                  devBuf // the moves: heads, destinations, sources
	closed               bool
}

func newMirror(b *Backend, c *kvcache.Cache) (*devMirror, error) {
	cfg, p := c.Config(), c.Pool()
	ctx := cfg.MaxLen
	if ctx <= 0 {
		return nil, fmt.Errorf("cuda: the cache needs Config.MaxLen (the context length) to size its block tables")
	}
	es := 4
	if p.DType() == kvcache.F16 {
		es = 2
	}
	heads := cfg.Layers * cfg.KVHeads
	m := &devMirror{b: b, cache: c, kvHeads: cfg.KVHeads, hd: p.HeadDim(), be: p.BlockEntries(), f16: es == 2,
		maxBlocks: ceilDiv(ctx, p.BlockEntries())}
	m.pool = b.pool(uint64(2 * m.be * m.hd * es))
	m.tables = make([]uint64, heads*m.maxBlocks)
	m.nblk = make([]int, heads)
	m.hostBlk = make([]int, heads)
	m.logs = make([]moveLog, heads)
	var err error
	if m.dtables, err = alloc(8 * len(m.tables)); err != nil {
		return nil, err
	}
	return m, nil
}

// Blocks follows the host: growth was provided for before the launch (grow)
// and the host catches up one block at a time; shrinking (eviction) releases
// the blocks once pending moves have run.
func (m *devMirror) Blocks(layer, kvHead, n int) {
	h := layer*m.kvHeads + kvHead
	shrink := n < m.hostBlk[h]
	m.hostBlk[h] = n
	for shrink && m.nblk[h] > n {
		m.nblk[h]--
		i := h*m.maxBlocks + m.nblk[h]
		m.mu.Lock()
		m.pending = append(m.pending, m.tables[i])
		m.mu.Unlock()
		m.tables[i] = 0
	}
	if n > m.nblk[h] {
		// Only the runner appends, and it grows the tables first.
		panic(fmt.Sprintf("cuda: head %d/%d grew to %d blocks outside a forward pass", layer, kvHead, n))
	}
}

func (m *devMirror) Move(layer, kvHead, dst, src int) {
	m.logs[layer*m.kvHeads+kvHead].move(dst, src)
}

// grow makes every head able to take n more entries (device entered).
func (m *devMirror) grow(n int) error {
	cfg := m.cache.Config()
	for l := 0; l < cfg.Layers; l++ {
		for kh := 0; kh < cfg.KVHeads; kh++ {
			h := l*m.kvHeads + kh
			need := ceilDiv(m.cache.Kept(l, kh)+n, m.be)
			for m.nblk[h] < need {
				blk, err := m.pool.get()
				if err != nil {
					return err
				}
				i := h*m.maxBlocks + m.nblk[h]
				m.tables[i] = blk
				m.patch = append(m.patch, uint64(i), blk)
				m.nblk[h]++
			}
		}
	}
	return nil
}

// flush runs the moves recorded since the last flush, then patches the
// block tables with what grow added and returns released blocks to the
// pool. The moves read the tables as the device has them, which still hold
// every source block; in stream order they run before any later kernel
// that reuses those blocks.
func (m *devMirror) flush() error {
	m.mvHead, m.mvDst, m.mvSrc = m.mvHead[:0], m.mvDst[:0], m.mvSrc[:0]
	for h := range m.logs {
		if m.logs[h].empty() {
			continue
		}
		before := len(m.mvDst)
		m.mvDst, m.mvSrc = m.logs[h].resolve(m.cache.Kept(h/m.kvHeads, h%m.kvHeads), m.mvDst, m.mvSrc)
		for range len(m.mvDst) - before {
			m.mvHead = append(m.mvHead, int32(h))
		}
	}
	if n := len(m.mvDst); n > 0 {
		if err := m.dmv.fit(m.b, 3*4*n); err != nil {
			return err
		}
		// One transfer: heads, destinations and sources back to back.
		m.mvHead = append(append(m.mvHead, m.mvDst...), m.mvSrc...)
		if err := m.b.upload(m.dmv.ptr, i32Ptr(m.mvHead), 4*3*n); err != nil {
			return err
		}
		head, dst, src := m.dmv.ptr, m.dmv.ptr+cu.DevicePtr(4*n), m.dmv.ptr+cu.DevicePtr(8*n)
		a := new(args).p(m.dtables).p(head).p(dst).p(src).i(m.hd).i(m.be).i(m.maxBlocks).i(b2i(m.f16))
		if err := m.b.launch("kv_move", n, 1, 128, 0, a); err != nil {
			return err
		}
	}
	if n := len(m.patch) / 2; n > 0 {
		if err := m.dpatch.fit(m.b, 16*n); err != nil {
			return err
		}
		if err := m.b.upload(m.dpatch.ptr, unsafe.Pointer(&m.patch[0]), 8*len(m.patch)); err != nil {
			return err
		}
		if err := m.b.launch("table_set", ceilDiv(n, 256), 1, 256, 0, new(args).p(m.dtables).p(m.dpatch.ptr).i(n)); err != nil {
			return err
		}
		m.patch = m.patch[:0]
	}
	if len(m.pending) > 0 {
		err := m.pool.put(m.pending)
		m.pending = m.pending[:0]
		return err
	}
	return nil
}

// Fork copies the device rows for a forked cache. On error the copy holds
// nothing.
func (m *devMirror) Fork(f *kvcache.Cache) (kvcache.Mirror, error) {
	leave := m.b.enter()
	defer leave()
	if err := m.flush(); err != nil {
		return nil, err
	}
	n, err := newMirror(m.b, f)
	if err != nil {
		return nil, err
	}
	if err := n.copyRows(m); err != nil {
		n.release()
		return nil, err
	}
	return n, nil
}

// copyRows gives the mirror blocks holding a copy of src's, counted as they
// are taken so that release returns them if a later one fails.
func (m *devMirror) copyRows(src *devMirror) error {
	bb := src.pool.blockBytes
	for h, nb := range src.nblk {
		for i := 0; i < nb; i++ {
			blk, err := m.pool.get()
			if err != nil {
				return err
			}
			m.tables[h*m.maxBlocks+i] = blk
			m.nblk[h] = i + 1
			if err := cu.MemcpyDtoDAsync(cu.DevicePtr(blk), cu.DevicePtr(src.tables[h*src.maxBlocks+i]), int64(bb), m.b.stream); err != nil {
				return fmt.Errorf("cuda: copy cache blocks: %v", err)
			}
		}
		m.hostBlk[h] = src.hostBlk[h]
	}
	// The copy's tables go up now, not at its first flush: that flush runs
	// the moves of evictions made before it (a policy applied to the fork)
	// first, and they read the tables on the device.
	return m.b.upload(m.dtables, unsafe.Pointer(&m.tables[0]), 8*len(m.tables))
}

// Close returns every block to the device pool.
func (m *devMirror) Close() {
	leave, ok := m.b.enterOpen()
	defer leave()
	if ok {
		m.release()
	}
}

func (m *devMirror) release() {
	if m.closed {
		return
	}
	m.closed = true
	for h, nb := range m.nblk {
		m.pending = append(m.pending, m.tables[h*m.maxBlocks:h*m.maxBlocks+nb]...)
		m.nblk[h] = 0
	}
	m.b.stream.Synchronize()
	m.pool.put(m.pending)
	m.pending = nil
	for _, p := range []cu.DevicePtr{m.dtables, m.dmv.ptr, m.dpatch.ptr} {
		if p != 0 {
			cu.MemFree(p)
		}
	}
}

// devBuf is a device buffer that grows (doubling, from 4 KB) to what a
// flush needs to send, and is reused.
type devBuf struct {
	ptr   cu.DevicePtr
	bytes int
}

// fit makes the buffer hold at least n bytes (device entered).
func (d *devBuf) fit(b *Backend, n int) error {
	if n <= d.bytes {
		return nil
	}
	size := max(n, 2*d.bytes, 4096)
	if d.ptr != 0 {
		b.stream.Synchronize() // a queued kernel may still read it
		cu.MemFree(d.ptr)
		d.ptr, d.bytes = 0, 0
	}
	p, err := alloc(size)
	if err != nil {
		return err
	}
	d.ptr, d.bytes = p, size
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
