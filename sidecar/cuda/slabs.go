package cuda

// slabs hands out fixed-size device blocks carved from larger allocations
// (slabs), because freeing device memory synchronises the device: blocks come
// and go every decode step, slabs rarely. Like kvcache.Pool, it keeps up to
// reserve free blocks and gives back every slab beyond that whose blocks are
// all free, so memory that FastGen evicts is returned to the device for real.
// alloc and free are the device calls (tests pass fakes).
type slabs struct {
	blockBytes uint64
	perSlab    int
	reserve    int
	alloc      func(bytes uint64) (uint64, error)
	free       func(ptr uint64) error

	all      []*slab
	freeList []uint64         // free block addresses
	owner    map[uint64]*slab // block address → its slab
	inUse    int
}

type slab struct {
	base uint64
	used int // blocks handed out
}

func newSlabs(blockBytes uint64, perSlab, reserve int, alloc func(uint64) (uint64, error), free func(uint64) error) *slabs {
	return &slabs{blockBytes: blockBytes, perSlab: perSlab, reserve: reserve, alloc: alloc, free: free, owner: make(map[uint64]*slab)}
}

// get returns a free block, allocating a slab when none is left.
func (p *slabs) get() (uint64, error) {
	if len(p.freeList) == 0 {
		base, err := p.alloc(p.blockBytes * uint64(p.perSlab))
		if err != nil {
			return 0, err
		}
		s := &slab{base: base}
		p.all = append(p.all, s)
		for i := p.perSlab - 1; i >= 0; i-- {
			b := base + uint64(i)*p.blockBytes
			p.owner[b] = s
			p.freeList = append(p.freeList, b)
		}
	}
	b := p.freeList[len(p.freeList)-1]
	p.freeList = p.freeList[:len(p.freeList)-1]
	p.owner[b].used++
	p.inUse++
	return b, nil
}

// put takes blocks back and frees the slabs that are no longer needed.
func (p *slabs) put(bs []uint64) error {
	for _, b := range bs {
		p.owner[b].used--
		p.inUse--
		p.freeList = append(p.freeList, b)
	}
	if len(p.freeList) <= p.reserve+p.perSlab {
		return nil
	}
	return p.trim()
}

// trim frees empty slabs while more than reserve blocks stay free.
func (p *slabs) trim() error {
	var firstErr error
	keep := p.all[:0]
	for _, s := range p.all {
		if s.used == 0 && len(p.freeList)-p.perSlab >= p.reserve {
			p.dropFree(s)
			if err := p.free(s.base); err != nil && firstErr == nil {
				firstErr = err
			}
			continue
		}
		keep = append(keep, s)
	}
	clear(p.all[len(keep):])
	p.all = keep
	return firstErr
}

func (p *slabs) dropFree(s *slab) {
	out := p.freeList[:0]
	for _, b := range p.freeList {
		if p.owner[b] == s {
			delete(p.owner, b)
			continue
		}
		out = append(out, b)
	}
	p.freeList = out
}

// bytes is the device memory held in slabs; inUseBytes what caches hold.
func (p *slabs) bytes() uint64      { return uint64(len(p.all)*p.perSlab) * p.blockBytes }
func (p *slabs) inUseBytes() uint64 { return uint64(p.inUse) * p.blockBytes }

// close frees every slab.
func (p *slabs) close() error {
	var firstErr error
	for _, s := range p.all {
		if err := p.free(s.base); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.all, p.freeList, p.owner, p.inUse = nil, nil, make(map[uint64]*slab), 0
	return firstErr
}
