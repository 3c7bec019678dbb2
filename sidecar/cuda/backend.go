//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fastgen/fastgen/kernels"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Options configure the CUDA backend.
type Options struct {
	// Device is the ordinal of the GPU to use.
	Device int
	// DeviceRowsOnly drops the host copy of the K/V rows, leaving the host
	// cache with positions, flags and scores only (HostProfiling then
	// cannot run). Off by default.
	DeviceRowsOnly bool
	// HostProfiling profiles FastGen prompts on the host, which recomputes
	// each layer's attention rows from its copy of the keys, instead of
	// with the device's profiling kernels (for comparing the two).
	HostProfiling bool
	// ReserveBlocks device cache blocks are kept free for reuse (0 = 64).
	ReserveBlocks int
	// NoGraphs enqueues every decode step's kernels one by one instead of
	// replaying the step as a captured CUDA graph (for measuring what the
	// graph saves, and for debugging).
	NoGraphs bool
	// NoPDL launches a decode step's kernels one after the other, not as
	// programmatic dependents (for measuring what overlapping them saves).
	NoPDL bool
	// KernelTimes times every kernel with device events (KernelTimes);
	// it implies NoGraphs and NoPDL.
	KernelTimes bool

	// legacyDecode runs one-token steps through the general batch path
	// and attends with the one-block-per-head kernel (tests compare).
	legacyDecode bool
	// attnTokens caps attend_split's tokens per launch (tests: several
	// launches per layer).
	attnTokens int
}

// slabBlocks is the number of cache blocks per device allocation.
const slabBlocks = 256

// Backend runs forward passes on one GPU. It implements model.Backend.
type Backend struct {
	opt    Options
	ctx    cu.CUContext
	dev    cu.Device
	stream cu.Stream
	fn     map[string]cu.Function

	mu     sync.Mutex // serialises device work: one stream, one context
	models map[*model.Model]*devModel
	pools  map[uint64]*slabs // device block pools by block bytes

	launches int          // kernel launches so far (Stats)
	clock    *kernelClock // with Options.KernelTimes
	// pdl: the device runs programmatic dependent launches (sm_90 on) and
	// they are on; chain: the launches being made are a decode step's,
	// each depending on the one before.
	pdl, chain bool
	closed     bool // Close destroyed the context, and with it all device memory
}

// New opens GPU opt.Device and loads the kernels for its architecture.
func New(opt Options) (*Backend, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuda: %v", err)
	}
	if opt.Device < 0 || opt.Device >= n {
		return nil, fmt.Errorf("cuda: no device %d (%d found)", opt.Device, n)
	}
	dev, err := cu.GetDevice(opt.Device)
	if err != nil {
		return nil, fmt.Errorf("cuda: %v", err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return nil, fmt.Errorf("cuda: %v", err)
	}
	ptx := kernels.PTX(major, minor)
	if ptx == "" {
		return nil, fmt.Errorf("cuda: device %d has compute capability %d.%d; fastgen's kernels need 8.0 or newer", opt.Device, major, minor)
	}
	ctx, err := dev.MakeContext(cu.SchedAuto)
	if err != nil {
		return nil, fmt.Errorf("cuda: %v", err)
	}
	b := &Backend{opt: opt, ctx: ctx, dev: dev, fn: map[string]cu.Function{},
		models: map[*model.Model]*devModel{}, pools: map[uint64]*slabs{}}
	mod, err := cu.LoadData(ptx)
	if err != nil {
		ctx.Destroy()
		return nil, fmt.Errorf("cuda: load kernels: %v", err)
	}
	for _, name := range kernels.Names {
		f, err := mod.Function(name)
		if err != nil {
			ctx.Destroy()
			return nil, fmt.Errorf("cuda: kernel %s: %v", name, err)
		}
		b.fn[name] = f
	}
	if b.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		ctx.Destroy()
		return nil, fmt.Errorf("cuda: %v", err)
	}
	b.pdl = major >= 9 && !opt.NoPDL
	if opt.KernelTimes {
		b.opt.NoGraphs, b.pdl = true, false
		b.clock = &kernelClock{total: map[string]time.Duration{}}
	}
	return b, nil
}

func (b *Backend) Name() string { return "cuda" }

// enter binds the calling goroutine to an OS thread holding the context and
// takes the device lock; the returned func undoes both.
func (b *Backend) enter() func() {
	leave, ok := b.enterOpen()
	if !ok {
		leave()
		panic("cuda: backend used after Close")
	}
	return leave
}

// enterOpen is enter for what may run after Close (finalizers, a cache
// closed after its backend): ok is false when the context is gone, and with
// it every allocation there was to free.
func (b *Backend) enterOpen() (leave func(), ok bool) {
	b.mu.Lock()
	if b.closed {
		return b.mu.Unlock, false
	}
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		panic(fmt.Sprintf("cuda: set context: %v", err))
	}
	return func() {
		runtime.UnlockOSThread()
		b.mu.Unlock()
	}, true
}

// DeviceBytes is the device memory the cache blocks take (allocated slabs)
// and what caches hold of it; the latter tracks 1 − pruned ratio.
func (b *Backend) DeviceBytes() (held, inUse uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.pools {
		held += p.bytes()
		inUse += p.inUseBytes()
	}
	return held, inUse
}

// Close frees everything on the device.
func (b *Backend) Close() error {
	leave := b.enter()
	defer leave()
	b.stream.Synchronize()
	for _, dm := range b.models {
		dm.free()
	}
	for _, p := range b.pools {
		p.close()
	}
	b.models, b.pools = nil, nil
	if b.clock != nil {
		for i := range b.clock.ev {
			cu.DestroyEvent(&b.clock.ev[i])
		}
	}
	b.stream.Destroy()
	b.closed = true
	return b.ctx.Destroy()
}

// ---------------------------------------------------------------------------
// Kernel launches.

// args packs kernel parameters, each in an 8-byte slot; 4-byte parameters
// (int, float) sit in the low bytes.
type args struct {
	vals [32]uint64
	n    int
}

func (a *args) p(d cu.DevicePtr) *args { return a.put(uint64(d)) }
func (a *args) i(v int) *args          { return a.put(uint64(uint32(int32(v)))) }
func (a *args) f(v float32) *args      { return a.put(uint64(math.Float32bits(v))) }
func (a *args) put(v uint64) *args {
	a.vals[a.n] = v
	a.n++
	return a
}

func (b *Backend) launch(name string, gx, gy, block, shm int, a *args) error {
	return b.launchAs(name, name, gx, gy, 1, block, shm, a)
}

// launchAs launches kernel name on a 3-D grid, timed (Options.KernelTimes)
// under label.
func (b *Backend) launchAs(label, name string, gx, gy, gz, block, shm int, a *args) error {
	b.launches++
	k := b.clock
	if k != nil {
		if err := k.start(b.stream); err != nil {
			return err
		}
	}
	if err := cuErr("launch "+name, launchKernel(b.fn[name], gx, gy, gz, block, shm, b.stream, a, b.chain && b.pdl)); err != nil {
		return err
	}
	if k != nil {
		return k.mark(label, b.stream)
	}
	return nil
}

// kernelClock times every launch with device events: the time from the
// previous launch's end to this one's, so gaps between kernels count
// towards the kernel after them.
type kernelClock struct {
	ev     []cu.Event
	labels []string
	n      int // events recorded this step
	total  map[string]time.Duration
}

func (k *kernelClock) record(s cu.Stream) error {
	if k.n == len(k.ev) {
		e, err := cu.MakeEvent(cu.DefaultEvent)
		if err != nil {
			return fmt.Errorf("cuda: %v", err)
		}
		k.ev = append(k.ev, e)
	}
	if err := k.ev[k.n].Record(s); err != nil {
		return fmt.Errorf("cuda: %v", err)
	}
	k.n++
	return nil
}

func (k *kernelClock) start(s cu.Stream) error {
	if k.n > 0 {
		return nil
	}
	return k.record(s)
}

func (k *kernelClock) mark(label string, s cu.Stream) error {
	k.labels = append(k.labels[:k.n-1], label)
	return k.record(s)
}

// collect adds the step's times to the totals (after the step's sync).
func (k *kernelClock) collect() error {
	for i := 0; i+1 < k.n; i++ {
		ms, err := k.ev[i].Elapsed(k.ev[i+1])
		if err != nil {
			return fmt.Errorf("cuda: %v", err)
		}
		k.total[k.labels[i]] += time.Duration(ms * 1e6)
	}
	k.n, k.labels = 0, k.labels[:0]
	return nil
}

// KernelTimes returns the device time per kernel label since the backend
// opened (Options.KernelTimes), and resets it.
func (b *Backend) KernelTimes() map[string]time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.clock == nil {
		return nil
	}
	t := b.clock.total
	b.clock.total = map[string]time.Duration{}
	return t
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// ---------------------------------------------------------------------------
// Device memory helpers.

func alloc(bytes int) (cu.DevicePtr, error) {
	if bytes <= 0 {
		bytes = 4
	}
	p, err := cu.MemAlloc(int64(bytes))
	if err != nil {
		return 0, fmt.Errorf("cuda: allocate %d bytes: %v", bytes, err)
	}
	return p, nil
}

func (b *Backend) upload(dst cu.DevicePtr, src unsafe.Pointer, bytes int) error {
	if bytes == 0 {
		return nil
	}
	return cu.MemcpyHtoDAsync(dst, src, int64(bytes), b.stream)
}

// sized returns s with length n, reallocated only when its capacity is short.
func sized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func f32Ptr(s []float32) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(s)) }
func i32Ptr(s []int32) unsafe.Pointer   { return unsafe.Pointer(unsafe.SliceData(s)) }

// ---------------------------------------------------------------------------
// Weights on the device.

type dmat struct {
	ptr             cu.DevicePtr
	typ, rows, cols int
}

type dlayer struct {
	attnNorm, ffnNorm              cu.DevicePtr
	bq, bk, bv                     cu.DevicePtr // 0 without biases
	wq, wk, wv, wo, gate, up, down dmat
}

type devModel struct {
	embed, output dmat
	outNorm       cu.DevicePtr
	layers        []dlayer
	ptrs          []cu.DevicePtr
}

func (dm *devModel) free() {
	for _, p := range dm.ptrs {
		cu.MemFree(p)
	}
	dm.ptrs = nil
}

func (dm *devModel) mat(m *tensor.Matrix) (dmat, error) {
	if !supported(m.Type) {
		return dmat{}, fmt.Errorf("cuda: weight type %s is not supported on the GPU", m.Type)
	}
	if m.Cols%m.Type.BlockSize() != 0 {
		return dmat{}, fmt.Errorf("cuda: %d columns are not whole %s blocks", m.Cols, m.Type)
	}
	p, err := alloc(len(m.Data))
	if err != nil {
		return dmat{}, err
	}
	dm.ptrs = append(dm.ptrs, p)
	if err := cu.MemcpyHtoD(p, unsafe.Pointer(unsafe.SliceData(m.Data)), int64(len(m.Data))); err != nil {
		return dmat{}, fmt.Errorf("cuda: upload weights: %v", err)
	}
	return dmat{ptr: p, typ: int(m.Type), rows: m.Rows, cols: m.Cols}, nil
}

func (dm *devModel) vec(v []float32) (cu.DevicePtr, error) {
	if v == nil {
		return 0, nil
	}
	p, err := alloc(4 * len(v))
	if err != nil {
		return 0, err
	}
	dm.ptrs = append(dm.ptrs, p)
	return p, cu.MemcpyHtoD(p, f32Ptr(v), int64(4*len(v)))
}

// weights uploads m once per backend (called with the device entered).
func (b *Backend) weights(m *model.Model) (*devModel, error) {
	if dm := b.models[m]; dm != nil {
		return dm, nil
	}
	hw, err := openWeights(m)
	if err != nil {
		return nil, err
	}
	defer hw.closer.Close()
	dm := &devModel{}
	fail := func(err error) (*devModel, error) {
		dm.free()
		return nil, err
	}
	if dm.embed, err = dm.mat(hw.embed); err != nil {
		return fail(err)
	}
	if hw.output == hw.embed {
		dm.output = dm.embed
	} else if dm.output, err = dm.mat(hw.output); err != nil {
		return fail(err)
	}
	if dm.outNorm, err = dm.vec(hw.outNorm); err != nil {
		return fail(err)
	}
	for _, l := range hw.layers {
		var d dlayer
		for _, mp := range []struct {
			dst *dmat
			src *tensor.Matrix
		}{{&d.wq, l.wq}, {&d.wk, l.wk}, {&d.wv, l.wv}, {&d.wo, l.wo}, {&d.gate, l.gate}, {&d.up, l.up}, {&d.down, l.down}} {
			if *mp.dst, err = dm.mat(mp.src); err != nil {
				return fail(err)
			}
		}
		for _, vp := range []struct {
			dst *cu.DevicePtr
			src []float32
		}{{&d.attnNorm, l.attnNorm}, {&d.ffnNorm, l.ffnNorm}, {&d.bq, l.bq}, {&d.bk, l.bk}, {&d.bv, l.bv}} {
			if *vp.dst, err = dm.vec(vp.src); err != nil {
				return fail(err)
			}
		}
		dm.layers = append(dm.layers, d)
	}
	b.models[m] = dm
	return dm, nil
}

// NewRunner uploads m's weights (once) and prepares one sequence.
func (b *Backend) NewRunner(m *model.Model) (model.Runner, error) {
	c := m.Config
	if c.HeadDim > 256 {
		return nil, fmt.Errorf("cuda: head dim %d exceeds the kernels' 256", c.HeadDim)
	}
	leave := b.enter()
	defer leave()
	dm, err := b.weights(m)
	if err != nil {
		return nil, err
	}
	r := &runner{b: b, m: m, w: dm, c: c}
	r.fused = r.fusedOK()
	heads := c.Layers * c.KVHeads
	for _, a := range []struct {
		p     *cu.DevicePtr
		bytes int
	}{{&r.kept, 4 * heads}, {&r.offs, 4 * heads}, {&r.delta, 4 * heads * (c.Ctx + 1)}} {
		if *a.p, err = alloc(a.bytes); err != nil {
			for _, p := range []cu.DevicePtr{r.kept, r.offs, r.delta} {
				if p != 0 {
					cu.MemFree(p)
				}
			}
			return nil, err
		}
	}
	r.keptH = make([]int32, heads)
	r.offsH = make([]int32, heads)
	runtime.SetFinalizer(r, (*runner).release)
	return r, nil
}

// pool returns the device block pool for blocks of the given bytes.
func (b *Backend) pool(blockBytes uint64) *slabs {
	if p := b.pools[blockBytes]; p != nil {
		return p
	}
	reserve := b.opt.ReserveBlocks
	if reserve <= 0 {
		reserve = kvcache.MinReserveBlocks
	}
	p := newSlabs(blockBytes, slabBlocks, reserve, func(n uint64) (uint64, error) {
		d, err := alloc(int(n))
		return uint64(d), err
	}, func(ptr uint64) error {
		// freeing synchronises anyway; make sure no queued move still reads it
		b.stream.Synchronize()
		return cu.MemFree(cu.DevicePtr(ptr))
	})
	b.pools[blockBytes] = p
	return p
}
