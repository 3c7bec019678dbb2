//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// The decode path: one token a step, the shape that serving spends its time
// in. Against the general path (runner.layers, any batch) it fuses what a
// single token allows — RMSNorm into the matrix-vector products that read
// it, Q/K/V into one launch, gate/up/SwiGLU into one, the residual adds
// into Wo and down — and every launch reads its per-step values from device
// memory, so the step is captured once per cache and replayed as a CUDA
// graph (driver.go). Both paths attend with attend_split, the context split
// over many blocks, so that long contexts use the whole GPU.

const (
	mvWarps      = 8         // matvec's warps per block (MV_WARPS in fastgen.cu)
	adThreads    = 256       // attend_split's block
	adMaxGroups  = 16        // AD_MAXG: query heads per KV head
	maxSharedMem = 47 * 1024 // attend_split's dynamic shared memory: 48 KB without opting in, less its static use
	partBudget   = 64 << 20  // bytes of attend_split partials: bounds tokens per launch
)

// attnPlan sizes attend_split for a cache element size (4 or 2 bytes).
type attnPlan struct {
	es, ch, nsplit, shm int
	tokens              int // per launch
}

// planAttention reports whether attend_split can run this model's
// attention, and how it splits the context.
func (r *runner) planAttention(es int) (attnPlan, bool) {
	c := r.c
	g := c.Heads / c.KVHeads
	if c.HeadDim%8 != 0 || g > adMaxGroups || c.Heads%c.KVHeads != 0 {
		return attnPlan{}, false
	}
	vstride := c.HeadDim*es + 16
	ch := (maxSharedMem - g*c.HeadDim*4) / (g*4 + vstride) / 32 * 32
	ch = min(ch, adThreads)
	if ch < 32 {
		return attnPlan{}, false
	}
	p := attnPlan{es: es, ch: ch, nsplit: ceilDiv(c.Ctx+1, ch)}
	p.shm = g*c.HeadDim*4 + g*ch*4 + ch*vstride
	p.shm = max(p.shm, g*p.nsplit*4) // the merge's split weights reuse it
	perToken := 4 * c.KVHeads * p.nsplit * g * (c.HeadDim + 2)
	p.tokens = max(1, min(1024, partBudget/perToken))
	if t := r.b.opt.attnTokens; t > 0 {
		p.tokens = min(p.tokens, t)
	}
	return p, p.shm <= maxSharedMem
}

// fusedOK reports whether every matrix fits matvec's vector loads.
func (r *runner) fusedOK() bool {
	for _, l := range r.w.layers {
		for _, m := range []dmat{l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down} {
			if !r.matvecFits(m) {
				return false
			}
		}
	}
	return r.matvecFits(r.w.output)
}

func (r *runner) matvecFits(m dmat) bool {
	switch tensor.DType(m.typ) {
	case tensor.F16, tensor.BF16:
		return m.cols%8 == 0
	case tensor.F32:
		return m.cols%4 == 0
	}
	return true // block types: whole blocks of 32 or 256
}

// attnBuffers allocates attend_split's partials for plan p, and the decode
// path's scores when observe (device entered).
func (r *runner) attnBuffers(p attnPlan, observe bool) error {
	c := r.c
	g := c.Heads / c.KVHeads
	if r.plan != p {
		for _, d := range []*cu.DevicePtr{&r.part, &r.count, &r.lseAll} {
			if *d != 0 {
				r.b.stream.Synchronize()
				cu.MemFree(*d)
				*d = 0
			}
		}
		r.dropGraphs()
		var err error
		if r.part, err = alloc(4 * p.tokens * c.KVHeads * p.nsplit * g * (c.HeadDim + 2)); err != nil {
			return err
		}
		if r.count, err = alloc(4 * p.tokens * c.KVHeads); err != nil {
			return err
		}
		if err := cu.MemsetD32(r.count, 0, int64(p.tokens*c.KVHeads)); err != nil {
			return fmt.Errorf("cuda: %v", err)
		}
		if r.lseAll, err = alloc(4 * c.Layers * c.Heads); err != nil {
			return err
		}
		r.plan = p
	}
	if observe && r.raw == 0 {
		var err error
		if r.raw, err = alloc(4 * c.Layers * c.Heads * (c.Ctx + 1)); err != nil {
			return err
		}
		r.dropGraphs()
	}
	return nil
}

// attend launches attend_split for the batch's n tokens of layer li, as
// many tokens per launch as the partials hold; raw is 0 unless a decode
// step scores entries; ropeQ has the kernel rotate the queries.
func (r *runner) attend(mir *devMirror, li, n int, out, lse, raw cu.DevicePtr, ropeQ bool) error {
	c, p := r.c, r.plan
	scale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	cos, sin := r.cos, r.sin
	if !ropeQ {
		cos, sin = 0, 0
	}
	for t0 := 0; t0 < n; t0 += p.tokens {
		a := new(args).p(out).p(lse).p(raw).p(r.part).p(r.count).p(r.q).p(mir.dtables).p(r.kept).p(r.offs).
			i(li).i(c.Heads).i(c.KVHeads).i(c.HeadDim).i(mir.be).i(mir.maxBlocks).i(p.ch).i(c.Ctx + 1).f(scale).
			i(b2i(mir.f16)).i(t0).p(cos).p(sin).i(c.RopeDim).i(b2i(c.RopeNeoX))
		if err := r.b.launchAs("attend", "attend_split", p.nsplit, c.KVHeads, min(p.tokens, n-t0), adThreads, p.shm, a); err != nil {
			return err
		}
	}
	return nil
}

// matvec launches up to three products over x (see fastgen.cu); norm is
// the RMSNorm weight to apply to x first, 0 for none.
func (r *runner) matvec(label string, mode int, x, norm cu.DevicePtr, mats ...mvOut) error {
	return r.b.matvec(label, mode, r.c.Eps, x, norm, mats...)
}

// matvec lays out the matvec kernel's arguments (three matrices, unused
// ones zero) and launches it; the decode path and BenchmarkGPUKernels both
// come through here.
func (b *Backend) matvec(label string, mode int, eps float32, x, norm cu.DevicePtr, mats ...mvOut) error {
	var m [3]mvOut
	copy(m[:], mats)
	rows := m[0].w.rows + m[1].w.rows + m[2].w.rows
	if mode == mvSwiGLU {
		rows = m[0].w.rows
	}
	a := new(args)
	for _, o := range m {
		a.p(o.w.ptr).p(o.out).i(o.w.rows)
	}
	w := m[0].w
	wpr := warpsPerRow(w)
	a.p(x).p(norm).f(eps).i(w.typ).i(w.cols).i(mode).i(wpr)
	return b.launchAs(label, "matvec", ceilDiv(rows*wpr, mvWarps), 1, 1, 32*mvWarps, 0, a)
}

// warpsPerRow gives a row enough warps that each lane loads at most about
// eight pieces of it (16 bytes, or a quarter Q8_0 block): they are then
// all in flight at once instead of in rounds of memory latency.
func warpsPerRow(m dmat) int {
	var steps int // per lane, with one warp to the row
	switch tensor.DType(m.typ) {
	case tensor.F16, tensor.BF16:
		steps = m.cols / 8 / 32
	case tensor.F32:
		steps = m.cols / 4 / 32
	case tensor.Q8_0:
		steps = m.cols / 128
	default:
		steps = m.cols / 32
	}
	w := 1
	for w < mvWarps && steps > 8*w {
		w *= 2
	}
	return w
}

type mvOut struct {
	w   dmat
	out cu.DevicePtr
}

const (
	mvStore  = 0
	mvAdd    = 1
	mvSwiGLU = 2
)

// layersDecode enqueues one token's forward pass, logits included.
func (r *runner) layersDecode(mir *devMirror, observe, hostRows bool) error {
	c := r.c
	dim, kvd, hd := c.Dim, c.KVDim(), c.HeadDim
	var err error
	run := func(e error) {
		if err == nil {
			err = e
		}
	}
	raw := cu.DevicePtr(0)
	if observe {
		raw = r.raw
	}
	run(r.b.launch("embed", 1, 1, 256, 0, new(args).p(r.x).p(r.w.embed.ptr).p(r.tokens).i(r.w.embed.typ).i(dim)))
	r.b.chain = true
	defer func() { r.b.chain = false }()
	for li := range r.w.layers {
		l := &r.w.layers[li]
		k, v := r.k, r.v
		if hostRows {
			k += cu.DevicePtr(4 * li * kvd)
			v += cu.DevicePtr(4 * li * kvd)
		}
		run(r.matvec("qkv", mvStore, r.x, l.attnNorm, mvOut{l.wq, r.q}, mvOut{l.wk, k}, mvOut{l.wv, v}))
		if l.bq != 0 {
			run(r.elementwise("add_rows", dim, new(args).p(r.q).p(l.bq).i(dim).i(0).i(dim)))
			run(r.elementwise("add_rows", kvd, new(args).p(k).p(l.bk).i(kvd).i(0).i(kvd)))
			run(r.elementwise("add_rows", kvd, new(args).p(v).p(l.bv).i(kvd).i(0).i(kvd)))
		}
		run(r.elementwise("rope_k_append", kvd/2, new(args).p(mir.dtables).p(r.kept).p(k).p(v).p(r.cos).p(r.sin).
			i(li).i(c.KVHeads).i(hd).i(c.RopeDim).i(b2i(c.RopeNeoX)).i(mir.be).i(mir.maxBlocks).i(1).i(b2i(mir.f16))))
		run(r.attend(mir, li, 1, r.att, r.lseAll+cu.DevicePtr(4*li*c.Heads), raw, true))
		run(r.matvec("wo", mvAdd, r.att, 0, mvOut{l.wo, r.x}))
		run(r.matvec("ffn_in", mvSwiGLU, r.x, l.ffnNorm, mvOut{l.gate, r.hb}, mvOut{l.up, r.hb}))
		run(r.matvec("ffn_down", mvAdd, r.hb, 0, mvOut{l.down, r.x}))
	}
	if observe {
		run(r.b.launch("attn_scores_dec", ceilDiv(c.Ctx+1, 256), c.Layers*c.KVHeads, 256, 0, new(args).p(r.delta).
			p(r.offs).p(r.lseAll).p(r.raw).p(r.kept).i(c.Heads).i(c.KVHeads).i(c.Ctx+1)))
	}
	run(r.matvec("logits", mvStore, r.x, r.w.outNorm, mvOut{r.w.output, r.logits}))
	return err
}

// runDecode enqueues the decode step, through a graph captured for this
// cache unless graphs are off.
func (r *runner) runDecode(mir *devMirror, observe, hostRows bool) error {
	if r.b.opt.NoGraphs {
		return r.layersDecode(mir, observe, hostRows)
	}
	key := graphKey{tables: mir.dtables, maxBlocks: mir.maxBlocks, be: mir.be, f16: mir.f16, observe: observe, hostRows: hostRows}
	for _, g := range r.graphs {
		if g.key == key {
			return r.b.replay(g)
		}
	}
	exec, err := r.b.capture(func() error { return r.layersDecode(mir, observe, hostRows) })
	if err != nil {
		return err
	}
	if len(r.graphs) == maxGraphs {
		destroyGraph(r.graphs[0])
		r.graphs = r.graphs[1:]
	}
	g := &graph{key: key, exec: exec}
	r.graphs = append(r.graphs, g)
	return r.b.replay(g)
}

// maxGraphs captured steps are kept per runner: one per cache it decodes
// (compare mode alternates two), dropped oldest first.
const maxGraphs = 4

func (r *runner) dropGraphs() {
	for _, g := range r.graphs {
		destroyGraph(g)
	}
	r.graphs = nil
}
