// Macros shared by the AVX2 and AVX-512 kernels (attn_amd64.s,
// kernels_amd64.s, avx512_amd64.s).

// Four vector registers to zero (accumulators before a loop).
#define ZERO4(A, B, C, D) VXORPS A, A, A; VXORPS B, B, B; VXORPS C, C, C; VXORPS D, D, D

// The sum of Y's eight lanes into X's low lane (X is Y's low half; XT is
// scratch).
#define HSUM(Y, X, XT) VEXTRACTF128 $1, Y, XT; VADDPS XT, X, X; VHADDPS X, X, X; VHADDPS X, X, X

// An int32 argument in every lane of Y (through X and AX).
#define BCAST32(ARG, X, Y) MOVL ARG, AX; VMOVD AX, X; VPBROADCASTD X, Y

// How far ahead the quantized row kernels (vdQ8_0Rows*, vdQ4_0RowsAVX2,
// vdQ4KRowsAVX2, vdQ6KRowsAVX2) prefetch their weights; they spend more
// instructions per byte than the float kernels (matVecPF): on Q8_0, 2 KB
// ahead measured a little faster than 1 KB (medians of 5, 178 vs 174
// tok/s), 3 KB the same as 2.
#define q8PF 2048
