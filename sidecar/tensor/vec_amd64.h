// Macros shared by the AVX2 kernels (attn_amd64.s, kernels_amd64.s).

// Four vector registers to zero (accumulators before a loop).
#define ZERO4(A, B, C, D) VXORPS A, A, A; VXORPS B, B, B; VXORPS C, C, C; VXORPS D, D, D

// The sum of Y's eight lanes into X's low lane (X is Y's low half; XT is
// scratch).
#define HSUM(Y, X, XT) VEXTRACTF128 $1, Y, XT; VADDPS XT, X, X; VHADDPS X, X, X; VHADDPS X, X, X

// An int32 argument in every lane of Y (through X and AX).
#define BCAST32(ARG, X, Y) MOVL ARG, AX; VMOVD AX, X; VPBROADCASTD X, Y
