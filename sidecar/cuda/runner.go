//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"runtime"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// runner is one sequence's device working memory (model.Runner).
type runner struct {
	b *Backend
	m *model.Model
	w *devModel
	c model.Config

	batch, logitRows   int
	x, xb, xb2, q, att cu.DevicePtr // batch × dim
	k, v               cu.DevicePtr // (layers when host rows) × batch × kvDim
	hb, hb2            cu.DevicePtr // batch × hidden
	lse                cu.DevicePtr // batch × heads
	cos, sin, tokens   cu.DevicePtr
	logits             cu.DevicePtr // logitRows × vocab
	kept, offs, delta  cu.DevicePtr
	bufs               []cu.DevicePtr // what grow allocated

	keptH, offsH    []int32
	tokH            []int32
	cosH, sinH      []float32
	logitsH, deltaH []float32
	kH, vH, qH      []float32
	scs             []kvcache.Scratch // one per applyScores worker
	applyPool       *tensor.Pool      // applyScores' workers
	apply           applyTask

	stats     Stats
	stepStart time.Time
	launch0   int

	// the decode path (decode.go)
	plan                     attnPlan
	fused                    bool // every matrix fits matvec (decode path)
	part, count, lseAll, raw cu.DevicePtr
	graphs                   []*graph

	prof profBufs // the device profiling pass (profile_dev.go)

	closed bool // by Close: its buffers are gone
}

// Stats say where a runner's wall time went: how long the host took to
// enqueue the steps' work, how long it then waited for the device, and
// what it did after (copying results back, applying policies). Decode is
// launch-bound when Enqueue is the larger share.
type Stats struct {
	Steps, Launches     int
	Enqueue, Wait, Host time.Duration // Host: after the sync (copies back, policies)
}

// Close releases the runner's device buffers and host threads now (a
// finished session); the finalizer does it for a runner dropped unclosed.
func (r *runner) Close() {
	runtime.SetFinalizer(r, nil)
	r.closed = true
	r.release()
}

func (r *runner) release() {
	if r.applyPool != nil { // host goroutines: stopped whatever the device's state
		r.applyPool.Close()
		r.applyPool = nil
	}
	leave, ok := r.b.enterOpen()
	defer leave()
	if !ok {
		return
	}
	r.b.stream.Synchronize()
	r.dropGraphs()
	for _, p := range append(r.bufs, r.kept, r.offs, r.delta, r.part, r.count, r.lseAll, r.raw) {
		if p != 0 {
			cu.MemFree(p)
		}
	}
	r.bufs = nil
	r.prof.release()
	r.kept, r.offs, r.delta, r.part, r.count, r.lseAll, r.raw = 0, 0, 0, 0, 0, 0, 0
}

// grow sizes the activations for n tokens and logit rows (device entered).
func (r *runner) grow(n, rows int, hostRows bool) error {
	if n <= r.batch && rows <= r.logitRows {
		return nil
	}
	n, rows = max(n, r.batch), max(rows, r.logitRows)
	r.b.stream.Synchronize()
	r.dropGraphs() // they hold the old buffers' addresses
	for _, p := range r.bufs {
		cu.MemFree(p)
	}
	r.bufs = r.bufs[:0]
	c := r.c
	kvLayers := 1
	if hostRows {
		kvLayers = c.Layers
	}
	half := c.RopeDim / 2
	var err error
	get := func(floats int) cu.DevicePtr {
		if err != nil {
			return 0
		}
		var p cu.DevicePtr
		p, err = alloc(4 * floats)
		r.bufs = append(r.bufs, p)
		return p
	}
	r.x, r.xb, r.xb2, r.q, r.att = get(n*c.Dim), get(n*c.Dim), get(n*c.Dim), get(n*c.Dim), get(n*c.Dim)
	r.k, r.v = get(kvLayers*n*c.KVDim()), get(kvLayers*n*c.KVDim())
	r.hb, r.hb2 = get(n*c.Hidden), get(n*c.Hidden)
	r.lse = get(n * c.Heads)
	r.cos, r.sin, r.tokens = get(n*half), get(n*half), get(n)
	r.logits = get(rows * c.Vocab)
	if err != nil {
		return err
	}
	r.batch, r.logitRows = n, rows
	return nil
}

func (r *runner) matmul(out cu.DevicePtr, w dmat, x cu.DevicePtr, n int) error {
	const warps = 4
	a := new(args).p(out).p(w.ptr).p(x).i(w.typ).i(w.rows).i(w.cols).i(n)
	return r.b.launch("matmul", ceilDiv(w.rows, warps), ceilDiv(n, 8), 32*warps, 0, a)
}

func (r *runner) elementwise(name string, total int, a *args) error {
	return r.b.launch(name, ceilDiv(total, 256), 1, 256, 0, a)
}

// Forward runs the batch on the device at the cache's current length and
// appends its tokens to the cache, as model.State.Forward does on the CPU.
func (r *runner) Forward(cache *kvcache.Cache, b model.Batch) ([]float32, error) {
	c := r.c
	n := len(b.Tokens)
	switch {
	case r.closed:
		return nil, fmt.Errorf("cuda: forward on a closed runner")
	case n == 0:
		return nil, fmt.Errorf("forward: empty batch")
	case len(b.Flags) != n:
		return nil, fmt.Errorf("forward: %d tokens but %d flags", n, len(b.Flags))
	case b.Observe && n != 1:
		return nil, fmt.Errorf("forward: observing decode steps takes one token at a time, not %d", n)
	case cache.Len()+n > c.Ctx:
		return nil, fmt.Errorf("context full: %d cached + %d new tokens exceed the context length %d", cache.Len(), n, c.Ctx)
	case b.Attention != nil && n != 1:
		return nil, fmt.Errorf("forward: on the GPU attention observers see decode steps, one token at a time, not %d", n)
	}
	// A scored step's attention comes back as each entry's group-mean
	// probability, for every head: Observe adds it to the scores (full heads
	// too, as on the CPU: a later chat turn may re-profile them onto a policy
	// that ranks by score), an observer reads it.
	scoring := scores(b)
	for _, t := range b.Tokens {
		if t < 0 || t >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d outside the vocabulary (%d)", t, c.Vocab)
		}
	}
	leave := r.b.enter()
	defer leave()
	r.stepStart, r.launch0 = time.Now(), r.b.launches

	mir, _ := cache.Mirror().(*devMirror)
	if mir == nil {
		if cache.Mirror() != nil || cache.Len() > 0 {
			return nil, fmt.Errorf("cuda: the cache was filled by another backend")
		}
		if r.b.opt.DeviceRowsOnly {
			cache.Pool().SetHostRows(false)
		}
		var err error
		if mir, err = newMirror(r.b, cache); err != nil {
			return nil, err
		}
		cache.SetMirror(mir)
	}
	hostRows := cache.Pool().HostRows()
	if b.Profiler != nil && !hostRows && !r.profilesOnDevice(b) {
		return nil, fmt.Errorf("cuda: host profiling recomputes attention from host keys, which DeviceRowsOnly drops")
	}
	rows := 1
	if b.AllLogits {
		rows = n
	}
	if err := r.grow(n, rows, hostRows); err != nil {
		return nil, err
	}
	// Pending moves (e.g. from ApplyAll after a prefill) first, then room
	// for the batch, then the tables the kernels will read.
	if err := mir.flush(); err != nil {
		return nil, err
	}
	if err := mir.grow(n); err != nil {
		return nil, err
	}
	if err := mir.flush(); err != nil {
		return nil, err
	}

	// Per-step metadata: kept counts, score offsets, tokens, RoPE tables.
	heads := c.Layers * c.KVHeads
	scored := 0
	for h := 0; h < heads; h++ {
		l, kh := h/c.KVHeads, h%c.KVHeads
		r.keptH[h] = int32(cache.Kept(l, kh))
		r.offsH[h] = -1
		if scoring {
			r.offsH[h] = int32(scored)
			scored += cache.Kept(l, kh) + 1
		}
	}
	half := c.RopeDim / 2
	r.tokH = r.tokH[:0]
	for _, t := range b.Tokens {
		r.tokH = append(r.tokH, int32(t))
	}
	r.cosH, r.sinH = sized(r.cosH, n*half), sized(r.sinH, n*half)
	r.m.RopeTables(cache.Len(), n, r.cosH, r.sinH)
	for _, u := range []struct {
		d cu.DevicePtr
		p unsafe.Pointer
		n int
	}{{r.kept, i32Ptr(r.keptH), heads}, {r.offs, i32Ptr(r.offsH), heads}, {r.tokens, i32Ptr(r.tokH), n},
		{r.cos, f32Ptr(r.cosH), n * half}, {r.sin, f32Ptr(r.sinH), n * half}} {
		if err := r.b.upload(u.d, u.p, 4*u.n); err != nil {
			return nil, err
		}
	}

	split := false // attend with attend_split
	if !r.b.opt.legacyDecode {
		es := 4
		if mir.f16 {
			es = 2
		}
		var p attnPlan
		if p, split = r.planAttention(es); split {
			if err := r.attnBuffers(p, n == 1 && scoring); err != nil {
				return nil, err
			}
		}
	}
	if n == 1 && b.Profiler == nil && split && r.fused {
		if err := r.runDecode(mir, scoring, hostRows); err != nil {
			return nil, err
		}
		return r.finish(cache, b, mir, n, rows, scored)
	}
	if err := r.layers(cache, mir, b, n, hostRows, split); err != nil {
		return nil, err
	}
	if err := r.enqueueLogits(n, rows); err != nil {
		return nil, err
	}
	return r.finish(cache, b, mir, n, rows, scored)
}

// layers launches every layer of the batch.
func (r *runner) layers(cache *kvcache.Cache, mir *devMirror, b model.Batch, n int, hostRows, split bool) error {
	c := r.c
	dim, kvd, hd := c.Dim, c.KVDim(), c.HeadDim
	scale := float32(1 / math.Sqrt(float64(hd)))
	var err error
	run := func(e error) {
		if err == nil {
			err = e
		}
	}
	run(r.b.launch("embed", n, 1, 256, 0, new(args).p(r.x).p(r.w.embed.ptr).p(r.tokens).i(r.w.embed.typ).i(dim)))
	for li := range r.w.layers {
		l := &r.w.layers[li]
		k, v := r.k, r.v
		if hostRows {
			k += cu.DevicePtr(4 * li * n * kvd)
			v += cu.DevicePtr(4 * li * n * kvd)
		}
		run(r.b.launch("rmsnorm", n, 1, 256, 0, new(args).p(r.xb).p(r.x).p(l.attnNorm).i(dim).f(c.Eps)))
		run(r.matmul(r.q, l.wq, r.xb, n))
		run(r.matmul(k, l.wk, r.xb, n))
		run(r.matmul(v, l.wv, r.xb, n))
		if l.bq != 0 {
			run(r.elementwise("add_rows", n*dim, new(args).p(r.q).p(l.bq).i(dim).i(0).i(n*dim)))
			run(r.elementwise("add_rows", n*kvd, new(args).p(k).p(l.bk).i(kvd).i(0).i(n*kvd)))
			run(r.elementwise("add_rows", n*kvd, new(args).p(v).p(l.bv).i(kvd).i(0).i(n*kvd)))
		}
		neox := b2i(c.RopeNeoX)
		run(r.elementwise("rope", n*c.Heads*c.RopeDim/2, new(args).p(r.q).p(r.cos).p(r.sin).i(n).i(c.Heads).i(hd).i(c.RopeDim).i(neox)))
		run(r.elementwise("rope", n*c.KVHeads*c.RopeDim/2, new(args).p(k).p(r.cos).p(r.sin).i(n).i(c.KVHeads).i(hd).i(c.RopeDim).i(neox)))
		run(r.elementwise("kv_append", n*kvd, new(args).p(mir.dtables).p(r.kept).p(k).p(v).i(li).i(c.KVHeads).i(hd).i(mir.be).i(mir.maxBlocks).i(n).i(b2i(mir.f16))))
		if split {
			run(r.attend(mir, li, n, r.att, r.lse, 0, false))
		} else {
			run(r.b.launch("attend", n*c.Heads, 1, 128, 0, new(args).p(r.att).p(r.lse).p(r.q).p(mir.dtables).p(r.kept).
				i(li).i(c.Heads).i(c.KVHeads).i(hd).i(mir.be).i(mir.maxBlocks).i(n).f(scale).i(b2i(mir.f16))))
		}
		if n == 1 && scores(b) {
			run(r.b.launch("attn_scores", c.KVHeads, ceilDiv(cache.Len()+1, 128), 128, 0, new(args).p(r.delta).p(r.offs).p(r.lse).p(r.q).
				p(mir.dtables).p(r.kept).i(li).i(c.Heads).i(c.KVHeads).i(hd).i(mir.be).i(mir.maxBlocks).f(scale).i(b2i(mir.f16))))
		}
		if b.Profiler != nil {
			// The layer's entries (and keys, with host rows) join the host
			// cache now: the profiler reads their positions and classes,
			// and writes their scores and the heads' policies.
			if err != nil {
				return err
			}
			// The copies run on the default stream: the layer must be done.
			if err := r.b.stream.Synchronize(); err != nil {
				return fmt.Errorf("cuda: %v", err)
			}
			if err := r.appendHost(cache, b, li, 1, n, k, v); err != nil {
				return err
			}
			if r.profilesOnDevice(b) {
				if err := r.profileLayer(b.Profiler.(fastgen.SumsProfiler), cache, mir, li, n, scale); err != nil {
					return err
				}
			} else {
				// On the host, from its copy of the keys: the profiler
				// recomputes the rows.
				r.qH = sized(r.qH, n*dim)
				if err := cu.MemcpyDtoH(f32Ptr(r.qH), r.q, int64(4*n*dim)); err != nil {
					return err
				}
				b.Profiler.Layer(li, r.qH, dim, cache, scale, nil)
			}
		}
		run(r.matmul(r.xb2, l.wo, r.att, n))
		run(r.elementwise("add_rows", n*dim, new(args).p(r.x).p(r.xb2).i(dim).i(dim).i(n*dim)))
		run(r.b.launch("rmsnorm", n, 1, 256, 0, new(args).p(r.xb).p(r.x).p(l.ffnNorm).i(dim).f(c.Eps)))
		run(r.matmul(r.hb, l.gate, r.xb, n))
		run(r.matmul(r.hb2, l.up, r.xb, n))
		run(r.elementwise("swiglu", n*c.Hidden, new(args).p(r.hb).p(r.hb).p(r.hb2).i(n*c.Hidden)))
		run(r.matmul(r.xb2, l.down, r.hb, n))
		run(r.elementwise("add_rows", n*dim, new(args).p(r.x).p(r.xb2).i(dim).i(dim).i(n*dim)))
		if err != nil {
			return err
		}
	}
	return err
}

// scores tells whether a step's attention comes back to the host.
func scores(b model.Batch) bool { return b.Observe || b.Attention != nil }

// profilesOnDevice tells whether the batch's profiler takes its sums from
// the device's profiling pass rather than recomputing rows on the host.
func (r *runner) profilesOnDevice(b model.Batch) bool {
	_, ok := b.Profiler.(fastgen.SumsProfiler)
	return ok && !r.b.opt.HostProfiling
}

// appendHost appends layers [l0, l0+nl) of the batch's n tokens to the host
// cache: their metadata, and their K/V rows (k and v on the device, nl × n ×
// kvDim each, copied down in one transfer apiece) when the pool keeps them.
// The stream must have been synchronised (the copies do not wait for it).
func (r *runner) appendHost(cache *kvcache.Cache, b model.Batch, l0, nl, n int, k, v cu.DevicePtr) error {
	kvd := r.c.KVDim()
	var kr, vr []float32
	if cache.Pool().HostRows() {
		r.kH, r.vH = sized(r.kH, nl*n*kvd), sized(r.vH, nl*n*kvd)
		if err := cu.MemcpyDtoH(f32Ptr(r.kH), k, int64(4*nl*n*kvd)); err != nil {
			return err
		}
		if err := cu.MemcpyDtoH(f32Ptr(r.vH), v, int64(4*nl*n*kvd)); err != nil {
			return err
		}
		kr, vr = r.kH, r.vH
	}
	for l := 0; l < nl; l++ {
		for i := 0; i < n; i++ {
			if kr == nil {
				cache.AppendAt(l0+l, i, b.Flags[i], nil, nil)
				continue
			}
			o := (l*n + i) * kvd
			cache.AppendAt(l0+l, i, b.Flags[i], kr[o:o+kvd], vr[o:o+kvd])
		}
	}
	return nil
}

// enqueueLogits enqueues the logits of the batch's last rows rows.
func (r *runner) enqueueLogits(n, rows int) error {
	c := r.c
	x := r.x + cu.DevicePtr(4*(n-rows)*c.Dim)
	if err := r.b.launch("rmsnorm", rows, 1, 256, 0, new(args).p(r.xb).p(x).p(r.w.outNorm).i(c.Dim).f(c.Eps)); err != nil {
		return err
	}
	return r.matmul(r.logits, r.w.output, r.xb, rows)
}

// finish makes the step's one synchronisation and does the host's share:
// append metadata, add the step's scores, apply the policies (whose moves
// reach the device at the next flush).
func (r *runner) finish(cache *kvcache.Cache, b model.Batch, mir *devMirror, n, rows, scored int) ([]float32, error) {
	c := r.c
	enqueued := time.Now()
	if err := r.b.stream.Synchronize(); err != nil { // the step's synchronisation
		return nil, fmt.Errorf("cuda: %v", err)
	}
	if k := r.b.clock; k != nil {
		if err := k.collect(); err != nil {
			return nil, err
		}
	}
	r.stats.Steps++
	r.stats.Launches += r.b.launches - r.launch0
	r.stats.Enqueue += enqueued.Sub(r.stepStart)
	synced := time.Now()
	r.stats.Wait += synced.Sub(enqueued)
	defer func() { r.stats.Host += time.Since(synced) }()
	r.logitsH = sized(r.logitsH, rows*c.Vocab)
	if err := cu.MemcpyDtoH(f32Ptr(r.logitsH), r.logits, int64(4*rows*c.Vocab)); err != nil {
		return nil, err
	}
	if scored > 0 {
		r.deltaH = sized(r.deltaH, scored)
		if err := cu.MemcpyDtoH(f32Ptr(r.deltaH), r.delta, int64(4*scored)); err != nil {
			return nil, err
		}
	}
	if b.Profiler == nil {
		// With host rows every layer's K/V sits in r.k and r.v (one
		// transfer each); without, only the metadata is appended.
		if err := r.appendHost(cache, b, 0, c.Layers, n, r.k, r.v); err != nil {
			return nil, err
		}
	}
	if b.Attention != nil {
		// Each head's group-mean row: the loss an observer measures (the
		// kept share of the group's mean attention) is the same as from
		// the group's rows.
		for h, off := range r.offsH {
			kept := int(r.keptH[h]) + 1
			b.Attention.Attention(0, h/c.KVHeads, h%c.KVHeads, 0, r.deltaH[int(off):int(off)+kept], 1, kept)
		}
	}
	if b.Observe && scored > 0 {
		r.applyScores(cache)
	}
	cache.Advance(n)
	if err := mir.flush(); err != nil {
		return nil, err
	}
	return r.logitsH[:rows*c.Vocab], nil
}

// applyScores adds the step's scores to every head and re-applies its
// policy (a full head's is nothing), the heads spread over a pool of up to maxApplyWorkers
// threads: with the forward pass on the GPU, ranking a head's entries
// (O(kept) each step) is the host's largest share of a FastGen step at
// long context. The pool's workers outlive the step (spawning goroutines
// every step woke them too late to share a few hundred microseconds).
func (r *runner) applyScores(cache *kvcache.Cache) {
	if r.applyPool == nil {
		r.applyPool = tensor.NewPool(min(runtime.NumCPU(), maxApplyWorkers))
		r.scs = make([]kvcache.Scratch, r.applyPool.Threads())
	}
	r.apply = applyTask{r: r, cache: cache}
	r.applyPool.Parallel(len(r.offsH), 1, &r.apply)
	r.apply.cache = nil
}

// applyTask is applyScores' work, a head an item.
type applyTask struct {
	r     *runner
	cache *kvcache.Cache
}

func (t *applyTask) Run(worker, lo, hi int) {
	r, kvHeads := t.r, t.r.c.KVHeads
	for h := lo; h < hi; h++ {
		off, kept := int(r.offsH[h]), int(r.keptH[h])+1
		t.cache.AddScores(h/kvHeads, h%kvHeads, r.deltaH[off:off+kept])
		t.cache.Apply(h/kvHeads, h%kvHeads, &r.scs[worker])
	}
}

// maxApplyWorkers bounds applyScores' threads.
const maxApplyWorkers = 8
