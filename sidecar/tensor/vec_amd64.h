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

// The row loop of the Q8_0 rows kernels (vdQ8_0RowsAVX2, vdQ8_0RowsVNNI),
// which differ only in BLOCK, the macro adding one block's product
// (Q8BLOCK, Q8VNNI). Expects DI = out, R11 = w, R12 = n, R14 = the
// f16→f32 table; reads qs, ax, d, nb and rb from the frame. Even blocks add
// into Y0, odd into Y1, so a row's sum does not depend on n. Four blocks a
// step, prefetching the weights q8PF bytes ahead (rows laid end to end are
// one stream).
#define Q8ROWS(BLOCK) \
qrrow: \
	MOVQ        R11, SI \
	MOVQ        qs+32(FP), BX \
	MOVQ        ax+40(FP), R13 \
	MOVQ        d+48(FP), DX \
	MOVQ        nb+56(FP), CX \
	VXORPS      Y0, Y0, Y0 \
	VXORPS      Y1, Y1, Y1 \
qrfour: \
	CMPQ        CX, $4 \
	JL          qrtwo \
	PREFETCHT0  q8PF(SI) \
	PREFETCHT0  (q8PF+64)(SI) \
	BLOCK(0, 0, Y2, Y3, Y4, Y5, Y0) \
	BLOCK(34, 32, Y6, Y7, Y8, Y9, Y1) \
	PREFETCHT0  (q8PF+128)(SI) \
	BLOCK(68, 64, Y2, Y3, Y4, Y5, Y0) \
	BLOCK(102, 96, Y6, Y7, Y8, Y9, Y1) \
	ADDQ        $136, SI \
	ADDQ        $128, BX \
	ADDQ        $128, R13 \
	ADDQ        $16, DX \
	SUBQ        $4, CX \
	JMP         qrfour \
qrtwo: \
	CMPQ        CX, $2 \
	JL          qrone \
	BLOCK(0, 0, Y2, Y3, Y4, Y5, Y0) \
	BLOCK(34, 32, Y6, Y7, Y8, Y9, Y1) \
	ADDQ        $68, SI \
	ADDQ        $64, BX \
	ADDQ        $64, R13 \
	ADDQ        $8, DX \
	SUBQ        $2, CX \
qrone: \
	TESTQ       CX, CX \
	JZ          qrdone \
	BLOCK(0, 0, Y2, Y3, Y4, Y5, Y0) \
qrdone: \
	VADDPS Y1, Y0, Y0 \
	HSUM(Y0, X0, X1) \
	VMOVSS X0, (DI) \
	ADDQ   $4, DI \
	ADDQ   rb+24(FP), R11 \
	DECQ   R12 \
	JNZ    qrrow \
	VZEROUPPER \
	RET
