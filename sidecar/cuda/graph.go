//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>

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

// gorgonia.org/cu (v0.9.6) has no stream capture or graph launch, so these
// few calls go to the driver directly. A decode step is ~7 launches per
// layer; enqueued one by one they cost the host more than the device takes
// to run them (a few µs each against ~3 µs of a 1.1B layer's weights at HBM
// speed), so the step is captured once and replayed as one graph.

// cuStream is the driver handle inside a cu.Stream (a struct holding just
// that pointer).
func cuStream(s cu.Stream) C.CUstream { return *(*C.CUstream)(unsafe.Pointer(&s)) }

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
