package kvcache

import "unsafe"

// Mirror is told about every change to the layout of a cache's entries, so
// that a device holding the K/V rows (sidecar/cuda) keeps its copy in step
// with the host's metadata. Policy decisions stay here, on the host: the
// mirror only follows where entries live. Entry j of a head lives in the
// head's block j/BlockEntries at slot j%BlockEntries on the host and on the
// device alike.
//
// Calls come from whichever goroutine changes the head (heads may be
// observed concurrently), so an implementation must tolerate concurrent
// calls for different heads; calls for one head are ordered.
type Mirror interface {
	// Blocks says that head (layer, kvHead) now holds n blocks: one more
	// after an append crossed a block boundary, fewer after an eviction
	// emptied its last blocks (the device frees them).
	Blocks(layer, kvHead, n int)
	// Move says that eviction moved entry src of the head into entry dst
	// (swap-remove: src is the head's last entry, dst the evicted one).
	Move(layer, kvHead, dst, src int)
	// Fork returns the mirror of a copy of the cache (Cache.Fork): the
	// device copies the rows it holds. On error it holds nothing.
	Fork(f *Cache) (Mirror, error)
	// Close releases everything the mirror holds (Cache.Close).
	Close()
}

// SetMirror attaches a mirror to an empty cache (nil detaches it).
func (c *Cache) SetMirror(m Mirror) { c.mirror = m }

// Mirror returns the cache's mirror, nil when none is attached.
func (c *Cache) Mirror() Mirror { return c.mirror }

// SetHostRows chooses whether the pool's blocks carry K/V rows on the host
// (the default). A device backend that holds the rows itself turns them off
// before the first block is taken, leaving the host with each entry's
// position, flags and score only; Append then ignores its k and v, and
// Attend and Probs must not be called. Blocks already allocated keep their
// rows until they are dropped.
func (p *Pool) SetHostRows(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noHostRows = !on
}

// HostRows reports whether blocks carry K/V rows on the host.
func (p *Pool) HostRows() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.noHostRows
}

// hasRows reports whether the block carries host K/V rows.
func (b *block) hasRows() bool { return b.kf != nil || b.kh != nil }

// headIndex is the head's layer and KV head, for mirror calls.
func (c *Cache) headIndex(h *head) (layer, kvHead int) {
	i := int((uintptr(unsafe.Pointer(h)) - uintptr(unsafe.Pointer(&c.heads[0]))) / unsafe.Sizeof(head{}))
	return i / c.cfg.KVHeads, i % c.cfg.KVHeads
}

func (c *Cache) mirrorBlocks(h *head) {
	l, kh := c.headIndex(h)
	c.mirror.Blocks(l, kh, len(h.blocks))
}

func (c *Cache) mirrorMove(h *head, dst, src int) {
	l, kh := c.headIndex(h)
	c.mirror.Move(l, kh, dst, src)
}
