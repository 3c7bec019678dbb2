//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// AVX-512 kernels (F, BW, VL; VNNI for the Q8_0 rows). They replace the
// AVX2 ones only where 32 vector registers or 512-bit lanes change what a
// kernel can do; every result here is bit-identical to the AVX2 kernel it
// replaces (same operations on each output, in the same order), so the
// choice of kernel set never changes a generated token.

// One k step of gemm12x16 at panel offset 64·T and activation offset 4·T:
// one panel load, then each of the twelve rows' x value broadcast from
// memory straight into its FMA (EVEX {1to16}), so a step is 13 loads and
// 12 FMAs with no broadcast µops.
#define G12STEP(T) \
	VMOVUPS              (64*T)(SI), Z12 \
	VFMADD231PS.BCST     (4*T)(R8), Z12, Z0 \
	VFMADD231PS.BCST     (4*T)(R8)(R9*1), Z12, Z1 \
	VFMADD231PS.BCST     (4*T)(R8)(R9*2), Z12, Z2 \
	VFMADD231PS.BCST     (4*T)(R10), Z12, Z3 \
	VFMADD231PS.BCST     (4*T)(R10)(R9*1), Z12, Z4 \
	VFMADD231PS.BCST     (4*T)(R10)(R9*2), Z12, Z5 \
	VFMADD231PS.BCST     (4*T)(R11), Z12, Z6 \
	VFMADD231PS.BCST     (4*T)(R11)(R9*1), Z12, Z7 \
	VFMADD231PS.BCST     (4*T)(R11)(R9*2), Z12, Z8 \
	VFMADD231PS.BCST     (4*T)(R12), Z12, Z9 \
	VFMADD231PS.BCST     (4*T)(R12)(R9*1), Z12, Z10 \
	VFMADD231PS.BCST     (4*T)(R12)(R9*2), Z12, Z11

// c[j·cs : j·cs+16] (+)= Zacc (row j of the block).
#define G12ADD(Z) \
	VADDPS  (DI), Z, Z \
	VMOVUPS Z, (DI) \
	ADDQ    R9, DI

#define G12SET(Z) \
	VMOVUPS Z, (DI) \
	ADDQ    R9, DI

// func gemm12x16AVX512(wp *float32, k int, x *float32, xs int, c *float32, cs int, add bool)
//
// gemm6x16AVX2's product for twelve activation rows: c[j*cs+i] (+)=
// Σ_kk x[j*xs+kk]·wp[kk*16+i] for j < 12, i < 16. A row of the 16-wide
// panel is one zmm, so the block is twelve accumulators, each summed over
// kk in order exactly as the AVX2 kernel sums its half-rows: the results
// are identical. Twelve independent FMA chains cover two 512-bit FMA pipes
// at a latency of 4–6 cycles, where six (the AVX2 kernel's shape in zmm)
// would leave a quarter of them idle.
TEXT ·gemm12x16AVX512(SB), NOSPLIT, $0-49
	MOVQ    wp+0(FP), SI
	MOVQ    k+8(FP), CX
	MOVQ    x+16(FP), R8
	MOVQ    xs+24(FP), R9
	SHLQ    $2, R9
	LEAQ    (R9)(R9*2), AX
	LEAQ    (R8)(AX*1), R10
	LEAQ    (R10)(AX*1), R11
	LEAQ    (R11)(AX*1), R12
	VPXORD  Z0, Z0, Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
	VMOVAPS Z0, Z4
	VMOVAPS Z0, Z5
	VMOVAPS Z0, Z6
	VMOVAPS Z0, Z7
	VMOVAPS Z0, Z8
	VMOVAPS Z0, Z9
	VMOVAPS Z0, Z10
	VMOVAPS Z0, Z11

g12four:
	CMPQ CX, $4
	JL   g12one
	G12STEP(0)
	G12STEP(1)
	G12STEP(2)
	G12STEP(3)
	ADDQ $256, SI
	ADDQ $16, R8
	ADDQ $16, R10
	ADDQ $16, R11
	ADDQ $16, R12
	SUBQ $4, CX
	JMP  g12four

g12one:
	TESTQ CX, CX
	JZ    g12store
	G12STEP(0)
	ADDQ  $64, SI
	ADDQ  $4, R8
	ADDQ  $4, R10
	ADDQ  $4, R11
	ADDQ  $4, R12
	DECQ  CX
	JMP   g12one

g12store:
	MOVQ c+32(FP), DI
	MOVQ cs+40(FP), R9
	SHLQ $2, R9
	CMPB add+48(FP), $0
	JEQ  g12set
	G12ADD(Z0)
	G12ADD(Z1)
	G12ADD(Z2)
	G12ADD(Z3)
	G12ADD(Z4)
	G12ADD(Z5)
	G12ADD(Z6)
	G12ADD(Z7)
	G12ADD(Z8)
	G12ADD(Z9)
	G12ADD(Z10)
	G12ADD(Z11)
	VZEROUPPER
	RET

g12set:
	G12SET(Z0)
	G12SET(Z1)
	G12SET(Z2)
	G12SET(Z3)
	G12SET(Z4)
	G12SET(Z5)
	G12SET(Z6)
	G12SET(Z7)
	G12SET(Z8)
	G12SET(Z9)
	G12SET(Z10)
	G12SET(Z11)
	VZEROUPPER
	RET

// func fmaLoopAVX512(n int)
//
// n × 16 independent 512-bit FMAs on registers: the multiply-add peak of
// a core whose FMA pipes are 512 bits wide (on one that splits zmm work in
// two 256-bit halves it reads the same as the AVX2 loop).
TEXT ·fmaLoopAVX512(SB), NOSPLIT, $0-8
	MOVQ    n+0(FP), CX
	VPXORD  Z0, Z0, Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
	VMOVAPS Z0, Z4
	VMOVAPS Z0, Z5
	VMOVAPS Z0, Z6
	VMOVAPS Z0, Z7
	VMOVAPS Z0, Z8
	VMOVAPS Z0, Z9
	VMOVAPS Z0, Z10
	VMOVAPS Z0, Z11
	VMOVAPS Z0, Z12
	VMOVAPS Z0, Z13
	VMOVAPS Z0, Z14
	VMOVAPS Z0, Z15
	VMOVAPS Z0, Z16
	VMOVAPS Z0, Z17
	TESTQ   CX, CX
	JZ      fma5done

fma5loop:
	VFMADD231PS Z16, Z17, Z0
	VFMADD231PS Z16, Z17, Z1
	VFMADD231PS Z16, Z17, Z2
	VFMADD231PS Z16, Z17, Z3
	VFMADD231PS Z16, Z17, Z4
	VFMADD231PS Z16, Z17, Z5
	VFMADD231PS Z16, Z17, Z6
	VFMADD231PS Z16, Z17, Z7
	VFMADD231PS Z16, Z17, Z8
	VFMADD231PS Z16, Z17, Z9
	VFMADD231PS Z16, Z17, Z10
	VFMADD231PS Z16, Z17, Z11
	VFMADD231PS Z16, Z17, Z12
	VFMADD231PS Z16, Z17, Z13
	VFMADD231PS Z16, Z17, Z14
	VFMADD231PS Z16, Z17, Z15
	DECQ        CX
	JNZ         fma5loop

fma5done:
	VZEROUPPER
	RET

// Q8BLOCK (kernels_amd64.s) with the integer dot product in one VNNI
// instruction: VPDPBUSD adds the four u8×s8 products of each int32 lane
// (|x| × w·sign(x)) straight into a cleared accumulator, where AVX2 needs
// VPMADDUBSW into int16 pairs and VPMADDWD to widen them. |x| ≤ 127 and
// |w| ≤ 128 keep AVX2's pairs below int16's limit, so both give the same
// int32 sums, and the float steps after them are the same operations.
#define Q8VNNI(OFF, XOFF, YA, YT, YS, YD, ACC) \
	VMOVDQU      XOFF(R13), YA \
	VMOVDQU      (OFF+2)(SI), YT \
	VPSIGNB      XOFF(BX), YT, YT \
	VPXORD       YS, YS, YS \
	VPDPBUSD     YT, YA, YS \
	VCVTDQ2PS    YS, YT \
	MOVWLZX      OFF(SI), AX \
	VBROADCASTSS (R14)(AX*4), YS \
	VBROADCASTSS (XOFF/8)(DX), YD \
	VMULPS       YD, YS, YS \
	VFMADD231PS  YS, YT, ACC

// func vdQ8_0RowsVNNI(out *float32, w *byte, n, rb int, qs *int8, ax *uint8, d *float32, nb int, f16 *float32)
//
// vdQ8_0RowsAVX2 with Q8VNNI blocks: the same loop, prefetch and order of
// additions (even blocks into Y0, odd into Y1), so the same results.
TEXT ·vdQ8_0RowsVNNI(SB), NOSPLIT, $0-72
	MOVQ out+0(FP), DI
	MOVQ w+8(FP), R11
	MOVQ n+16(FP), R12
	MOVQ f16+64(FP), R14

	Q8ROWS(Q8VNNI)
