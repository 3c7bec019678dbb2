package cuda

// slabs hands out fixed-size device blocks carved from larger allocations
// (slabs), because freeing device memory synchronises the device: blocks come
// and go every decode step, slabs rarely. Like kvcache.Pool, it keeps up to
// reserve free blocks and gives back every slab beyond that whose blocks are
// all free, so memory that FastGen evicts is returned to the device for real.
// Every operation is O(1) per block (a long-context FastGen step releases
// and takes blocks in every head). alloc and free are the device calls
// (tests pass fakes).
type slabs struct {
	blockBytes uint64
	perSlab    int
	reserve    int
	alloc      func(bytes uint64) (uint64, error)
	free       func(ptr uint64) error

	// Every slab is on one list by how many of its blocks are free: some
	// (partial), all (empty) or none (full, on no list). get takes from
	// partial slabs first so that empty ones can go back.
	partial, empty slabList
	count          int              // slabs held
	owner          map[uint64]*slab // block address → its slab
	inUse          int              // blocks handed out
	idle           int              // free blocks in all slabs
}

type slab struct {
	base uint64
	free []uint64  // its free blocks
	list *slabList // the list it is on, nil when full
	at   int       // its index there
}

type slabList []*slab

func (l *slabList) add(s *slab) {
	s.list, s.at = l, len(*l)
	*l = append(*l, s)
}

func (l *slabList) remove(s *slab) {
	last := (*l)[len(*l)-1]
	(*l)[s.at], last.at = last, s.at
	(*l)[len(*l)-1] = nil
	*l = (*l)[:len(*l)-1]
	s.list = nil
}

func newSlabs(blockBytes uint64, perSlab, reserve int, alloc func(uint64) (uint64, error), free func(uint64) error) *slabs {
	return &slabs{blockBytes: blockBytes, perSlab: perSlab, reserve: reserve, alloc: alloc, free: free, owner: make(map[uint64]*slab)}
}

// get returns a free block, allocating a slab when none is left.
func (p *slabs) get() (uint64, error) {
	var s *slab
	switch {
	case len(p.partial) > 0:
		s = p.partial[len(p.partial)-1]
	case len(p.empty) > 0:
		s = p.empty[len(p.empty)-1]
	default:
		base, err := p.alloc(p.blockBytes * uint64(p.perSlab))
		if err != nil {
			return 0, err
		}
		s = &slab{base: base}
		for i := p.perSlab - 1; i >= 0; i-- {
			b := base + uint64(i)*p.blockBytes
			p.owner[b] = s
			s.free = append(s.free, b)
		}
		p.empty.add(s)
		p.count++
		p.idle += p.perSlab
	}
	b := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	p.place(s)
	p.inUse++
	p.idle--
	return b, nil
}

// place puts s on the list its free blocks call for.
func (p *slabs) place(s *slab) {
	want := &p.partial
	switch len(s.free) {
	case 0:
		want = nil
	case p.perSlab:
		want = &p.empty
	}
	if s.list == want {
		return
	}
	if s.list != nil {
		s.list.remove(s)
	}
	if want != nil {
		want.add(s)
	}
}

// put takes blocks back and frees the empty slabs that the reserve does not
// need.
func (p *slabs) put(bs []uint64) error {
	for _, b := range bs {
		s := p.owner[b]
		s.free = append(s.free, b)
		p.place(s)
		p.inUse--
		p.idle++
	}
	var firstErr error
	for len(p.empty) > 0 && p.idle-p.perSlab >= p.reserve {
		s := p.empty[len(p.empty)-1]
		p.empty.remove(s)
		for _, b := range s.free {
			delete(p.owner, b)
		}
		p.idle -= p.perSlab
		p.count--
		if err := p.free(s.base); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// bytes is the device memory held in slabs; inUseBytes what caches hold.
func (p *slabs) bytes() uint64      { return uint64(p.count*p.perSlab) * p.blockBytes }
func (p *slabs) inUseBytes() uint64 { return uint64(p.inUse) * p.blockBytes }

// close frees every slab.
func (p *slabs) close() error {
	var firstErr error
	seen := map[*slab]bool{}
	for _, s := range p.owner {
		if seen[s] {
			continue
		}
		seen[s] = true
		if err := p.free(s.base); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.partial, p.empty, p.owner, p.count, p.inUse, p.idle = nil, nil, make(map[uint64]*slab), 0, 0, 0
	return firstErr
}
