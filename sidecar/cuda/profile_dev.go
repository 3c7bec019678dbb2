//go:build cuda

package cuda

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// profBufs are the device profiling pass's buffers and their host copies,
// reused layer to layer and prompt to prompt. A head's arrays sit stride
// entries apart.
type profBufs struct {
	pos, flags, first, freqK devBuf // the plan, uploaded
	colsum, order            devBuf // per entry: pass 1's sums, prof_rank's order
	mass, sums               devBuf // float64 accumulators

	posH           []int32
	flagsH, firstH []uint8
	colsumH        []float32
	massH, sumsH   []float64
	out            fastgen.LayerSums
}

func (p *profBufs) release() {
	for _, d := range []*devBuf{&p.pos, &p.flags, &p.first, &p.freqK, &p.colsum, &p.order, &p.mass, &p.sums} {
		if d.ptr != 0 {
			cu.MemFree(d.ptr)
		}
		*d = devBuf{}
	}
}

// profThreads is the profiling kernels' block size.
const profThreads = 256

// profileLayer computes layer li's profiling sums for the batch's n prompt
// rows on the device (kernels/fastgen.cu: prof_pass1, prof_rank,
// prof_pass2) from the cached keys and the queries and softmax normalisers
// attention left in r.q and r.lse, and hands them to the profiler. The
// layer's entries must already be in the host cache (appendHost).
func (r *runner) profileLayer(dp fastgen.SumsProfiler, cache *kvcache.Cache, mir *devMirror, li, n int, scale float32) error {
	c := r.c
	pl := dp.Plan(li, cache)
	if len(pl.Heads) != c.KVHeads || len(pl.FreqK) != n || pl.Candidates > 8 {
		return fmt.Errorf("cuda: profiling plan for %d heads, %d rows and %d candidates; the kernels take %d heads, %d rows and at most 8",
			len(pl.Heads), len(pl.FreqK), pl.Candidates, c.KVHeads, n)
	}
	stride := 0
	for _, h := range pl.Heads {
		stride = max(stride, h.Total)
	}
	stride = (stride + 3) &^ 3
	kv, groups := c.KVHeads, c.Heads/c.KVHeads
	p := &r.prof
	p.posH = sized(p.posH, kv*stride)
	p.flagsH, p.firstH = sized(p.flagsH, kv*stride), sized(p.firstH, kv*stride)
	for kh, h := range pl.Heads {
		copy(p.posH[kh*stride:], h.Pos)
		for j, f := range h.Flags {
			p.flagsH[kh*stride+j] = uint8(f)
			p.firstH[kh*stride+j] = uint8(h.First[j])
		}
	}
	nSums := kv * groups * pl.Candidates
	for _, f := range []struct {
		d     *devBuf
		bytes int
	}{{&p.pos, 4 * kv * stride}, {&p.flags, kv * stride}, {&p.first, kv * stride}, {&p.freqK, 4 * n},
		{&p.colsum, 4 * kv * stride}, {&p.order, 4 * kv * stride}, {&p.mass, 8 * 4 * kv}, {&p.sums, 8 * nSums}} {
		if err := f.d.fit(r.b, f.bytes); err != nil {
			return err
		}
	}
	for _, u := range []struct {
		d     cu.DevicePtr
		p     unsafe.Pointer
		bytes int
	}{{p.pos.ptr, i32Ptr(p.posH), 4 * kv * stride}, {p.flags.ptr, unsafe.Pointer(unsafe.SliceData(p.flagsH)), kv * stride},
		{p.first.ptr, unsafe.Pointer(unsafe.SliceData(p.firstH)), kv * stride}, {p.freqK.ptr, i32Ptr(pl.FreqK), 4 * n}} {
		if err := r.b.upload(u.d, u.p, u.bytes); err != nil {
			return err
		}
	}
	for _, z := range []struct {
		d     cu.DevicePtr
		words int
	}{{p.colsum.ptr, kv * stride}, {p.mass.ptr, 2 * 4 * kv}, {p.sums.ptr, 2 * nSums}} {
		if err := cu.MemsetD32Async(z.d, 0, int64(z.words), r.b.stream); err != nil {
			return fmt.Errorf("cuda: clear profiling sums: %v", err)
		}
	}
	basePos := cache.Len()
	f16 := b2i(mir.f16)
	stage := 4 * (groups*c.HeadDim + groups) // a row's queries and normalisers
	err := r.b.launch("prof_pass1", n, kv, profThreads, stage, new(args).p(p.colsum.ptr).p(p.mass.ptr).p(r.q).p(r.lse).
		p(mir.dtables).p(r.kept).p(p.pos.ptr).p(p.flags.ptr).i(li).i(c.Heads).i(kv).i(c.HeadDim).i(mir.be).
		i(mir.maxBlocks).i(stride).i(basePos).i(int(pl.Window)).f(scale).i(f16))
	if err == nil && !pl.Fixed {
		err = r.b.launch("prof_rank", ceilDiv(stride, profThreads), kv, profThreads, 0,
			new(args).p(p.order.ptr).p(p.colsum.ptr).p(r.kept).i(li).i(kv).i(n).i(stride))
	}
	if err == nil && !pl.Fixed {
		// frequent bits, scan, the staged row, per-group sums
		shm := 16*ceilDiv(stride, 128) + 4*profThreads + stage + 4*8*max(groups, adMaxGroups)
		err = r.b.launch("prof_pass2", n-pl.Start, kv, profThreads, shm, new(args).p(p.sums.ptr).p(p.order.ptr).p(r.q).
			p(r.lse).p(mir.dtables).p(r.kept).p(p.pos.ptr).p(p.first.ptr).i(li).i(c.Heads).i(kv).i(c.HeadDim).
			i(mir.be).i(mir.maxBlocks).i(stride).i(basePos).i(pl.Start).i(int(pl.Window)).p(p.freqK.ptr).
			i(pl.RankFreq).i(pl.RankLocal).i(pl.Candidates).i(b2i(pl.PerGroup)).f(scale).i(f16))
	}
	if err != nil {
		return err
	}
	if err := r.b.stream.Synchronize(); err != nil {
		return fmt.Errorf("cuda: profiling layer %d: %v", li, err)
	}
	p.colsumH = sized(p.colsumH, kv*stride)
	p.massH, p.sumsH = sized(p.massH, 4*kv), sized(p.sumsH, nSums)
	for _, d := range []struct {
		h     unsafe.Pointer
		d     cu.DevicePtr
		bytes int
	}{{f32Ptr(p.colsumH), p.colsum.ptr, 4 * kv * stride}, {unsafe.Pointer(unsafe.SliceData(p.massH)), p.mass.ptr, 8 * 4 * kv},
		{unsafe.Pointer(unsafe.SliceData(p.sumsH)), p.sums.ptr, 8 * nSums}} {
		if err := cu.MemcpyDtoH(d.h, d.d, int64(d.bytes)); err != nil {
			return fmt.Errorf("cuda: copy profiling sums: %v", err)
		}
	}
	rows := 1
	if pl.PerGroup {
		rows = groups
	}
	o := &p.out
	o.Colsum, o.Mass, o.Sums = o.Colsum[:0], o.Mass[:0], o.Sums[:0]
	for kh, h := range pl.Heads {
		m := p.massH[4*kh:]
		o.Colsum = append(o.Colsum, p.colsumH[kh*stride:kh*stride+h.Total])
		o.Mass = append(o.Mass, fastgen.Mass{Special: m[0], Punct: m[1], Local: m[2], Other: m[3]})
		if !pl.Fixed {
			at := kh * groups * pl.Candidates
			o.Sums = append(o.Sums, p.sumsH[at:at+rows*pl.Candidates])
		}
	}
	return dp.LayerFromSums(li, cache, o)
}
