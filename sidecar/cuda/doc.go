// Package cuda is the CUDA backend (model.Backend) of fastgen: the forward
// pass and the FastGen compressed KV cache on an NVIDIA GPU, through the
// driver API (gorgonia.org/cu, plus the few calls it lacks — launch
// attributes, stream capture, graphs — made directly in driver.go) and the
// kernels embedded from kernels/.
//
// The device code is behind the `cuda` build tag (task build:cuda): cu's
// package init exits the process when no device is found, so the default
// build never imports it. The files without the tag are the host-side logic
// the device code relies on (resolving swap-remove moves, the device block
// pool's accounting, reading the weights by name, RoPE tables); they build
// and are tested everywhere.
//
// Policy decisions stay on the host, in kvcache: the host cache keeps each
// entry's position, flags and score, the device keeps the K/V rows in blocks
// that mirror the host's entry indexing (kvcache.Mirror). A decode step runs
// every layer on the device as one replayed graph, then makes one
// synchronisation: the logits and the step's attention received per entry
// come back, the host updates scores and applies the policies, and the
// resulting moves and freed blocks go back to the device with the next
// step. See docs/gpu.md.
package cuda
