// Package tensor holds the numeric core of fastgen: GGML data types and their
// block layouts, quantizers, the kernels the forward pass spends its time in
// (matrix-vector, matrix-matrix, dot, axpy, norms), and the worker pool that
// runs them in parallel.
//
// Block layouts match GGML/llama.cpp byte for byte so tensors read from real
// GGUF files can be used in place. Hot kernels have AVX2/FMA/F16C assembly on
// amd64, chosen once at start-up from golang.org/x/sys/cpu; every kernel also
// has a portable Go version, selected on other architectures, with the
// purego build tag, or at run time with SetGeneric.
package tensor

import (
	"fmt"
	"strings"
)

// DType is a GGML tensor type id; the numeric values are the ones stored in
// GGUF files, so a DType can be read straight from a tensor header.
type DType uint32

// The supported GGML types.
const (
	F32  DType = 0
	F16  DType = 1
	Q4_0 DType = 2
	Q8_0 DType = 8
	Q4_K DType = 12
	Q6_K DType = 14
	BF16 DType = 30
)

// Block geometry, shared by quantizers and kernels.
const (
	qk4_0 = 32
	qk8_0 = 32
	qkK   = 256 // super-block size of the k-quants

	q4_0Bytes = 2 + qk4_0/2                // f16 d, 16 bytes of nibbles
	q8_0Bytes = 2 + qk8_0                  // f16 d, 32 int8
	q4KBytes  = 2 + 2 + 12 + qkK/2         // f16 d, f16 dmin, 12 packed scales, 128 nibbles
	q6KBytes  = qkK/2 + qkK/4 + qkK/16 + 2 // ql, qh, int8 scales, f16 d
)

// String returns the lower-case name llama.cpp uses for the type.
func (t DType) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case Q4_0:
		return "q4_0"
	case Q8_0:
		return "q8_0"
	case Q4_K:
		return "q4_k"
	case Q6_K:
		return "q6_k"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("dtype(%d)", uint32(t))
}

// Valid reports whether t is one of the types this package can compute with.
func (t DType) Valid() bool {
	return t.BlockSize() != 0
}

// BlockSize returns the number of elements in one block (1 for float types),
// or 0 for an unsupported type.
func (t DType) BlockSize() int {
	switch t {
	case F32, F16, BF16:
		return 1
	case Q4_0:
		return qk4_0
	case Q8_0:
		return qk8_0
	case Q4_K, Q6_K:
		return qkK
	}
	return 0
}

// BlockBytes returns the encoded size of one block, or 0 for an unsupported type.
func (t DType) BlockBytes() int {
	switch t {
	case F32:
		return 4
	case F16, BF16:
		return 2
	case Q4_0:
		return q4_0Bytes
	case Q8_0:
		return q8_0Bytes
	case Q4_K:
		return q4KBytes
	case Q6_K:
		return q6KBytes
	}
	return 0
}

// RowBytes returns the encoded size of n elements. n must be a multiple of
// BlockSize; RowBytes panics otherwise, because a partial block has no
// encoding and silently rounding would misplace every later row.
func (t DType) RowBytes(n int) int {
	bs := t.BlockSize()
	if bs == 0 {
		panic("tensor: RowBytes of unsupported type " + t.String())
	}
	if n%bs != 0 {
		panic(fmt.Sprintf("tensor: %d elements is not a whole number of %s blocks (%d)", n, t, bs))
	}
	return n / bs * t.BlockBytes()
}

// ParseDType parses a type name such as "q4_k" or "F16", ignoring case.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "f32":
		return F32, nil
	case "f16":
		return F16, nil
	case "bf16":
		return BF16, nil
	case "q4_0":
		return Q4_0, nil
	case "q8_0":
		return Q8_0, nil
	case "q4_k":
		return Q4_K, nil
	case "q6_k":
		return Q6_K, nil
	}
	return 0, fmt.Errorf("tensor: unknown dtype %q (want f32, f16, bf16, q8_0, q4_0, q4_k or q6_k)", s)
}
