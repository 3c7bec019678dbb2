//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
#include <string.h>

static CUresult fg_capture_begin(CUstream s) {
	return cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
}

// fg_capture_end ends the capture and instantiates what it recorded; on a
// failed launch during capture it still ends it, so the stream is usable.
static CUresult fg_capture_end(CUstream s, CUgraphExec *exec, int keep) {
	CUgraph g = NULL;
	CUresult r = cuStreamEndCapture(s, &g);
	if (r != CUDA_SUCCESS || !keep) {
		if (g) cuGraphDestroy(g);
		return r;
	}
	r = cuGraphInstantiateWithFlags(exec, g, 0);
	cuGraphDestroy(g);
	return r;
}

static CUresult fg_graph_launch(CUgraphExec e, CUstream s) { return cuGraphLaunch(e, s); }

// fg_launch launches f with the n parameters in vals (each in an 8-byte
// slot; the driver reads each parameter's own size from it), allowing
// programmatic dependent launch when pdl is set.
static CUresult fg_launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned shm,
                          CUstream s, unsigned long long *vals, int n, int pdl) {
	void *params[32];
	for (int i = 0; i < n && i < 32; i++) params[i] = &vals[i];
	CUlaunchAttribute attr;
	memset(&attr, 0, sizeof attr);
	attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
	attr.value.programmaticStreamSerializationAllowed = 1;
	CUlaunchConfig cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.gridDimX = gx, cfg.gridDimY = gy, cfg.gridDimZ = gz;
	cfg.blockDimX = bx, cfg.blockDimY = 1, cfg.blockDimZ = 1;
	cfg.sharedMemBytes = shm;
	cfg.hStream = s;
	cfg.attrs = pdl ? &attr : NULL;
	cfg.numAttrs = pdl ? 1 : 0;
	return cuLaunchKernelEx(&cfg, f, params, NULL);
}
static CUresult fg_graph_destroy(CUgraphExec e) { return cuGraphExecDestroy(e); }

static const char *fg_error_name(CUresult r) {
	const char *s = NULL;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || !s) return "unknown CUDA error";
	return s;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// gorgonia.org/cu (v0.9.6) has no stream capture, graph launch or launch
// attributes, and its Launch allocates its argument arrays with malloc, so
// these few calls go to the driver directly; cu still owns the context,
// memory, module and stream. A decode step is 6 launches a layer; enqueued
// one by one they cost the host about what the device takes to run them,
// so the step is captured once and replayed as one graph, its kernels
// launched as programmatic dependents (each may start, and load its
// weights, while the one before it drains).

// cuStream and cuFunction are the driver handles inside cu's wrappers
// (structs holding just that pointer).
func cuStream(s cu.Stream) C.CUstream       { return *(*C.CUstream)(unsafe.Pointer(&s)) }
func cuFunction(f cu.Function) C.CUfunction { return *(*C.CUfunction)(unsafe.Pointer(&f)) }

// launchKernel launches f with a's parameters on s.
func launchKernel(f cu.Function, gx, gy, gz, block, shm int, s cu.Stream, a *args, pdl bool) C.CUresult {
	p := C.int(0)
	if pdl {
		p = 1
	}
	return C.fg_launch(cuFunction(f), C.uint(gx), C.uint(gy), C.uint(gz), C.uint(block), C.uint(shm), cuStream(s),
		(*C.ulonglong)(unsafe.Pointer(&a.vals[0])), C.int(a.n), p)
}

func cuErr(what string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return fmt.Errorf("cuda: %s: %s (%d)", what, C.GoString(C.fg_error_name(r)), int(r))
}

// graph is one captured decode step.
type graph struct {
	key  graphKey
	exec C.CUgraphExec
}

// graphKey is what a captured step depends on beyond the runner's own
// buffers (whose reallocation drops every graph): the cache's device block
// tables and layout, and whether the step scores entries.
type graphKey struct {
	tables        cu.DevicePtr
	maxBlocks, be int
	f16, observe  bool
	hostRows      bool
}

// capture records what launch enqueues on the backend's stream into a graph
// instead of running it.
func (b *Backend) capture(launch func() error) (C.CUgraphExec, error) {
	s := cuStream(b.stream)
	if err := cuErr("begin capture", C.fg_capture_begin(s)); err != nil {
		return nil, err
	}
	lerr := launch()
	var exec C.CUgraphExec
	keep := C.int(1)
	if lerr != nil {
		keep = 0
	}
	if err := cuErr("capture", C.fg_capture_end(s, &exec, keep)); err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, lerr
	}
	return exec, nil
}

func (b *Backend) replay(g *graph) error {
	b.launches++
	return cuErr("graph launch", C.fg_graph_launch(g.exec, cuStream(b.stream)))
}

func destroyGraph(g *graph) { C.fg_graph_destroy(g.exec) }
