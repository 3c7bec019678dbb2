//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// Row loads for the macros below (macro arguments cannot hold commas).
#define KF32A VMOVUPS (SI)(AX*4), Y2
#define KF32B VMOVUPS 32(SI)(AX*4), Y3
#define KF16A VCVTPH2PS (SI)(AX*2), Y2
#define KF16B VCVTPH2PS 16(SI)(AX*2), Y3
#define VF32_0 VMOVUPS (R9), Y5
#define VF32_1 VMOVUPS 32(R9), Y6
#define VF32_2 VMOVUPS 64(R9), Y7
#define VF32_3 VMOVUPS 96(R9), Y8
#define VF16_0 VCVTPH2PS (R9), Y5
#define VF16_1 VCVTPH2PS 16(R9), Y6
#define VF16_2 VCVTPH2PS 32(R9), Y7
#define VF16_3 VCVTPH2PS 48(R9), Y8
#define VF32_4 VMOVUPS 128(R9), Y5
#define VF32_5 VMOVUPS 160(R9), Y6
#define VF32_6 VMOVUPS 192(R9), Y7
#define VF32_7 VMOVUPS 224(R9), Y8
#define VF16_4 VCVTPH2PS 64(R9), Y5
#define VF16_5 VCVTPH2PS 80(R9), Y6
#define VF16_6 VCVTPH2PS 96(R9), Y7
#define VF16_7 VCVTPH2PS 112(R9), Y8

#define PF32 PREFETCHT0 (AX); PREFETCHT0 64(AX); PREFETCHT0 128(AX); PREFETCHT0 192(AX); ADDQ $256, AX
#define PF16 PREFETCHT0 (AX); PREFETCHT0 64(AX); ADDQ $128, AX

// AxpyRows' prefetch of the caller's next block (R11), one row's worth per
// row: over all column passes that is the whole block.
#define PFV32 PREFETCHT0 (R11); PREFETCHT0 64(R11); PREFETCHT0 128(R11); PREFETCHT0 192(R11); ADDQ $256, R11
#define PFV16 PREFETCHT0 (R11); PREFETCHT0 64(R11); ADDQ $128, R11

// Eight rows at a time (row addresses BX + m·R12, R13 = 3·R12, R14 = 5·R12,
// R15 = 7·R12), one query vector load per eight FMAs.
#define G32_0 VFMADD231PS (BX), Y8, Y0
#define G32_1 VFMADD231PS (BX)(R12*1), Y8, Y1
#define G32_2 VFMADD231PS (BX)(R12*2), Y8, Y2
#define G32_3 VFMADD231PS (BX)(R13*1), Y8, Y3
#define G32_4 VFMADD231PS (BX)(R12*4), Y8, Y4
#define G32_5 VFMADD231PS (BX)(R14*1), Y8, Y5
#define G32_6 VFMADD231PS (BX)(R13*2), Y8, Y6
#define G32_7 VFMADD231PS (BX)(R15*1), Y8, Y7
#define G16_0 VCVTPH2PS (BX), Y9; VFMADD231PS Y9, Y8, Y0
#define G16_1 VCVTPH2PS (BX)(R12*1), Y10; VFMADD231PS Y10, Y8, Y1
#define G16_2 VCVTPH2PS (BX)(R12*2), Y11; VFMADD231PS Y11, Y8, Y2
#define G16_3 VCVTPH2PS (BX)(R13*1), Y12; VFMADD231PS Y12, Y8, Y3
#define G16_4 VCVTPH2PS (BX)(R12*4), Y13; VFMADD231PS Y13, Y8, Y4
#define G16_5 VCVTPH2PS (BX)(R14*1), Y14; VFMADD231PS Y14, Y8, Y5
#define G16_6 VCVTPH2PS (BX)(R13*2), Y9; VFMADD231PS Y9, Y8, Y6
#define G16_7 VCVTPH2PS (BX)(R15*1), Y10; VFMADD231PS Y10, Y8, Y7

// Scores of one query against n rows (stride elements apart) over their
// first d values, d a multiple of 8: out[j] = scale·(row j · q). Groups
// of eight rows share each query load and finish with one transposing
// horizontal-add tree; leftover rows use two accumulators each.
//
// While a group streams, the same number of bytes of the block the caller
// reads next (next, through AX) is prefetched, PF lines per column step, so
// that block starts with its lines in flight instead of waiting for the
// hardware prefetcher to cross into its pages: KV cache blocks are separate
// allocations. Prefetches past the end never fault. (MatVec's weight rows
// use kernels_amd64.s's one-row stream instead: there, eight rows with the
// next group prefetched decoded ~10% slower.)
#define DOTROWS(LOADA, LOADB, ROWSHIFT, G0, G1, G2, G3, G4, G5, G6, G7, COLBYTES, PF) \
	MOVQ         out+0(FP), DI \
	MOVQ         k+8(FP), SI \
	MOVQ         n+16(FP), CX \
	MOVQ         d+24(FP), DX \
	MOVQ         stride+32(FP), R11 \
	MOVQ         q+40(FP), R8 \
	VBROADCASTSS scale+48(FP), Y15 \
	LEAQ         (R11*ROWSHIFT), R12 \
	LEAQ         (R12)(R12*2), R13 \
	LEAQ         (R12)(R12*4), R14 \
	LEAQ         (R13)(R12*4), R15 \
	MOVQ         next+56(FP), AX \
	\
group8: \
	CMPQ   CX, $8 \
	JLT    row \
	ZERO4(Y0, Y1, Y2, Y3) \
	ZERO4(Y4, Y5, Y6, Y7) \
	MOVQ   SI, BX \
	MOVQ   R8, R9 \
	MOVQ   DX, R10 \
	\
g8col: \
	TESTQ   R10, R10 \
	JZ      g8reduce \
	PF \
	VMOVUPS (R9), Y8 \
	G0 \
	G1 \
	G2 \
	G3 \
	G4 \
	G5 \
	G6 \
	G7 \
	ADDQ    $COLBYTES, BX \
	ADDQ    $32, R9 \
	SUBQ    $8, R10 \
	JMP     g8col \
	\
g8reduce: \
	VHADDPS    Y1, Y0, Y0 \
	VHADDPS    Y3, Y2, Y2 \
	VHADDPS    Y5, Y4, Y4 \
	VHADDPS    Y7, Y6, Y6 \
	VHADDPS    Y2, Y0, Y0 \
	VHADDPS    Y6, Y4, Y4 \
	VPERM2F128 $0x20, Y4, Y0, Y1 \
	VPERM2F128 $0x31, Y4, Y0, Y2 \
	VADDPS     Y2, Y1, Y1 \
	VMULPS     Y15, Y1, Y1 \
	VMOVUPS    Y1, (DI) \
	ADDQ       $32, DI \
	LEAQ       (SI)(R12*8), SI \
	SUBQ       $8, CX \
	JMP        group8 \
	\
row: \
	TESTQ CX, CX \
	JZ    done \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	XORQ   AX, AX \
	MOVQ   DX, BX \
	\
d16: \
	CMPQ        BX, $16 \
	JLT         d8 \
	LOADA \
	LOADB \
	VFMADD231PS (R8)(AX*4), Y2, Y0 \
	VFMADD231PS 32(R8)(AX*4), Y3, Y1 \
	ADDQ        $16, AX \
	SUBQ        $16, BX \
	JMP         d16 \
	\
d8: \
	TESTQ       BX, BX \
	JZ          reduce \
	LOADA \
	VFMADD231PS (R8)(AX*4), Y2, Y0 \
	\
reduce: \
	VADDPS       Y1, Y0, Y0 \
	HSUM(Y0, X0, X1) \
	VMULSS       X15, X0, X0 \
	VMOVSS       X0, (DI) \
	ADDQ         $4, DI \
	LEAQ         (SI)(R11*ROWSHIFT), SI \
	DECQ         CX \
	JNZ          row \
	\
done: \
	VZEROUPPER \
	RET

// Four vectors of out at R (32 columns), and the FMA of the row's four
// loaded vectors (Y5–Y8) by the broadcast weight Y4 into them.
#define OUTLOAD4(R, A, B, C, D) VMOVUPS (R), A; VMOVUPS 32(R), B; VMOVUPS 64(R), C; VMOVUPS 96(R), D
#define OUTSTORE4(R, A, B, C, D) VMOVUPS A, (R); VMOVUPS B, 32(R); VMOVUPS C, 64(R); VMOVUPS D, 96(R)
#define FMA4(A, B, C, D) VFMADD231PS Y5, Y4, A; VFMADD231PS Y6, Y4, B; VFMADD231PS Y7, Y4, C; VFMADD231PS Y8, Y4, D

// out[:d] += Σ_j p[j]·row j, 64 columns at a time held in registers across
// all n rows (eight independent accumulator chains keep both FMA pipes
// busy at head dim 64/128), then 32, then 8 at a time. The 64-column
// passes prefetch the caller's next block (PF, through R11).
#define AXPYROWS(L0, L1, L2, L3, L4, L5, L6, L7, ROWSHIFT, COLSHIFT, PF) \
	MOVQ out+0(FP), DI \
	MOVQ v+8(FP), SI \
	MOVQ n+16(FP), CX \
	MOVQ d+24(FP), DX \
	MOVQ p+32(FP), R8 \
	MOVQ next+40(FP), R11 \
	XORQ AX, AX \
	\
col64: \
	MOVQ    DX, BX \
	SUBQ    AX, BX \
	CMPQ    BX, $64 \
	JLT     col32 \
	LEAQ    (DI)(AX*4), R12 \
	LEAQ    128(R12), R13 \
	OUTLOAD4(R12, Y0, Y1, Y2, Y3) \
	OUTLOAD4(R13, Y9, Y10, Y11, Y12) \
	LEAQ    (SI)(AX*COLSHIFT), R9 \
	XORQ    R10, R10 \
	\
j64: \
	PF \
	VBROADCASTSS (R8)(R10*4), Y4 \
	L0 \
	L1 \
	L2 \
	L3 \
	FMA4(Y0, Y1, Y2, Y3) \
	L4 \
	L5 \
	L6 \
	L7 \
	FMA4(Y9, Y10, Y11, Y12) \
	LEAQ         (R9)(DX*ROWSHIFT), R9 \
	INCQ         R10 \
	CMPQ         R10, CX \
	JLT          j64 \
	OUTSTORE4(R12, Y0, Y1, Y2, Y3) \
	OUTSTORE4(R13, Y9, Y10, Y11, Y12) \
	ADDQ         $64, AX \
	JMP          col64 \
	\
col32: \
	MOVQ    DX, BX \
	SUBQ    AX, BX \
	CMPQ    BX, $32 \
	JLT     col8 \
	LEAQ    (DI)(AX*4), R12 \
	OUTLOAD4(R12, Y0, Y1, Y2, Y3) \
	LEAQ    (SI)(AX*COLSHIFT), R9 \
	XORQ    R10, R10 \
	\
j32: \
	VBROADCASTSS (R8)(R10*4), Y4 \
	L0 \
	L1 \
	L2 \
	L3 \
	FMA4(Y0, Y1, Y2, Y3) \
	LEAQ         (R9)(DX*ROWSHIFT), R9 \
	INCQ         R10 \
	CMPQ         R10, CX \
	JLT          j32 \
	OUTSTORE4(R12, Y0, Y1, Y2, Y3) \
	ADDQ         $32, AX \
	JMP          col32 \
	\
col8: \
	CMPQ    AX, DX \
	JGE     done \
	VMOVUPS (DI)(AX*4), Y0 \
	LEAQ    (SI)(AX*COLSHIFT), R9 \
	XORQ    R10, R10 \
	\
j8: \
	VBROADCASTSS (R8)(R10*4), Y4 \
	L0 \
	VFMADD231PS  Y5, Y4, Y0 \
	LEAQ         (R9)(DX*ROWSHIFT), R9 \
	INCQ         R10 \
	CMPQ         R10, CX \
	JLT          j8 \
	VMOVUPS      Y0, (DI)(AX*4) \
	ADDQ         $8, AX \
	JMP          col8 \
	\
done: \
	VZEROUPPER \
	RET

// func dotRowsAVX2(out *float32, k *float32, n, d, stride int, q *float32, scale float32, next *float32)
TEXT ·dotRowsAVX2(SB), NOSPLIT, $0-64
	DOTROWS(KF32A, KF32B, 4, G32_0, G32_1, G32_2, G32_3, G32_4, G32_5, G32_6, G32_7, 32, PF32)

// func dotRowsF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32, scale float32, next *uint16)
TEXT ·dotRowsF16AVX2(SB), NOSPLIT, $0-64
	DOTROWS(KF16A, KF16B, 2, G16_0, G16_1, G16_2, G16_3, G16_4, G16_5, G16_6, G16_7, 16, PF16)

// func axpyRowsAVX2(out *float32, v *float32, n, d int, p *float32, next *float32)
TEXT ·axpyRowsAVX2(SB), NOSPLIT, $0-48
	AXPYROWS(VF32_0, VF32_1, VF32_2, VF32_3, VF32_4, VF32_5, VF32_6, VF32_7, 4, 4, PFV32)

// func axpyRowsF16AVX2(out *float32, v *uint16, n, d int, p *float32, next *uint16)
TEXT ·axpyRowsF16AVX2(SB), NOSPLIT, $0-48
	AXPYROWS(VF16_0, VF16_1, VF16_2, VF16_3, VF16_4, VF16_5, VF16_6, VF16_7, 2, 2, PFV16)

DATA expC<>+0(SB)/4, $-87.33654     // clamp: e^x below is ~1e-38, 2^n stays normal
DATA expC<>+4(SB)/4, $1.44269504088896341
DATA expC<>+8(SB)/4, $0.5
DATA expC<>+12(SB)/4, $0.693359375
DATA expC<>+16(SB)/4, $-2.12194440e-4
DATA expC<>+20(SB)/4, $1.9875691500e-4
DATA expC<>+24(SB)/4, $1.3981999507e-3
DATA expC<>+28(SB)/4, $8.3334519073e-3
DATA expC<>+32(SB)/4, $4.1665795894e-2
DATA expC<>+36(SB)/4, $1.6666665459e-1
DATA expC<>+40(SB)/4, $5.0000001201e-1
DATA expC<>+44(SB)/4, $1.0
DATA expC<>+48(SB)/4, $127
GLOBL expC<>(SB), RODATA|NOPTR, $52

// EXP8 is expf (attn.go) on eight lanes: Y5 = e^Y0 for Y0 already clamped
// below at −87.3 (Y14 in the callers). x = n·ln2 + r with r reduced in two
// steps, a degree-6 polynomial for e^r, 2^n from the exponent bits.
// Constants in registers (EXP8CONSTS): Y14 the clamp, Y13 log2e, Y11 and
// Y10 the two parts of ln2, Y9 1.0, Y8 127 (int32). Clobbers Y0–Y4.
#define EXP8CONSTS \
	VBROADCASTSS expC<>+0(SB), Y14 \
	VBROADCASTSS expC<>+4(SB), Y13 \
	VBROADCASTSS expC<>+12(SB), Y11 \
	VBROADCASTSS expC<>+16(SB), Y10 \
	VBROADCASTSS expC<>+44(SB), Y9 \
	VPBROADCASTD expC<>+48(SB), Y8

#define EXP8 \
	VBROADCASTSS expC<>+8(SB), Y1 \
	VFMADD231PS  Y13, Y0, Y1 \
	VROUNDPS     $1, Y1, Y1 \
	VFNMADD231PS Y11, Y1, Y0 \
	VFNMADD231PS Y10, Y1, Y0 \
	VBROADCASTSS expC<>+20(SB), Y2 \
	VBROADCASTSS expC<>+24(SB), Y3 \
	VFMADD213PS  Y3, Y0, Y2 \
	VBROADCASTSS expC<>+28(SB), Y3 \
	VFMADD213PS  Y3, Y0, Y2 \
	VBROADCASTSS expC<>+32(SB), Y3 \
	VFMADD213PS  Y3, Y0, Y2 \
	VBROADCASTSS expC<>+36(SB), Y3 \
	VFMADD213PS  Y3, Y0, Y2 \
	VBROADCASTSS expC<>+40(SB), Y3 \
	VFMADD213PS  Y3, Y0, Y2 \
	VMULPS       Y0, Y0, Y4 \
	VADDPS       Y9, Y0, Y5 \
	VFMADD231PS  Y4, Y2, Y5 \
	VCVTTPS2DQ   Y1, Y1 \
	VPADDD       Y8, Y1, Y1 \
	VPSLLD       $23, Y1, Y1 \
	VMULPS       Y1, Y5, Y5


// func expSumAVX2(x *float32, n int, mx float32) float32
// x[i] = e^(x[i]−mx) for n a multiple of 8, returning Σ x[i]: expf's
// algorithm (attn.go) eight lanes at a time.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS mx+16(FP), Y15
	EXP8CONSTS
	VXORPS       Y7, Y7, Y7

exploop:
	VMOVUPS      (SI), Y0
	VSUBPS       Y15, Y0, Y0
	VCMPPS       $1, Y14, Y0, Y6      // lanes below the clamp give exactly 0, as expf does
	VMAXPS       Y14, Y0, Y0
	EXP8
	VANDNPS      Y5, Y6, Y5
	VMOVUPS      Y5, (SI)
	VADDPS       Y5, Y7, Y7
	ADDQ         $32, SI
	SUBQ         $8, CX
	JNZ          exploop

	VEXTRACTF128 $1, Y7, X0
	VADDPS       X7, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func maxAVX2(x *float32, n int) float32 (n a positive multiple of 8)
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	ADDQ    $32, SI
	SUBQ    $8, CX

maxloop:
	TESTQ  CX, CX
	JZ     maxdone
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    maxloop

maxdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func scaleAVX2(a float32, x *float32, n int) (n a multiple of 8)
TEXT ·scaleAVX2(SB), NOSPLIT, $0-24
	VBROADCASTSS a+0(FP), Y1
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX

scaleloop:
	TESTQ   CX, CX
	JZ      scaledone
	VMULPS  (SI), Y1, Y0
	VMOVUPS Y0, (SI)
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     scaleloop

scaledone:
	VZEROUPPER
	RET

// Four dot products (rows AX, BX, R12, R13 against one query in Y0–Y3)
// reduced to X0, scaled, and stored at (R15).
#define QUADSTORE(A0, A1, A2, A3, X0R, X1R, DST) \
	VHADDPS      A1, A0, A0 \
	VHADDPS      A3, A2, A2 \
	VHADDPS      A2, A0, A0 \
	VEXTRACTF128 $1, A0, X1R \
	VADDPS       X1R, X0R, X0R \
	VMULPS       X15, X0R, X0R \
	VMOVUPS      X0R, DST

// func dotRowsIdxAVX2(out *float32, k *float32, idx *int32, n, d, stride int, q *float32, nq, ostride int, scale float32)
// out[c·ostride + m] = scale·(row idx[m] · query c) for nq queries (stride
// floats apart, as the rows) over the rows' first d values (d a multiple of
// 8, rows stride floats apart), four rows at a time (n a multiple of 4).
// Each quad's rows serve every query while they sit in L1, two queries at a
// time: per eight columns, six loads feed eight FMAs into eight independent
// accumulators (4 rows × 2 queries), so the FMA pipes, not the loads, set
// the pace.
TEXT ·dotRowsIdxAVX2(SB), NOSPLIT, $0-76
	MOVQ         out+0(FP), DI
	MOVQ         idx+16(FP), SI
	MOVQ         n+24(FP), CX
	MOVQ         d+32(FP), DX
	SHLQ         $2, DX
	MOVQ         stride+40(FP), R11
	SHLQ         $2, R11
	VBROADCASTSS scale+72(FP), X15

quad:
	TESTQ   CX, CX
	JZ      idxdone
	MOVQ    k+8(FP), R8
	MOVLQSX (SI), AX
	IMULQ   R11, AX
	ADDQ    R8, AX
	MOVLQSX 4(SI), BX
	IMULQ   R11, BX
	ADDQ    R8, BX
	MOVLQSX 8(SI), R12
	IMULQ   R11, R12
	ADDQ    R8, R12
	MOVLQSX 12(SI), R13
	IMULQ   R11, R13
	ADDQ    R8, R13
	MOVQ    q+48(FP), R9
	MOVQ    DI, R15
	MOVQ    nq+56(FP), R14

pair:
	CMPQ   R14, $2
	JLT    single
	LEAQ   (R9)(R11*1), R8
	ZERO4(Y0, Y1, Y2, Y3)
	ZERO4(Y4, Y5, Y6, Y7)
	XORQ   R10, R10

pcol:
	VMOVUPS     (R9)(R10*1), Y12
	VMOVUPS     (R8)(R10*1), Y13
	VMOVUPS     (AX)(R10*1), Y8
	VFMADD231PS Y8, Y12, Y0
	VFMADD231PS Y8, Y13, Y4
	VMOVUPS     (BX)(R10*1), Y9
	VFMADD231PS Y9, Y12, Y1
	VFMADD231PS Y9, Y13, Y5
	VMOVUPS     (R12)(R10*1), Y10
	VFMADD231PS Y10, Y12, Y2
	VFMADD231PS Y10, Y13, Y6
	VMOVUPS     (R13)(R10*1), Y11
	VFMADD231PS Y11, Y12, Y3
	VFMADD231PS Y11, Y13, Y7
	ADDQ        $32, R10
	CMPQ        R10, DX
	JLT         pcol
	QUADSTORE(Y0, Y1, Y2, Y3, X0, X1, (R15))
	MOVQ        ostride+64(FP), R8
	LEAQ        (R15)(R8*4), R15
	QUADSTORE(Y4, Y5, Y6, Y7, X4, X5, (R15))
	LEAQ        (R15)(R8*4), R15
	LEAQ        (R9)(R11*2), R9
	SUBQ        $2, R14
	JMP         pair

single:
	TESTQ  R14, R14
	JZ     nextquad
	ZERO4(Y0, Y1, Y2, Y3)
	XORQ   R10, R10

scol:
	VMOVUPS     (R9)(R10*1), Y12
	VFMADD231PS (AX)(R10*1), Y12, Y0
	VFMADD231PS (BX)(R10*1), Y12, Y1
	VFMADD231PS (R12)(R10*1), Y12, Y2
	VFMADD231PS (R13)(R10*1), Y12, Y3
	ADDQ        $32, R10
	CMPQ        R10, DX
	JLT         scol
	QUADSTORE(Y0, Y1, Y2, Y3, X0, X1, (R15))

nextquad:
	ADDQ $16, DI
	ADDQ $16, SI
	SUBQ $4, CX
	JMP  quad

idxdone:
	VZEROUPPER
	RET

// The masked sums' shared steps: V's lanes added to Y12 (hi) where Y4 is
// set and to Y7 (lo) elsewhere; at the end both reduced and returned.
#define SPLITADD(V) VANDPS V, Y4, Y3; VADDPS Y3, Y12, Y12; VANDNPS V, Y4, Y3; VADDPS Y3, Y7, Y7
#define RETLOHI(LO, HI) HSUM(Y7, X7, X0); MOVSS X7, LO; HSUM(Y12, X12, X0); MOVSS X12, HI; VZEROUPPER; RET

// func expSumMaskedAVX2(x *float32, rank, pos *int32, n int, shift float32, maxRank, maxPos, split1 int32) (lo, hi float32)
// Over n entries (a multiple of 8): e = e^(x−shift) as expSumAVX2, zero
// where rank > maxRank or pos > maxPos, summed into hi where pos > split1
// and into lo elsewhere.
TEXT ·expSumMaskedAVX2(SB), NOSPLIT, $96-56
	BCAST32(maxRank+36(FP), X3, Y3) // the three bounds, broadcast to locals
	VMOVDQU      Y3, maxr-96(SP)
	BCAST32(maxPos+40(FP), X3, Y3)
	VMOVDQU      Y3, maxp-64(SP)
	BCAST32(split1+44(FP), X3, Y3)
	VMOVDQU      Y3, split-32(SP)
	MOVQ         x+0(FP), SI
	MOVQ         rank+8(FP), R8
	MOVQ         pos+16(FP), R9
	MOVQ         n+24(FP), CX
	VBROADCASTSS shift+32(FP), Y15
	EXP8CONSTS
	VXORPS       Y7, Y7, Y7
	VXORPS       Y12, Y12, Y12

maskloop:
	VMOVUPS      (SI), Y0
	VSUBPS       Y15, Y0, Y0
	VMOVDQU      (R8), Y4
	VPCMPGTD     maxr-96(SP), Y4, Y6  // rank > maxRank
	VMOVDQU      (R9), Y4
	VPCMPGTD     maxp-64(SP), Y4, Y3  // pos > maxPos
	VPOR         Y3, Y6, Y6
	VCMPPS       $1, Y14, Y0, Y3      // below the clamp: exactly 0, as expf
	VPOR         Y3, Y6, Y6
	VMAXPS       Y14, Y0, Y0
	EXP8
	VANDNPS      Y5, Y6, Y5           // masked lanes: 0
	VMOVDQU      (R9), Y4
	VPCMPGTD     split-32(SP), Y4, Y4 // pos > split1
	SPLITADD(Y5)
	ADDQ         $32, SI
	ADDQ         $32, R8
	ADDQ         $32, R9
	SUBQ         $8, CX
	JNZ          maskloop

	RETLOHI(lo+48(FP), hi+52(FP))

DATA laneIndex<>+0(SB)/8, $0x0000000100000000 // 0, 1, …, 7 as int32
DATA laneIndex<>+8(SB)/8, $0x0000000300000002
DATA laneIndex<>+16(SB)/8, $0x0000000500000004
DATA laneIndex<>+24(SB)/8, $0x0000000700000006
GLOBL laneIndex<>(SB), RODATA|NOPTR, $32

// func sumMaskedF16AVX2(x *uint16, rank, pos *int32, n int, maxRank, split1 int32) (lo, hi float32)
// Over the first n entries (n > 0; whole vectors are read, lanes from n on
// are ignored): x converted where rank ≤ maxRank, summed into hi where
// pos > split1 and into lo elsewhere.
TEXT ·sumMaskedF16AVX2(SB), NOSPLIT, $0-48
	MOVQ         x+0(FP), SI
	MOVQ         rank+8(FP), R8
	MOVQ         pos+16(FP), R9
	MOVQ         n+24(FP), CX
	BCAST32(maxRank+32(FP), X8, Y8)
	BCAST32(split1+36(FP), X9, Y9)
	VMOVD        CX, X10
	VPBROADCASTD X10, Y10       // n
	VMOVDQU      laneIndex<>(SB), Y11 // each lane's entry index
	BCAST32($8, X13, Y13)
	VXORPS       Y7, Y7, Y7
	VXORPS       Y12, Y12, Y12

summaskloop:
	VCVTPH2PS (SI), Y0
	VMOVDQU   (R8), Y5
	VPCMPGTD  Y8, Y5, Y6  // rank > maxRank
	VPCMPGTD  Y11, Y10, Y5 // n > index
	VPANDN    Y5, Y6, Y6  // counted lanes
	VANDPS    Y0, Y6, Y0
	VMOVDQU   (R9), Y4
	VPCMPGTD  Y9, Y4, Y4  // pos > split1
	SPLITADD(Y0)
	VPADDD    Y13, Y11, Y11
	ADDQ      $16, SI
	ADDQ      $32, R8
	ADDQ      $32, R9
	SUBQ      $8, CX
	JGT       summaskloop

	RETLOHI(lo+40(FP), hi+44(FP))

DATA swigluHi<>+0(SB)/4, $88.0
GLOBL swigluHi<>(SB), RODATA|NOPTR, $4

// func swigluAVX2(out, gate, up *float32, n int)
// out[i] = gate[i]·up[i] / (1 + e^−gate[i]) for n a multiple of 8, e^x as
// expSumAVX2 with x clamped to [−87.3, 88] (outside it the quotient is
// gate·up or 0 to float precision either way). out may alias gate or up.
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ         out+0(FP), DI
	MOVQ         gate+8(FP), SI
	MOVQ         up+16(FP), DX
	MOVQ         n+24(FP), CX
	EXP8CONSTS
	VBROADCASTSS swigluHi<>+0(SB), Y12

swiglu:
	VMOVUPS      (SI), Y15
	VXORPS       Y0, Y0, Y0
	VSUBPS       Y15, Y0, Y0          // x = −g
	VMINPS       Y12, Y0, Y0
	VMAXPS       Y14, Y0, Y0
	EXP8
	VADDPS       Y9, Y5, Y5           // 1 + e^−g
	VMULPS       (DX), Y15, Y1        // g·u
	VDIVPS       Y5, Y1, Y1
	VMOVUPS      Y1, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, DI
	SUBQ         $8, CX
	JNZ          swiglu
	VZEROUPPER
	RET

// func mulScaleAVX2(out, x, w *float32, n int, s float32)
// out[i] = x[i]·s·w[i] for n a multiple of 8, rounded as the scalar loop.
TEXT ·mulScaleAVX2(SB), NOSPLIT, $0-36
	MOVQ         out+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         w+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS s+32(FP), Y15

mulscale:
	VMULPS  (SI), Y15, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     mulscale
	VZEROUPPER
	RET
