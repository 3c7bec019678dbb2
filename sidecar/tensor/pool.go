package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
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

// Pool is a fixed set of worker goroutines parked on channels between
// operations, plus the scratch memory the kernels reuse, so steady-state
// kernel calls allocate nothing. The calling goroutine takes a share of every
// operation, so a Pool of n threads runs n-1 goroutines.
//
// A Pool serves one goroutine at a time: its scratch buffers and the task
// slot are not locked. Independent Pools are fully independent and may run
// concurrently.
type Pool struct {
	threads int
	wake    []chan struct{} // wake[i] starts worker i; wake[0] is unused (the caller)
	wg      sync.WaitGroup
	closed  bool

	// The operation in flight; written before workers are woken, so the
	// channel send orders these writes before the workers' reads.
	task  Task
	n     int
	chunk int
	next  atomic.Int64

	// Kernel scratch, grown on demand and then reused.
	act  actScratch
	work []workerScratch
	mv   matVecTask
	mm   matMulTask
	bw   bandwidthTask
}

// NewPool starts a pool of threads workers (including the caller);
// threads <= 0 means runtime.NumCPU().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, wake: make([]chan struct{}, threads)}
	p.work = make([]workerScratch, threads)
	for i := 1; i < threads; i++ {
		ch := make(chan struct{})
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

func (p *Pool) worker(id int, wake chan struct{}) {
	for range wake {
		p.drain(id)
		p.wg.Done()
	}
}

// drain claims chunks from the shared counter until none are left; dynamic
// claiming keeps threads busy when one of them is descheduled on a shared
// machine.
func (p *Pool) drain(id int) {
	for {
		lo := int(p.next.Add(int64(p.chunk))) - p.chunk
		if lo >= p.n {
			return
		}
		p.task.Run(id, lo, min(lo+p.chunk, p.n))
	}
}

// Parallel runs t over [0, n) split into chunks of at least grain indices
// and returns when all are done. It allocates nothing.
func (p *Pool) Parallel(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	// About four chunks per thread balances load without making the shared
	// counter a hot spot.
	chunk := max(grain, (n+4*p.threads-1)/(4*p.threads))
	nchunks := (n + chunk - 1) / chunk
	if p.threads == 1 || nchunks == 1 || p.closed {
		t.Run(0, 0, n)
		return
	}
	p.task, p.n, p.chunk = t, n, chunk
	p.next.Store(0)
	workers := min(p.threads-1, nchunks-1)
	p.wg.Add(workers)
	for i := 1; i <= workers; i++ {
		p.wake[i] <- struct{}{}
	}
	p.drain(0)
	p.wg.Wait()
	p.task = nil
}

// workerScratch is private to one worker during an operation.
type workerScratch struct {
	tile []float32   // MatMul weight tile
	c    [12]float32 // micro-kernel results; here rather than on the stack, where passing it to a kernel function value would make it escape
}

// actScratch holds activations quantized for integer dot products.
type actScratch struct {
	qs   []int8
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
