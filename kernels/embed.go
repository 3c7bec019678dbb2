// Package kernels holds fastgen's CUDA kernels (fastgen.cu) and the PTX that
// nvcc generates from them for sm_80 (A100) and sm_90 (H100), committed so
// that building the Go binary needs no CUDA compiler. `task kernels`
// regenerates the PTX; sidecar/cuda loads it with cu.LoadData. The driver
// JIT-compiles PTX for any newer architecture.
package kernels

import _ "embed"

//go:embed fastgen_sm80.ptx
var sm80 string

//go:embed fastgen_sm90.ptx
var sm90 string

// PTX returns the PTX for a device of compute capability major.minor: the
// newest build not newer than the device (sm_90 for 9.x and above, sm_80 for
// 8.x), or "" for devices older than sm_80.
func PTX(major, minor int) string {
	switch {
	case major >= 9:
		return sm90
	case major == 8:
		return sm80
	}
	return ""
}

// Names lists every kernel in fastgen.cu, which the backend looks up once.
var Names = []string{
	"matmul", "embed", "rmsnorm", "add_rows", "swiglu", "rope",
	"kv_append", "kv_move", "attend", "attn_scores",
	"prof_pass1", "prof_rank", "prof_pass2",
	"matvec", "attend_split", "attn_scores_dec", "table_set",
	"rope_k_append", "hbm_read",
}
