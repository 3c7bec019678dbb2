package kvcache

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// ScoreMode is how the frequency score ranks entries.
type ScoreMode uint8

const (
	// ScoreCumulative ranks by the attention an entry has received in total
	// (the paper's rule).
	ScoreCumulative ScoreMode = iota
	// ScoreMean ranks by the attention received per step since the entry was
	// cached, which removes cumulative scores' bias towards old entries.
	ScoreMean
)

// ParseScoreMode reads "cumulative" or "mean".
func ParseScoreMode(s string) (ScoreMode, error) {
	switch s {
	case "cumulative", "":
		return ScoreCumulative, nil
	case "mean", "windowed-mean":
		return ScoreMean, nil
	}
	return 0, fmt.Errorf("unknown score mode %q (want cumulative or mean)", s)
}

// Config is the shape of a cache.
type Config struct {
	Layers, KVHeads int
	Score           ScoreMode
	Seed            uint64 // for the random baseline
	// MaxLen, when set, sizes every head's block table up front so that
	// decoding never grows it (no allocation per token).
	MaxLen int
}

// head is one (layer, KV head)'s ragged store. Entries are not kept in
// position order: eviction moves the last entry into the hole, so removing
// one costs one row copy instead of shifting the rest. Attention is a sum and
// every entry carries its absolute position, so order never matters, except
// that a batch of new tokens is appended in order after everything cached
// before it (causal prefill relies on that).
type head struct {
	blocks  []block
	n       int
	policy  Policy
	evicted []int32    // positions evicted since the last TakeEvicted
	rng     *rand.Rand // the random baseline's, made on first use
	thr     float32    // frequent's last threshold: where kthScore splits the keys
}

// Scratch is working memory for Apply and Observe. Heads may be observed
// concurrently (one goroutine per head), each with its own Scratch.
type Scratch struct {
	keys []float32 // rank keys at or above the head's last threshold, reordered by the selection
	low  []float32 // the others, likewise
	rank []float32 // rank keys in entry order, for the keep pass
}

// Cache is the KV cache of one sequence. Different heads may be attended,
// observed and applied concurrently; anything else is for one goroutine.
// Its Pool is safe for concurrent use.
type Cache struct {
	cfg   Config
	pool  *Pool
	heads []head
	next  int32 // the next position to be appended (the current length)
	// top is one past the highest position appended, Advance or not. A
	// decode step appends and observes every layer before Advance, so the
	// policies must measure the current length from top, not next.
	top     int32
	scratch Scratch // for single-threaded callers (ApplyAll)
	closed  bool
	mirror  Mirror // a device holding the K/V rows (mirror.go), or nil
}

// New makes an empty cache whose heads all use FullPolicy.
func New(cfg Config, pool *Pool) *Cache {
	c := &Cache{cfg: cfg, pool: pool, heads: make([]head, cfg.Layers*cfg.KVHeads)}
	perHead := (cfg.MaxLen + pool.blockEntries - 1) / pool.blockEntries
	for i := range c.heads {
		c.heads[i].policy = FullPolicy
		if perHead > 0 {
			c.heads[i].blocks = make([]block, 0, perHead)
		}
	}
	return c
}

// Config returns the cache's shape.
func (c *Cache) Config() Config { return c.cfg }

// Pool returns the pool the cache draws blocks from.
func (c *Cache) Pool() *Pool { return c.pool }

// Len is the current sequence length: positions appended so far, kept or not.
func (c *Cache) Len() int { return int(c.next) }

func (c *Cache) h(layer, kvHead int) *head { return &c.heads[layer*c.cfg.KVHeads+kvHead] }

// Kept is the number of entries (layer, kvHead) holds.
func (c *Cache) Kept(layer, kvHead int) int { return c.h(layer, kvHead).n }

// KeptAll writes the kept count of every head, layer-major, into dst.
func (c *Cache) KeptAll(dst []uint32) []uint32 {
	dst = dst[:0]
	for i := range c.heads {
		dst = append(dst, uint32(c.heads[i].n))
	}
	return dst
}

// Policy returns the policy of a head.
func (c *Cache) Policy(layer, kvHead int) Policy { return c.h(layer, kvHead).policy }

// SetPolicy sets the policy of a head; it takes effect at the next Apply.
func (c *Cache) SetPolicy(layer, kvHead int, p Policy) { c.h(layer, kvHead).policy = p }

// SetAllPolicies gives every head the same policy.
func (c *Cache) SetAllPolicies(p Policy) {
	for i := range c.heads {
		c.heads[i].policy = p
	}
}

// Bytes is the memory the cache's blocks take: what is actually allocated.
func (c *Cache) Bytes() int64 {
	var nb int64
	for i := range c.heads {
		nb += int64(len(c.heads[i].blocks))
	}
	return nb * c.pool.BlockBytes()
}

// FullBytes is what the same store would hold at the current length if it
// kept every entry.
func (c *Cache) FullBytes() int64 {
	be := int64(c.pool.blockEntries)
	perHead := (int64(c.next) + be - 1) / be
	return perHead * int64(len(c.heads)) * c.pool.BlockBytes()
}

// PrunedRatio is 1 − Σ kept / (layers · kv_heads · t), the spec's definition.
func (c *Cache) PrunedRatio() float64 {
	if c.next == 0 {
		return 0
	}
	var kept int64
	for i := range c.heads {
		kept += int64(c.heads[i].n)
	}
	return 1 - float64(kept)/(float64(len(c.heads))*float64(c.next))
}

// AppendAt caches one token, at offset from the current length, for every
// KV head of a layer: k and v hold KVHeads rows of HeadDim (keys already
// rotated). A batch appends its n tokens in every layer, then Advance(n)
// moves the length on.
func (c *Cache) AppendAt(layer int, offset int, flags Flags, k, v []float32) {
	d := c.pool.headDim
	pos := c.next + int32(offset)
	c.top = max(c.top, pos+1)
	for kh := 0; kh < c.cfg.KVHeads; kh++ {
		if len(k) == 0 { // rows computed on a device that holds them
			c.appendRow(c.h(layer, kh), pos, flags, nil, nil)
			continue
		}
		c.appendRow(c.h(layer, kh), pos, flags, k[kh*d:(kh+1)*d], v[kh*d:(kh+1)*d])
	}
}

// Advance moves the current length forward by n appended positions.
func (c *Cache) Advance(n int) {
	c.next += int32(n)
	c.top = max(c.top, c.next)
}

func (c *Cache) appendRow(h *head, pos int32, flags Flags, k, v []float32) {
	be := c.pool.blockEntries
	if h.n == len(h.blocks)*be {
		h.blocks = append(h.blocks, c.pool.get())
		if c.mirror != nil {
			c.mirrorBlocks(h)
		}
	}
	b, i := &h.blocks[h.n/be], h.n%be
	d := c.pool.headDim
	switch {
	case !b.hasRows() || len(k) == 0: // the rows live on a device
	case c.pool.dtype == F16:
		tensor.F32ToF16s(b.kh[i*d:(i+1)*d], k)
		tensor.F32ToF16s(b.vh[i*d:(i+1)*d], v)
	default:
		copy(b.kf[i*d:(i+1)*d], k)
		copy(b.vf[i*d:(i+1)*d], v)
	}
	b.pos[i], b.flags[i], b.score[i] = pos, flags, 0
	h.n++
}

// Pos and EntryFlags describe entry i of a head (0 ≤ i < Kept).
func (c *Cache) Pos(layer, kvHead, i int) int32 {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	return h.blocks[i/be].pos[i%be]
}

func (c *Cache) EntryFlags(layer, kvHead, i int) Flags {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	return h.blocks[i/be].flags[i%be]
}

// Entries copies the positions and flags of the head's first len(pos)
// entries (len(flags) == len(pos) ≤ Kept) block by block.
func (c *Cache) Entries(layer, kvHead int, pos []int32, flags []Flags) {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	_ = flags[:len(pos)]
	for j0 := 0; j0 < len(pos); j0 += be {
		b := &h.blocks[j0/be]
		copy(pos[j0:min(j0+be, len(pos))], b.pos)
		copy(flags[j0:min(j0+be, len(pos))], b.flags)
	}
}

// Score is entry i's frequency score.
func (c *Cache) Score(layer, kvHead, i int) float32 {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	return h.blocks[i/be].score[i%be]
}

// Attend computes attention for the G query heads that share (layer, kvHead)
// over its first limit entries. q holds G rows of HeadDim; out receives G
// rows; probs (at least G·limit) receives the attention probabilities, row g
// at probs[g*limit:], and lse (nil or G long) their log-normalisers. Only
// kept entries are visited.
//
// The loops run block by block: a block's K (or V) rows are loaded once and
// stay in L1 while every query head of the GQA group uses them, and each
// (block, head) pair is one kernel call rather than one call per entry.
func (c *Cache) Attend(layer, kvHead int, q []float32, groups, limit int, scale float32, out, probs, lse []float32) {
	limit = c.Probs(layer, kvHead, q, groups, limit, scale, probs, lse)
	h := c.h(layer, kvHead)
	d, be := c.pool.headDim, c.pool.blockEntries
	f16 := c.pool.dtype == F16
	clear(out[:groups*d])
	for j0 := 0; j0 < limit; j0 += be {
		b, m := &h.blocks[j0/be], min(be, limit-j0)
		var nextH []uint16 // the kernels prefetch the next block's values
		var nextF []float32
		if j0+be < limit {
			nextH, nextF = h.blocks[j0/be+1].vh, h.blocks[j0/be+1].vf
		}
		for g := 0; g < groups; g++ {
			p, og := probs[g*limit+j0:g*limit+j0+m], out[g*d:(g+1)*d]
			if f16 {
				tensor.AxpyRowsF16(og, b.vh[:m*d], d, p, nextH)
			} else {
				tensor.AxpyRows(og, b.vf[:m*d], d, p, nextF)
			}
		}
	}
}

// Probs computes only the attention probabilities of Attend (profiling
// recomputes them instead of keeping an L×L map). It returns the number of
// entries attended, min(limit, Kept). With lse non-nil, lse[g] receives
// query head g's softmax log-normaliser.
func (c *Cache) Probs(layer, kvHead int, q []float32, groups, limit int, scale float32, probs, lse []float32) int {
	h := c.h(layer, kvHead)
	if limit > h.n {
		limit = h.n
	}
	d, be := c.pool.headDim, c.pool.blockEntries
	f16 := c.pool.dtype == F16
	for j0 := 0; j0 < limit; j0 += be {
		b, m := &h.blocks[j0/be], min(be, limit-j0)
		// The kernels prefetch what is read next: the next block's keys,
		// or after the last, the first block's values (Attend's next read).
		nextH, nextF := h.blocks[0].vh, h.blocks[0].vf
		if j0+be < limit {
			nextH, nextF = h.blocks[j0/be+1].kh, h.blocks[j0/be+1].kf
		}
		for g := 0; g < groups; g++ {
			row, qg := probs[g*limit+j0:g*limit+j0+m], q[g*d:(g+1)*d]
			if f16 {
				tensor.DotRowsF16(row, b.kh[:m*d], d, qg, scale, nextH)
			} else {
				tensor.DotRows(row, b.kf[:m*d], d, qg, scale, nextF)
			}
		}
	}
	for g := 0; g < groups; g++ {
		if lse != nil {
			lse[g] = tensor.SoftmaxLSE(probs[g*limit : (g+1)*limit])
		} else {
			tensor.Softmax(probs[g*limit : (g+1)*limit])
		}
	}
	return limit
}

// Observe is a decode step's bookkeeping for one head after Attend: the
// group's probabilities (G rows of limit) are averaged into the entries'
// scores and the head's policy is re-applied. Full heads keep their scores
// too, though they never rank: a later chat turn may re-profile the head
// onto a policy that ranks by them.
func (c *Cache) Observe(layer, kvHead int, probs []float32, groups, limit int, sc *Scratch) {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	inv := 1 / float32(groups)
	// Attend's rows have stride min(limit, Kept), whatever limit was asked.
	limit = min(limit, h.n)
	for j0 := 0; j0 < limit; j0 += be {
		score := h.blocks[j0/be].score[:min(be, limit-j0)]
		for g := 0; g < groups; g++ {
			tensor.Axpy(inv, probs[g*limit+j0:][:len(score)], score)
		}
	}
	if !h.policy.IsFull() {
		c.Apply(layer, kvHead, sc)
	}
}

// ApplyAll re-applies every head's policy (after a profiled prefill).
func (c *Cache) ApplyAll() {
	for l := 0; l < c.cfg.Layers; l++ {
		for kh := 0; kh < c.cfg.KVHeads; kh++ {
			c.Apply(l, kh, &c.scratch)
		}
	}
}

// AddScores adds attention received to the first len(p) entries' scores.
func (c *Cache) AddScores(layer, kvHead int, p []float32) {
	h := c.h(layer, kvHead)
	be := c.pool.blockEntries
	n := min(len(p), h.n)
	for j0 := 0; j0 < n; j0 += be {
		score := h.blocks[j0/be].score[:min(be, n-j0)]
		for i, x := range p[j0 : j0+len(score)] {
			score[i] += x
		}
	}
}

// Apply re-applies a head's policy at the current length and evicts what it
// no longer keeps. The newest entry is the highest position appended so far:
// Len()−1 after Advance, Len() during a decode step (Observe runs before the
// step's Advance), so t counts the new token either way.
func (c *Cache) Apply(layer, kvHead int, sc *Scratch) {
	h := c.h(layer, kvHead)
	p := h.policy
	if p.IsFull() || h.n == 0 {
		return
	}
	t := int(c.top)
	cur := c.top - 1
	be := c.pool.blockEntries
	window := int32(p.Window.At(t))
	var (
		freqThr  float32   = float32(math.Inf(-1))
		freqTies           = math.MaxInt // entries scoring exactly freqThr still admitted
		ranked   []float32               // entry j's rank key, when kthScore computed them
	)
	if p.Keep&Frequent != 0 {
		k := p.Frequent.At(t)
		if k < h.n {
			freqThr, freqTies = c.kthScore(h, k, cur, sc)
			ranked = sc.rank
		}
		if k == 0 {
			freqThr, freqTies = float32(math.Inf(1)), 0
		}
	}
	keep := func(b *block, i, j int) bool {
		f, pos := b.flags[i], b.pos[i]
		switch {
		case p.Keep&Special != 0 && f&FlagSpecial != 0,
			p.Keep&Punct != 0 && f&FlagPunct != 0,
			p.Keep&Local != 0 && cur-pos < window,
			p.Keep&Sink != 0 && pos < int32(p.Sinks):
			return true
		}
		if p.Keep&Frequent != 0 {
			var s float32
			if ranked != nil {
				s = ranked[j] // the walk never revisits a filled hole
			} else {
				s = rankKey(c.cfg.Score, b.score[i], pos, cur)
			}
			if s > freqThr {
				return true
			}
			if s == freqThr && freqTies > 0 {
				freqTies--
				return true
			}
		}
		// Random keeps everything here and trims to its budget below; without
		// this a random-only policy would evict every entry.
		return p.Keep&Random != 0
	}
	// Walk from the end so a hole is always filled by an entry already judged
	// (entry j is slot i of block bi, counted down: no division per entry).
	for j, bi, i := h.n-1, (h.n-1)/be, (h.n-1)%be; j >= 0; j-- {
		if !keep(&h.blocks[bi], i, j) {
			c.evict(h, j)
		}
		if i--; i < 0 {
			bi, i = bi-1, be-1
		}
	}
	if p.Keep&Random != 0 {
		if h.rng == nil {
			// Seeded per head so heads draw independently yet reproducibly.
			h.rng = rand.New(rand.NewPCG(c.cfg.Seed, uint64(layer*c.cfg.KVHeads+kvHead)))
		}
		for budget := p.Random.At(t); h.n > budget; {
			c.evict(h, h.rng.IntN(h.n))
		}
	}
}

func rankKey(mode ScoreMode, score float32, pos, cur int32) float32 {
	if mode == ScoreMean {
		return score / float32(cur-pos+1)
	}
	return score
}

// kthScore returns the k-th largest rank key of the head (k ≥ 1) and how
// many entries with exactly that key fit within the top k. It leaves every
// entry's key, in entry order, in sc.rank.
//
// Cumulative scores only grow and the budget moves by about one entry a
// step, so the head's previous threshold (h.thr) is a good split (kth): the
// selection then runs over about k keys, or, when the threshold fell below
// it, over the keys under it, finding one of their largest.
func (c *Cache) kthScore(h *head, k int, cur int32, sc *Scratch) (float32, int) {
	be := c.pool.blockEntries
	n := h.n
	sc.rank, sc.keys, sc.low = grow(sc.rank, n), grow(sc.keys, n), grow(sc.low, n)
	r := sc.rank
	for j0 := 0; j0 < n; j0 += be {
		b := &h.blocks[j0/be]
		for i := range min(be, n-j0) {
			r[j0+i] = rankKey(c.cfg.Score, b.score[i], b.pos[i], cur)
		}
	}
	split := float32(0) // mean keys fall as entries age: no split
	if c.cfg.Score == ScoreCumulative {
		split = h.thr
	}
	thr, ties := kth(r, sc.keys, sc.low, k, split)
	h.thr = thr
	return thr, ties
}

// kth returns the k-th largest of keys (1 ≤ k ≤ len(keys)) and how many of
// the keys equal to it fit within the top k, using hi and lo (each as long
// as keys) as scratch: keys at or above split go to hi, the rest to lo, and
// the selection runs in the part that holds the k-th. A split ≤ 0 takes
// all (keys are never negative).
func kth(keys, hi, lo []float32, k int, split float32) (float32, int) {
	nh, nl := len(keys), 0
	if split > 0 {
		nh = 0
		for _, key := range keys { // by a comparison, not a branch
			up := b2i(key >= split)
			hi[nh], lo[nl] = key, key
			nh, nl = nh+up, nl+1-up
		}
	} else {
		copy(hi, keys)
	}
	var thr float32
	above := 0
	if nh >= k {
		// Every key above the k-th is among the first k−1 after selecting.
		thr = quickselect(hi[:nh], k-1)
		for _, v := range hi[:k-1] {
			above += b2i(v > thr)
		}
	} else {
		// The k-th is below the split: every key at or above it is above.
		m := k - nh
		thr = quickselect(lo[:nl], m-1)
		above = nh
		for _, v := range lo[:m-1] {
			above += b2i(v > thr)
		}
	}
	return thr, k - above
}

// b2i is 1 for true: the compiler makes it a flag set, not a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// grow returns s with length n, reallocated only when its capacity is short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// quickselect returns the element that would be at index k if s were sorted
// in descending order. It reorders s so that s[:k] ≥ s[k] ≥ s[k+1:].
func quickselect(s []float32, k int) float32 {
	lo, hi := 0, len(s)-1
	for lo < hi {
		p := s[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for s[i] > p {
				i++
			}
			for s[j] < p {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return s[k]
		}
	}
	return s[k]
}

// evict removes entry j by moving the last entry into its place, and returns
// the last block to the pool once it is empty.
func (c *Cache) evict(h *head, j int) {
	be, d := c.pool.blockEntries, c.pool.headDim
	last := h.n - 1
	bj, ij := &h.blocks[j/be], j%be
	h.evicted = append(h.evicted, bj.pos[ij])
	if j != last {
		bl, il := &h.blocks[last/be], last%be
		if c.mirror != nil {
			c.mirrorMove(h, j, last)
		}
		if !bj.hasRows() || !bl.hasRows() {
			// the rows live on a device
		} else if c.pool.dtype == F16 {
			copy(bj.kh[ij*d:(ij+1)*d], bl.kh[il*d:(il+1)*d])
			copy(bj.vh[ij*d:(ij+1)*d], bl.vh[il*d:(il+1)*d])
		} else {
			copy(bj.kf[ij*d:(ij+1)*d], bl.kf[il*d:(il+1)*d])
			copy(bj.vf[ij*d:(ij+1)*d], bl.vf[il*d:(il+1)*d])
		}
		bj.pos[ij], bj.flags[ij], bj.score[ij] = bl.pos[il], bl.flags[il], bl.score[il]
	}
	h.n--
	if nb := (h.n + be - 1) / be; nb < len(h.blocks) {
		c.pool.put(h.blocks[nb:])
		clear(h.blocks[nb:])
		h.blocks = h.blocks[:nb]
		if c.mirror != nil {
			c.mirrorBlocks(h)
		}
	}
}

// TakeEvicted returns the positions a head evicted since the last call, in
// eviction order. The slice is reused by the next Apply.
func (c *Cache) TakeEvicted(layer, kvHead int) []int32 {
	h := c.h(layer, kvHead)
	e := h.evicted
	h.evicted = h.evicted[:0]
	return e
}

// Fork copies the cache: both copies then evolve independently (compare mode
// shares one prefill and decodes two policies from it). It fails only when
// the mirror cannot copy the device's rows (device memory), holding nothing.
func (c *Cache) Fork() (*Cache, error) {
	f := New(c.cfg, c.pool)
	f.next, f.top = c.next, c.top
	for hi := range c.heads {
		src, dst := &c.heads[hi], &f.heads[hi]
		dst.policy, dst.n = src.policy, src.n
		for _, b := range src.blocks {
			nb := c.pool.get()
			copy(nb.pos, b.pos)
			copy(nb.flags, b.flags)
			copy(nb.score, b.score)
			if !nb.hasRows() || !b.hasRows() {
				// the rows live on a device: the mirror's Fork copies them
			} else if c.pool.dtype == F16 {
				copy(nb.kh, b.kh)
				copy(nb.vh, b.vh)
			} else {
				copy(nb.kf, b.kf)
				copy(nb.vf, b.vf)
			}
			dst.blocks = append(dst.blocks, nb)
		}
	}
	if c.mirror != nil {
		m, err := c.mirror.Fork(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.mirror = m
	}
	return f, nil
}

// Close returns every block to the pool. The cache must not be used after.
func (c *Cache) Close() {
	if c.closed {
		return
	}
	c.closed = true
	if c.mirror != nil {
		c.mirror.Close()
	}
	for i := range c.heads {
		c.pool.put(c.heads[i].blocks)
		c.heads[i].blocks, c.heads[i].n = nil, 0
	}
}
