package tensor

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Task is a unit of parallel work: Run handles the index range [lo, hi) on
// the given worker (0 is the calling goroutine, 1..Threads()-1 the pool's
// goroutines), so a task can index per-worker scratch without locking.
//
// Pass a pointer to a long-lived struct: converting a pointer to an interface
// does not allocate, whereas a closure sent to a worker would escape to the
// heap on every call.
type Task interface {
	Run(worker, lo, hi int)
}

// Pool is a fixed set of worker goroutines parked between operations, plus
// the scratch memory the kernels reuse, so steady-state kernel calls
// allocate nothing. The calling goroutine takes a share of every operation,
// so a Pool of n threads runs n-1 goroutines.
//
// Workers are woken, never waited for: chunks are claimed from one atomic
// word holding the operation's generation, its chunk count and the next
// chunk, and the caller waits only for chunks a worker actually claimed. On
// a machine shared with other processes a worker that is not scheduled in
// time therefore costs nothing: the caller runs its share itself instead of
// blocking until the kernel gets round to it.
//
// A Pool serves one goroutine at a time: its scratch buffers and the task
// slot are not locked. Independent Pools are fully independent and may run
// concurrently.
type Pool struct {
	threads int
	wake    []chan struct{} // wake[i] starts worker i (buffered); wake[0] is unused (the caller)
	closed  bool

	// The operation in flight. task, n and chunk are written before claim
	// publishes the new generation and read by a worker only after it has
	// claimed a chunk of that generation, which pins them until it reports
	// the chunk done.
	task  Task
	n     int
	chunk int
	gen   uint64
	claim atomic.Uint64 // gen<<40 | chunks<<20 | next chunk
	done  atomic.Int64  // chunks finished in this generation
	fin   chan struct{} // the worker finishing an operation's last chunk signals here (buffered)

	// Kernel scratch, grown on demand and then reused.
	act  actScratch
	work []workerScratch
	mv   matVecTask
	mm   matMulTask
	sw   swigluTask
	bw   bandwidthTask
	fl   flopsTask
}

const (
	claimBits = 20
	claimMask = 1<<claimBits - 1
)

// NewPool starts a pool of threads workers (including the caller);
// threads <= 0 means runtime.NumCPU().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, wake: make([]chan struct{}, threads), fin: make(chan struct{}, 1)}
	p.work = make([]workerScratch, threads)
	for i := 1; i < threads; i++ {
		ch := make(chan struct{}, 1)
		p.wake[i] = ch
		go p.worker(i, ch)
	}
	return p
}

// Threads returns the number of threads sharing each operation.
func (p *Pool) Threads() int { return p.threads }

// Close stops the worker goroutines. The pool must not be used afterwards;
// closing twice is harmless.
func (p *Pool) Close() {
	if p.closed {
		return
	}
	p.closed = true
	for _, ch := range p.wake[1:] {
		close(ch)
	}
}

// workerSpin is how long a worker polls for the next operation before
// parking. Decode issues an operation every few tens of microseconds; a
// parked worker takes about as long to be woken (futex, scheduler), so
// without polling the caller does most of each small operation alone.
// Bounded, so an idle pool costs nothing and Close is noticed.
const workerSpin = 200 * time.Microsecond

func (p *Pool) worker(id int, wake chan struct{}) {
	last := p.claim.Load()
	for {
		deadline := time.Now().Add(workerSpin)
		for i := 0; ; i++ {
			if v := p.claim.Load(); v != last {
				last = v
				p.drain(id, false)
				deadline = time.Now().Add(workerSpin)
				continue
			}
			if i%64 == 63 && time.Now().After(deadline) {
				break
			}
		}
		if _, ok := <-wake; !ok {
			return
		}
		last = p.claim.Load()
		p.drain(id, false)
	}
}

// drain claims chunks of the current operation until none are left. A
// worker woken late finds the generation finished (or a newer one, which it
// helps with) and goes back to sleep.
func (p *Pool) drain(id int, caller bool) {
	for {
		v := p.claim.Load()
		chunks, next := int(v>>claimBits&claimMask), int(v&claimMask)
		if next >= chunks {
			return
		}
		if !p.claim.CompareAndSwap(v, v+1) {
			continue
		}
		// The chunk is ours, so the operation cannot finish (and its fields
		// cannot change) until we report it done.
		lo := next * p.chunk
		p.task.Run(id, lo, min(lo+p.chunk, p.n))
		if p.done.Add(1) == int64(chunks) && !caller {
			select {
			case p.fin <- struct{}{}:
			default:
			}
		}
	}
}

// Parallel runs t over [0, n) split into chunks of at least grain indices
// and returns when all are done. Work too small to be worth a wake-up (one
// chunk) runs on the calling goroutine. It allocates nothing.
func (p *Pool) Parallel(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	// About four chunks per thread balances load without making the shared
	// counter a hot spot.
	chunk := max(grain, (n+4*p.threads-1)/(4*p.threads))
	nchunks := (n + chunk - 1) / chunk
	if p.threads == 1 || nchunks == 1 || p.closed || nchunks > claimMask {
		t.Run(0, 0, n)
		return
	}
	p.task, p.n, p.chunk = t, n, chunk
	p.done.Store(0)
	p.gen++
	p.claim.Store(p.gen<<(2*claimBits) | uint64(nchunks)<<claimBits)
	for i := 1; i <= min(p.threads-1, nchunks-1); i++ {
		select {
		case p.wake[i] <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	p.drain(0, true)
	// Wait only for chunks workers claimed and are still running: spin
	// briefly (they are usually nearly done), then sleep until the last one
	// signals. A stale signal from an earlier operation just loops.
	for spin := 0; p.done.Load() < int64(nchunks); spin++ {
		if spin < 200 {
			runtime.Gosched()
			continue
		}
		<-p.fin
	}
	p.task = nil
}

// workerScratch is private to one worker during an operation.
type workerScratch struct {
	tile  []float32 // mmTileRows weight rows' k chunk, dequantized row-major
	panel []float32 // the same packed k-major
	xpad  []float32 // a short last group of activation rows, padded to 6
	block []float32 // a 6×16 result block that does not fit out
}

// actScratch holds activations quantized for integer dot products.
type actScratch struct {
	qs   []int8
	ax   []uint8 // |qs|
	d    []float32
	bs16 []int16
	bs32 []int16
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
