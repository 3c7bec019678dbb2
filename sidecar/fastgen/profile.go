package fastgen

import (
	"math"
	"slices"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Mass is the mean attention mass a head puts on each token category (the
// paper's Fig. 4). A key counts once, in the first category that holds it:
// special, then punct, then local (inside the window), then other.
type Mass struct {
	Special, Punct, Local, Other float64
}

// HeadProfile is the profiling result of one (layer, KV head).
type HeadProfile struct {
	Layer, KVHead int
	Policy        kvcache.Policy
	// Recovery holds the recovery of each candidate, in candidate order
	// (the last is full, always 1).
	Recovery []float64
	Mass     Mass
}

// Profile is the result of profiling one prompt (or one chat turn).
type Profile struct {
	Candidates []kvcache.Policy
	Heads      []HeadProfile // layer-major
	Threshold  float64
}

// Choose returns the index of the first candidate whose recovery reaches t.
// Candidates are supersets in order, so that is the cheapest. At t ≥ 1 only
// the last (full) qualifies: recovery on the prompt cannot promise that a
// pruning policy stays lossless during decode.
func Choose(recovery []float64, t float64) int {
	last := len(recovery) - 1
	if t >= 1 {
		return last
	}
	for i, r := range recovery[:last] {
		if r >= t {
			return i
		}
	}
	return last
}

// Profiler profiles the prompt rows of one prefill, layer by layer. Pass 1
// takes each attention row as the forward pass computes it (Row): column
// sums (the frequency scores), category masses, each candidate's kept mass
// as if frequent kept nothing, and the row's softmax normaliser; it keeps
// the layer's rows when they fit in maxStoreBytes. Pass 2 (in Layer)
// finds each row's frequent set under the final ranking, sums its
// probabilities in the kept row (or, for a layer too large to keep,
// recomputes just those logits from the queries), and moves their mass to
// the frequent candidate where it keeps them earlier. Layer then
// writes each head's chosen policy and scores into the cache; the caller
// applies them once the prefill is done (ApplyAll).
//
// Layer also works alone (no Begin/Row): it then recomputes pass 1's rows
// from the queries.
type Profiler struct {
	opt        Options
	candidates []kvcache.Policy
	fixed      *kvcache.Policy
	heads      []HeadProfile

	nHeads, nKV, headDim int
	n                    int   // prompt rows this turn
	basePos              int32 // absolute position of row 0
	window               int32
	start                int   // first row counted in recovery
	freqK                []int // per prompt row: how many entries frequent keeps
	// rank of each component in the candidate order: an entry is kept by
	// candidate k iff one of its components has rank ≤ k.
	rankSpecial, rankPunct, rankFreq, rankLocal int

	// Pass 1's counted rows of the layer (each head's, bucketRows per
	// prompt row) in half precision, kept for pass 2 when storing:
	// reading a probability costs a load where recomputing it costs a
	// head_dim dot product. Writing them out is what keeping costs, so
	// they are kept in 16 bits; a probability's rounding error is then
	// under 2⁻¹¹ of it (at most 3·10⁻⁸ below 6·10⁻⁵), and a row's mass
	// under 5·10⁻⁴ of it, far inside a threshold's margin.
	store      []uint16
	storing    bool
	storeLimit int // bytes; maxStoreBytes but for tests

	// the layer being profiled
	layer int
	begun bool
	cache *kvcache.Cache
	scale float64     // the forward pass's attention scale
	hs    []headState // per KV head
	acc   [][]headAcc // per worker, per KV head
	wrow  [][]float32 // per worker: a group-mean row
	pass2 []*headWorker
	plan  LayerPlan // Plan's, reused layer to layer
}

// headState is what pass 1 learns of one head's entries and rows.
type headState struct {
	total, base int
	off         int    // where the head's rows start in the profiler's store
	first       []int8 // per entry: the rank of its class components
	pos         []int32
	flags       []kvcache.Flags
	static      []int32   // entries that are special or punct, ascending
	lse         []float64 // per prompt row and query head: softmax log-normaliser
}

// headAcc is one worker's pass-1 sums for one head.
type headAcc struct {
	colsum []float32 // as the cache's scores: float32
	mass   Mass
	sums   []float64 // per bucket row × candidate: mass first kept there
}

// headWorker is one goroutine's scratch for Layer.
type headWorker struct {
	probs, row []float32
	order      []int32
	lse        []float32
	sel        []int32 // a tile's entries of one class rank: index, rank, position
	rank       []int32
	rankB      []int32 // keptRows: ranks of one class's entries, per class
	avail      []int32
	logits     []float32
	keys       []float32 // the head's keys, contiguous (KeysF32)
	tileQ      []float32 // a tile's queries, contiguous
	sorter     radix
}

// NewProfiler prepares to profile n new prompt tokens starting at absolute
// position basePos (> 0 in a later chat turn, whose new rows also attend to
// what earlier turns kept). nHeads query heads share nKV KV heads. With fixed
// set, every head gets that policy (a baseline) and only the scores and
// masses are measured.
func NewProfiler(opt Options, layers, nHeads, nKV, headDim, n, basePos int, fixed *kvcache.Policy) *Profiler {
	p := &Profiler{
		opt: opt, candidates: opt.Candidates(n), fixed: fixed,
		nHeads: nHeads, nKV: nKV, headDim: headDim, n: n, basePos: int32(basePos),
		storeLimit: maxStoreBytes,
	}
	p.window = int32(p.candidates[0].Window.Tokens)
	p.freqK = make([]int, n)
	for i := range p.freqK {
		p.freqK[i] = kvcache.Budget{Ratio: opt.RFreq}.At(basePos + i + 1)
	}
	p.heads = make([]HeadProfile, 0, layers*nKV)
	if opt.RecoveryRows > 0 && opt.RecoveryRows < n {
		p.start = n - opt.RecoveryRows
	}
	never := len(p.candidates) - 1 // only full keeps it
	p.rankSpecial, p.rankPunct, p.rankFreq, p.rankLocal = never, never, never, never
	for k, c := range opt.Order {
		switch c {
		case kvcache.Special:
			p.rankSpecial = k
		case kvcache.Punct:
			p.rankPunct = k
		case kvcache.Frequent:
			p.rankFreq = k
		case kvcache.Local:
			p.rankLocal = k
		}
	}
	p.hs = make([]headState, nKV)
	return p
}

// maxStoreBytes bounds the memory pass 1 keeps for pass 2 (one layer's rows,
// reused by the next): a 512-token prompt on the 110M shape needs 3 MiB,
// 2k tokens 50 MiB; a longer prompt's layers recompute their frequent
// sets' logits instead.
const maxStoreBytes = 64 << 20

func (p *Profiler) groups() int { return p.nHeads / p.nKV }

// rowOff is where counted row i (≥ p.start) of head h starts in the store:
// after the rows before it, row i' holding bucketRows·(base+i'+1) values.
func (p *Profiler) rowOff(h *headState, i int) int {
	s := p.start
	return h.off + p.bucketRows()*((i-s)*h.base+(i*(i+1)-s*(s+1))/2)
}

// bucketRows is 1 (the group's mean) or, for AggMin, one per query head.
func (p *Profiler) bucketRows() int {
	if p.opt.GQA == AggMin {
		return p.groups()
	}
	return 1
}

// Begin prepares a layer: the entries' classes and positions, and zeroed
// pass-1 sums for each of workers goroutines. scale is the attention's.
func (p *Profiler) Begin(layer, workers int, cache *kvcache.Cache, scale float32) {
	p.layer, p.begun, p.cache, p.scale = layer, true, cache, float64(scale)
	nc := len(p.candidates)
	p.entries(layer, cache)
	stored := 0
	for kh := range p.hs {
		h := &p.hs[kh]
		h.off = stored
		stored = p.rowOff(h, p.n)
	}
	p.storing = p.fixed == nil && stored*2 <= p.storeLimit
	if p.storing {
		// Whole vectors past the last row: the kernel reads them.
		p.store = grow(p.store, stored+8)
	}
	for len(p.acc) < workers {
		p.acc = append(p.acc, make([]headAcc, p.nKV))
		p.wrow = append(p.wrow, nil)
	}
	most := 0
	for kh := range p.hs {
		most = max(most, p.hs[kh].total)
	}
	for w := 0; w < workers; w++ {
		p.wrow[w] = grow(p.wrow[w], most)
		for kh := range p.acc[w] {
			a := &p.acc[w][kh]
			a.colsum = grow(a.colsum, p.hs[kh].total)
			clear(a.colsum)
			a.sums = grow(a.sums, nc*p.bucketRows())
			clear(a.sums)
			a.mass = Mass{}
		}
	}
}

// entries reads each KV head's entries of layer: positions, classes, and
// the candidate each entry's class joins.
func (p *Profiler) entries(layer int, cache *kvcache.Cache) {
	never := int8(len(p.candidates) - 1)
	for kh := range p.hs {
		h := &p.hs[kh]
		h.total = cache.Kept(layer, kh)
		h.base = h.total - p.n
		h.first = grow(h.first, h.total)
		h.pos = grow(h.pos, h.total+8)[:h.total] // capacity for whole vectors
		h.flags = grow(h.flags, h.total)
		h.lse = grow(h.lse, p.n*p.groups())
		cache.Entries(layer, kh, h.pos, h.flags)
		for j, f := range h.flags {
			r := never
			if f&kvcache.FlagSpecial != 0 {
				r = min(r, int8(p.rankSpecial))
			}
			if f&kvcache.FlagPunct != 0 {
				r = min(r, int8(p.rankPunct))
			}
			h.first[j] = r
		}
		h.static = h.static[:0]
		for j, f := range h.flags[:h.total] {
			if f&(kvcache.FlagSpecial|kvcache.FlagPunct) != 0 {
				h.static = append(h.static, int32(j))
			}
		}
	}
}

// Row is pass 1 for prompt row token of one head: probs holds the group's
// attention over the head's first limit entries, lse each query head's
// softmax log-normaliser (with it pass 2 recomputes single probabilities
// for a layer too large to keep).
func (p *Profiler) Row(worker, layer, kvHead, token int, probs, lse []float32, groups, limit int) {
	p.accumulate(&p.acc[worker][kvHead], &p.hs[kvHead], p.wrow[worker], token, probs, lse, limit)
}

func (p *Profiler) accumulate(a *headAcc, h *headState, scratch []float32, i int, probs, lse []float32, limit int) {
	groups := p.groups()
	for g := range groups {
		h.lse[i*groups+g] = float64(lse[g])
	}
	row := probs[:limit]
	if groups > 1 {
		row = meanRow(scratch, probs, groups, limit)
	}
	tensor.Axpy(1, row, a.colsum[:limit])
	cur := p.basePos + int32(i)
	// This turn's entries sit in position order after the earlier turns'
	// (h.base of them, all older than this turn), so the window is a
	// contiguous range of this turn's entries, plus, for the first rows
	// only, earlier entries close enough to this turn's start.
	lo := max(h.base, h.base+i+1-int(p.window))
	cs := p.classSums(h, row, lo, limit, cur)
	early := p.early(h, row, i, cur)
	local := float64(tensor.Sum(row[lo:limit])) - cs.inWindow
	m := Mass{Special: cs.special, Punct: cs.punct, Local: local + early}
	m.Other = max(0, 1-m.Special-m.Punct-m.Local)
	a.mass.Special += m.Special
	a.mass.Punct += m.Punct
	a.mass.Local += m.Local
	a.mass.Other += m.Other
	if p.fixed != nil || i < p.start {
		return
	}
	if p.storing {
		if p.bucketRows() == 1 {
			tensor.F32ToF16s(p.store[p.rowOff(h, i):], row)
		} else {
			tensor.F32ToF16s(p.store[p.rowOff(h, i):], probs[:groups*limit])
		}
	}
	// Each entry's mass goes to the first candidate that keeps it: class
	// entries by their rank (or local's, if earlier and in the window), the
	// window's other entries to local; the rest only full keeps (until
	// pass 2 finds frequent keeping some of them).
	nc := len(p.candidates)
	for g := 0; g < p.bucketRows(); g++ {
		if p.bucketRows() > 1 {
			r := probs[g*limit : (g+1)*limit]
			cs = p.classSums(h, r, lo, limit, cur)
			early = p.early(h, r, i, cur)
			local = float64(tensor.Sum(r[lo:limit])) - cs.inWindow
		}
		kept := cs.special + cs.punct + local + early
		bucket := a.sums[g*nc : (g+1)*nc]
		bucket[p.rankLocal] += local + early + cs.toLocal
		bucket[p.rankSpecial] += cs.toSpecial
		bucket[p.rankPunct] += cs.toPunct
		bucket[nc-1] += max(0, 1-kept)
	}
}

// classSums is what one row puts on the head's class (special or punct)
// entries among its first limit: by class, the part inside the window
// (from lo), and by the bucket that first keeps each (its class rank's, or
// local's when that comes first and the entry is in the window).
type classSums struct {
	special, punct, inWindow    float64
	toLocal, toSpecial, toPunct float64
}

func (p *Profiler) classSums(h *headState, r []float32, lo, limit int, cur int32) classSums {
	var s classSums
	for _, j := range h.static {
		if int(j) >= limit {
			break
		}
		v := float64(r[j])
		if h.flags[j]&kvcache.FlagSpecial != 0 {
			s.special += v
		} else {
			s.punct += v
		}
		if int(j) >= lo {
			s.inWindow += v
		}
		switch k := h.first[j]; {
		case cur-h.pos[j] < p.window && int8(p.rankLocal) < k:
			s.toLocal += v
		case k == int8(p.rankSpecial):
			s.toSpecial += v
		default:
			s.toPunct += v
		}
	}
	return s
}

// early is what row i (at position cur) puts on earlier turns' non-class
// entries that are still inside its window (only the first rows of a
// turn reach back that far).
func (p *Profiler) early(h *headState, r []float32, i int, cur int32) float64 {
	var e float64
	if i < int(p.window) {
		for j := 0; j < h.base; j++ {
			if cur-h.pos[j] < p.window && h.flags[j]&(kvcache.FlagSpecial|kvcache.FlagPunct) == 0 {
				e += float64(r[j])
			}
		}
	}
	return e
}

// Layer finishes one layer, heads in parallel on pool's workers (the
// forward pass's own, already awake; nil: a pool of its own): pass 1's sums
// merged over workers (or recomputed here when no rows were seen), pass 2,
// the choice, and the head's scores and policy written to the cache. q holds
// the n prompt rows of post-RoPE queries (nHeads·headDim each, row stride
// qStride); scale must be the forward pass's (1/√headDim).
func (p *Profiler) Layer(layer int, q []float32, qStride int, cache *kvcache.Cache, scale float32, pool *tensor.Pool) {
	t := &layerTask{p: p, layer: layer, q: q, qStride: qStride, cache: cache, scale: scale}
	t.recompute = !p.begun || p.layer != layer
	if t.recompute {
		p.Begin(layer, 1, cache, scale)
	}
	start := len(p.heads)
	p.heads = append(p.heads, make([]HeadProfile, p.nKV)...)
	t.results = p.heads[start:]
	if pool == nil { // a caller without a CPU forward pass (the GPU's)
		pool = tensor.NewPool(0)
		defer pool.Close()
	}
	for len(p.pass2) < pool.Threads() {
		p.pass2 = append(p.pass2, &headWorker{})
	}
	pool.Parallel(p.nKV, 1, t)
	p.begun = false
}

// layerTask is Layer's work, one KV head an item.
type layerTask struct {
	p         *Profiler
	layer     int
	q         []float32
	qStride   int
	cache     *kvcache.Cache
	scale     float32
	recompute bool
	results   []HeadProfile
}

func (t *layerTask) Run(worker, lo, hi int) {
	p, w, cache, layer := t.p, t.p.pass2[worker], t.cache, t.layer
	groups := p.groups()
	qRow := func(kh, i int) []float32 { return t.q[i*t.qStride+kh*groups*p.headDim:][:groups*p.headDim] }
	for kh := lo; kh < hi; kh++ {
		h := &p.hs[kh]
		a := &p.acc[0][kh]
		if t.recompute {
			w.probs = grow(w.probs, groups*h.total)
			w.row = grow(w.row, h.total)
			w.lse = grow(w.lse, groups)
			for i := 0; i < p.n; i++ {
				limit := cache.Probs(layer, kh, qRow(kh, i), groups, h.base+i+1, t.scale, w.probs[:groups*(h.base+i+1)], w.lse)
				p.accumulate(a, h, w.row, i, w.probs[:groups*limit], w.lse, limit)
			}
		}
		for _, o := range p.acc[1:] {
			b := &o[kh]
			tensor.Axpy(1, b.colsum[:h.total], a.colsum[:h.total])
			for j, v := range b.sums {
				a.sums[j] += v
			}
			a.mass.Special += b.mass.Special
			a.mass.Punct += b.mass.Punct
			a.mass.Local += b.mass.Local
			a.mass.Other += b.mass.Other
		}
		t.results[kh] = p.finish(w, layer, kh, h, a, func(i int) []float32 { return qRow(kh, i) }, cache)
	}
}

// finish runs pass 2 for one head, chooses its policy, and writes its
// scores and policy to the cache.
func (p *Profiler) finish(w *headWorker, layer, kh int, h *headState, a *headAcc, qRow func(int) []float32, cache *kvcache.Cache) HeadProfile {
	if p.fixed == nil {
		p.frequentPass(w, layer, kh, h, a, qRow, cache)
	}
	return p.conclude(layer, kh, a.mass, a.sums, a.colsum[:h.total], cache)
}

// conclude turns one head's sums into its profile: mass (summed over the
// prompt rows), sums (bucket rows × candidates: the mass each counted row
// first keeps at each candidate) and the entries' column sums, which become
// the head's scores; it writes the scores and the chosen policy to the cache.
func (p *Profiler) conclude(layer, kh int, mass Mass, sums []float64, colsum []float32, cache *kvcache.Cache) HeadProfile {
	nc := len(p.candidates)
	hp := HeadProfile{Layer: layer, KVHead: kh, Recovery: make([]float64, nc)}
	inv := 1 / float64(p.n)
	hp.Mass = Mass{mass.Special * inv, mass.Punct * inv, mass.Local * inv, mass.Other * inv}
	if p.fixed != nil {
		hp.Policy = *p.fixed
	} else {
		counted := float64(p.n - p.start)
		for c := range hp.Recovery {
			hp.Recovery[c] = math.Inf(1)
		}
		// Candidates are supersets in order: candidate c keeps the mass
		// first kept by any candidate up to c.
		for g := 0; g < p.bucketRows(); g++ {
			var acc float64
			for c := 0; c < nc; c++ {
				acc += sums[g*nc+c]
				hp.Recovery[c] = math.Min(hp.Recovery[c], acc/counted)
			}
		}
		hp.Recovery[nc-1] = 1
		hp.Policy = p.candidates[Choose(hp.Recovery, p.opt.Threshold)]
	}
	// The head's scores start as the prompt's column sums (the paper's rule).
	cache.AddScores(layer, kh, colsum)
	cache.SetPolicy(layer, kh, hp.Policy)
	return hp
}

// frequentPass is pass 2: for every counted row, the top ceil(r_f·t)
// entries by final column sum that the row can see; each one that frequent
// keeps earlier than its class or the window would moves its mass to
// frequent's bucket. The mass comes from the row pass 1 kept (keptRows)
// or, for a layer too large to keep, is recomputed from one logit per
// entry and the row's normaliser (recomputedRows).
func (p *Profiler) frequentPass(w *headWorker, layer, kh int, h *headState, a *headAcc, qRow func(int) []float32, cache *kvcache.Cache) {
	nc := len(p.candidates)
	colsum := a.colsum[:h.total]
	w.order = w.sorter.descending(colsum, w.order)
	// rank[j] is entry j's place in the final ranking; avail holds, in
	// order, the ranks of the entries row i can see (index < limit). Rows
	// grow by one entry each, inserted at its rank, so each row's frequent
	// set is a prefix of avail rather than a scan of the whole ranking.
	w.rank = grow(w.rank, h.total)
	for r, j := range w.order {
		w.rank[j] = int32(r)
	}
	w.avail = w.avail[:0]
	for j := 0; j < h.base+p.start; j++ {
		w.see(int32(j))
	}
	// Frequent moves mass only from a bucket after its own: entries whose
	// class rank is before frequent's never move. The rest go by class
	// rank b (special's, punct's, or none: full's): outside the window
	// their mass sits in b, inside in min(b, local).
	var from []int8
	for _, r := range []int{p.rankSpecial, p.rankPunct, nc - 1} {
		if int8(r) > int8(p.rankFreq) && !slices.Contains(from, int8(r)) {
			from = append(from, int8(r))
		}
	}
	if p.storing {
		p.keptRows(w, h, a, from)
	} else {
		p.recomputedRows(w, layer, kh, h, a, qRow, cache, from)
	}
}

// see adds entry j to the entries the next row can see.
func (w *headWorker) see(j int32) {
	r := w.rank[j]
	at, _ := slices.BinarySearch(w.avail, r)
	w.avail = slices.Insert(w.avail, at, r)
}

// threshold is the rank of the last entry of the top k of those seen so
// far, −1 for none: the row's frequent set is the seen entries ranked up
// to it.
func (w *headWorker) threshold(k int) int32 {
	if k = min(k, len(w.avail)); k > 0 {
		return w.avail[k-1]
	}
	return -1
}

// keptRows takes each row's frequent mass from its kept row in one pass:
// every entry the row sees, counted where its rank (in a copy holding
// only class b's entries) is within the row's threshold. Contiguous
// vector loads over the whole row cost less than gathering the ~r_f of it
// that counts, and need no selection of the frequent sets.
func (p *Profiler) keptRows(w *headWorker, h *headState, a *headAcc, from []int8) {
	nc, rows := len(p.candidates), p.bucketRows()
	freq, local := int8(p.rankFreq), int8(p.rankLocal)
	// Padded past total so the kernel reads whole vectors.
	stride := h.total + 8
	w.rankB = grow(w.rankB, len(from)*stride)
	for bi, b := range from {
		rb := w.rankB[bi*stride : (bi+1)*stride]
		for j := range rb {
			rb[j] = math.MaxInt32
			if j < h.total && h.first[j] == b {
				rb[j] = w.rank[j]
			}
		}
	}
	for i := p.start; i < p.n; i++ {
		w.see(int32(h.base + i))
		thr := w.threshold(p.freqK[i])
		limit := h.base + i + 1
		cur := p.basePos + int32(i)
		off := p.rowOff(h, i)
		for bi, b := range from {
			rb := w.rankB[bi*stride:][:limit]
			for g := 0; g < rows; g++ {
				x := p.store[off+g*limit : off+(g+1)*limit]
				lo, hi := tensor.SumMaskedF16(x, rb, h.pos[:limit], thr, cur-p.window+1)
				p.move(a.sums[g*nc:(g+1)*nc], b, min(b, local), freq, float64(lo), float64(hi))
			}
		}
	}
}

// recomputedRows goes in tiles of tileCols query columns (rows × the
// group's heads): the union of a tile's frequent sets is scored once per
// column from keys still in L1, and each column's mass comes out of one
// masked vector exp.
func (p *Profiler) recomputedRows(w *headWorker, layer, kh int, h *headState, a *headAcc, qRow func(int) []float32, cache *kvcache.Cache, from []int8) {
	groups, nc, rows := p.groups(), len(p.candidates), p.bucketRows()
	freq, local := int8(p.rankFreq), int8(p.rankLocal)
	d := p.headDim
	w.sel = grow(w.sel, 3*(h.total+8))
	w.keys = cache.KeysF32(layer, kh, w.keys)
	tileRows := max(1, tileCols/groups)
	var thr, curs [tileCols]int32
	for i0 := p.start; i0 < p.n; i0 += tileRows {
		nr := min(tileRows, p.n-i0)
		maxThr := int32(-1)
		for r := 0; r < nr; r++ {
			i := i0 + r
			w.see(int32(h.base + i))
			curs[r] = p.basePos + int32(i)
			thr[r] = w.threshold(p.freqK[i])
			maxThr = max(maxThr, thr[r])
		}
		// The tile's queries, d apart, column r·groups+g.
		w.tileQ = grow(w.tileQ, nr*groups*d)
		for r := 0; r < nr; r++ {
			copy(w.tileQ[r*groups*d:(r+1)*groups*d], qRow(i0+r))
		}
		end, _ := slices.BinarySearch(w.avail, maxThr+1)
		union := w.avail[:end]
		for _, b := range from {
			n := 0
			js, rk, ps := w.sel[:h.total+8], w.sel[h.total+8:2*(h.total+8)], w.sel[2*(h.total+8):]
			for _, r := range union {
				j := w.order[r]
				js[n], rk[n], ps[n] = j, r, h.pos[j]
				n += b2i(h.first[j] == b)
			}
			if n == 0 {
				continue
			}
			// Padded to whole vectors with entries no row counts (rank
			// and position beyond every bound), so the kernels run no
			// scalar tails.
			for ; n%8 != 0; n++ {
				js[n], rk[n], ps[n] = 0, math.MaxInt32, math.MaxInt32
			}
			js, rk, ps = js[:n], rk[:n], ps[:n]
			inOld := min(b, local)
			cols := nr * groups
			w.logits = grow(w.logits, cols*n)
			tensor.DotRowsIdxN(w.logits, w.keys, d, js, w.tileQ[:cols*d], cols, float32(p.scale))
			for r := 0; r < nr; r++ {
				i := i0 + r
				// The selection is in rank order: row r's frequent
				// entries are a prefix of it.
				m := prefix(rk, thr[r])
				var outSum, inSum float64
				for g := 0; g < groups; g++ {
					c := r*groups + g
					lo, hi := tensor.ExpSumMasked(w.logits[c*n:c*n+m], rk[:m], ps[:m], float32(h.lse[i*groups+g]), thr[r], curs[r], curs[r]-p.window+1)
					if rows > 1 {
						p.move(a.sums[g*nc:(g+1)*nc], b, inOld, freq, float64(lo), float64(hi))
					}
					outSum += float64(lo)
					inSum += float64(hi)
				}
				if rows == 1 {
					p.move(a.sums[:nc], b, inOld, freq, outSum/float64(groups), inSum/float64(groups))
				}
			}
		}
	}
}

// tileCols is recomputedRows' query columns per tile.
const tileCols = 8

// prefix is how many of the ascending ranks are ≤ thr, rounded up to whole
// vectors of 8 (the entries past it are masked anyway; rk is padded).
func prefix(rk []int32, thr int32) int {
	m, _ := slices.BinarySearch(rk, thr+1)
	return min(len(rk), (m+7)&^7)
}

// move shifts mass frequent keeps earlier into its bucket: out (outside the
// window) from bucket b, in (inside) from bucket inOld when that is after
// frequent's.
func (p *Profiler) move(sums []float64, b, inOld, freq int8, out, in float64) {
	sums[b] -= out
	sums[freq] += out
	if inOld > freq {
		sums[inOld] -= in
		sums[freq] += in
	}
}

// radix sorts column sums: a few microseconds for a head's prompt, where a
// comparison sort took tens, once per head and layer.
type radix struct {
	keys, keys2   []uint32
	order, order2 []int32
}

// descending returns (in dst's storage) the indices of x by descending
// value, ties to the lower index: a stable LSD radix sort of the values'
// complemented bits, which order as the values do since x ≥ 0.
func (r *radix) descending(x []float32, dst []int32) []int32 {
	n := len(x)
	r.keys, r.keys2 = grow(r.keys, n), grow(r.keys2, n)
	r.order, r.order2 = grow(dst, n), grow(r.order2, n)
	for j, v := range x {
		r.keys[j], r.order[j] = ^math.Float32bits(v), int32(j)
	}
	for shift := uint(0); shift < 32; shift += 8 {
		var count [257]int
		for _, k := range r.keys {
			count[(k>>shift)&0xff+1]++
		}
		if count[(r.keys[0]>>shift)&0xff+1] == n {
			continue // one digit value: the pass would not move anything
		}
		for b := 1; b < 257; b++ {
			count[b] += count[b-1]
		}
		for m, k := range r.keys {
			at := &count[(k>>shift)&0xff]
			r.keys2[*at], r.order2[*at] = k, r.order[m]
			*at++
		}
		r.keys, r.keys2 = r.keys2, r.keys
		r.order, r.order2 = r.order2, r.order
	}
	return r.order
}

// b2i is 1 for true: the compiler makes it a flag set, not a branch.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// meanRow averages the group's rows of probs (groups > 1) into dst.
func meanRow(dst, probs []float32, groups, limit int) []float32 {
	row := dst[:limit]
	copy(row, probs[:limit])
	for g := 1; g < groups; g++ {
		tensor.Axpy(1, probs[g*limit:(g+1)*limit], row)
	}
	tensor.Scale(1/float32(groups), row)
	return row
}

// Result returns the profile of every layer profiled so far.
func (p *Profiler) Result() *Profile {
	return &Profile{Candidates: p.candidates, Heads: p.heads, Threshold: p.opt.Threshold}
}

// grow returns s with length n, reallocated only when its capacity is short:
// the profiler's scratch lives as long as it does and is reused per head.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
