//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// AVX2/FMA/F16C kernels. Float loops handle whole vectors only; the Go
// wrappers in kernels_amd64.go finish the tails, which keeps every loop
// here branch-light. Block kernels take whole blocks.

// Word-broadcast shuffles for Q4_K: mask k replicates 16-bit lane k of a
// vector holding the 8 sub-block scales (or mins) in both 128-bit halves.

DATA q4kShuf<>+0(SB)/8, $0x0100010001000100
DATA q4kShuf<>+8(SB)/8, $0x0100010001000100
DATA q4kShuf<>+16(SB)/8, $0x0100010001000100
DATA q4kShuf<>+24(SB)/8, $0x0100010001000100
DATA q4kShuf<>+32(SB)/8, $0x0302030203020302
DATA q4kShuf<>+40(SB)/8, $0x0302030203020302
DATA q4kShuf<>+48(SB)/8, $0x0302030203020302
DATA q4kShuf<>+56(SB)/8, $0x0302030203020302
DATA q4kShuf<>+64(SB)/8, $0x0504050405040504
DATA q4kShuf<>+72(SB)/8, $0x0504050405040504
DATA q4kShuf<>+80(SB)/8, $0x0504050405040504
DATA q4kShuf<>+88(SB)/8, $0x0504050405040504
DATA q4kShuf<>+96(SB)/8, $0x0706070607060706
DATA q4kShuf<>+104(SB)/8, $0x0706070607060706
DATA q4kShuf<>+112(SB)/8, $0x0706070607060706
DATA q4kShuf<>+120(SB)/8, $0x0706070607060706
DATA q4kShuf<>+128(SB)/8, $0x0908090809080908
DATA q4kShuf<>+136(SB)/8, $0x0908090809080908
DATA q4kShuf<>+144(SB)/8, $0x0908090809080908
DATA q4kShuf<>+152(SB)/8, $0x0908090809080908
DATA q4kShuf<>+160(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q4kShuf<>+168(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q4kShuf<>+176(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q4kShuf<>+184(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q4kShuf<>+192(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q4kShuf<>+200(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q4kShuf<>+208(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q4kShuf<>+216(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q4kShuf<>+224(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA q4kShuf<>+232(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA q4kShuf<>+240(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA q4kShuf<>+248(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL q4kShuf<>(SB), RODATA|NOPTR, $256

// Q6_K: mask t puts scale 2t in the low 128-bit half and 2t+1 in the high
// half, matching the two 16-value groups one 32-byte vector spans.
DATA q6kShuf<>+0(SB)/8, $0x0100010001000100
DATA q6kShuf<>+8(SB)/8, $0x0100010001000100
DATA q6kShuf<>+16(SB)/8, $0x0302030203020302
DATA q6kShuf<>+24(SB)/8, $0x0302030203020302
DATA q6kShuf<>+32(SB)/8, $0x0504050405040504
DATA q6kShuf<>+40(SB)/8, $0x0504050405040504
DATA q6kShuf<>+48(SB)/8, $0x0706070607060706
DATA q6kShuf<>+56(SB)/8, $0x0706070607060706
DATA q6kShuf<>+64(SB)/8, $0x0908090809080908
DATA q6kShuf<>+72(SB)/8, $0x0908090809080908
DATA q6kShuf<>+80(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q6kShuf<>+88(SB)/8, $0x0b0a0b0a0b0a0b0a
DATA q6kShuf<>+96(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q6kShuf<>+104(SB)/8, $0x0d0c0d0c0d0c0d0c
DATA q6kShuf<>+112(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA q6kShuf<>+120(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL q6kShuf<>(SB), RODATA|NOPTR, $128

// VPERMD order that puts the dwords of VPACKSSDW+VPACKSSWB's lane-interleaved
// result back in element order (quantActAVX2).
DATA packOrder<>+0(SB)/8, $0x0000000400000000
DATA packOrder<>+8(SB)/8, $0x0000000500000001
DATA packOrder<>+16(SB)/8, $0x0000000600000002
DATA packOrder<>+24(SB)/8, $0x0000000700000003
GLOBL packOrder<>(SB), RODATA|NOPTR, $32


// MatVec's row kernels (matVecF32AVX2, matVecF16AVX2, matVecBF16AVX2):
// out[j] = (row j)[:d] · q for n rows stride bytes apart, d a multiple of
// 8, summed exactly as dotAVX2 / dotF16AVX2 / dotBF16AVX2 sum d values.
// One row at a time, so the rows are one sequential stream, with each step
// prefetching the lines matVecPF bytes ahead. On Zen 3 this decoded 110M
// F16 ~10% faster (median of 6 pairs; tg ~17%) than eight rows at a time
// with the next group prefetched (eight streams 1.5–4 KB long, prefetched
// 12–32 KB ahead); 512 B and 1.5 KB ahead measured about the same as 1 KB,
// 2 KB and more slower.
#define matVecPF 1024


#define MVF32_0 VMOVUPS (SI), Y4
#define MVF32_1 VMOVUPS 32(SI), Y5
#define MVF32_2 VMOVUPS 64(SI), Y6
#define MVF32_3 VMOVUPS 96(SI), Y7
#define MVF16_0 VCVTPH2PS (SI), Y4
#define MVF16_1 VCVTPH2PS 16(SI), Y5
#define MVF16_2 VCVTPH2PS 32(SI), Y6
#define MVF16_3 VCVTPH2PS 48(SI), Y7
#define MVBF16_0 VPMOVZXWD (SI), Y4; VPSLLD $16, Y4, Y4
#define MVBF16_1 VPMOVZXWD 16(SI), Y5; VPSLLD $16, Y5, Y5
#define MVBF16_2 VPMOVZXWD 32(SI), Y6; VPSLLD $16, Y6, Y6
#define MVBF16_3 VPMOVZXWD 48(SI), Y7; VPSLLD $16, Y7, Y7
#define MVPF32 PREFETCHT0 matVecPF(SI); PREFETCHT0 (matVecPF+64)(SI)
#define MVPF16 PREFETCHT0 matVecPF(SI)

// L0–L3 load 32 values into Y4–Y7, STEP bytes of row; PF prefetches them.
#define MATVECROWS(L0, L1, L2, L3, STEP, PF) \
	MOVQ out+0(FP), DI \
	MOVQ k+8(FP), R11 \
	MOVQ n+16(FP), R8 \
	MOVQ d+24(FP), R9 \
	MOVQ stride+32(FP), R12 \
	MOVQ q+40(FP), R10 \
	\
mvrow: \
	ZERO4(Y0, Y1, Y2, Y3) \
	MOVQ R11, SI \
	MOVQ R9, CX \
	MOVQ R10, BX \
	\
mv32: \
	CMPQ        CX, $32 \
	JL          mv8 \
	PF \
	L0 \
	L1 \
	L2 \
	L3 \
	VFMADD231PS (BX), Y4, Y0 \
	VFMADD231PS 32(BX), Y5, Y1 \
	VFMADD231PS 64(BX), Y6, Y2 \
	VFMADD231PS 96(BX), Y7, Y3 \
	ADDQ        $STEP, SI \
	ADDQ        $128, BX \
	SUBQ        $32, CX \
	JMP         mv32 \
	\
mv8: \
	TESTQ       CX, CX \
	JZ          mvreduce \
	L0 \
	VFMADD231PS (BX), Y4, Y0 \
	ADDQ        $(STEP/4), SI \
	ADDQ        $32, BX \
	SUBQ        $8, CX \
	JMP         mv8 \
	\
mvreduce: \
	VADDPS Y1, Y0, Y0 \
	VADDPS Y3, Y2, Y2 \
	VADDPS Y2, Y0, Y0 \
	HSUM(Y0, X0, X1) \
	VMOVSS X0, (DI) \
	ADDQ   $4, DI \
	ADDQ   R12, R11 \
	DECQ   R8 \
	JNZ    mvrow \
	VZEROUPPER \
	RET

// Widens n (a multiple of 8) 16-bit floats at src to float32 at dst, eight
// at a time through CVT (which loads (SI) into Y0).
#define WIDEN16(CVT) \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ n+16(FP), CX \
	\
w8: \
	CMPQ    CX, $8 \
	JL      wdone \
	CVT \
	VMOVUPS Y0, (DI) \
	ADDQ    $16, SI \
	ADDQ    $32, DI \
	SUBQ    $8, CX \
	JMP     w8 \
	\
wdone: \
	VZEROUPPER \
	RET

#define CVTF16 VCVTPH2PS (SI), Y0
#define CVTBF16 VPMOVZXWD (SI), Y0; VPSLLD $16, Y0, Y0

// func dotAVX2(a, b *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	ZERO4(Y0, Y1, Y2, Y3)

dot32:
	CMPQ        CX, $32
	JL          dot8
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         dot32

dot8:
	CMPQ        CX, $8
	JL          dotdone
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         dot8

dotdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func sumAVX2(x *float32, n int) float32
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	ZERO4(Y0, Y1, Y2, Y3)

sum32:
	CMPQ   CX, $32
	JL     sum8
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y1, Y1
	VADDPS 64(SI), Y2, Y2
	VADDPS 96(SI), Y3, Y3
	ADDQ   $128, SI
	SUBQ   $32, CX
	JMP    sum32

sum8:
	CMPQ   CX, $8
	JL     sumdone
	VADDPS (SI), Y0, Y0
	ADDQ   $32, SI
	SUBQ   $8, CX
	JMP    sum8

sumdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+16(FP)
	RET

// func axpyAVX2(a float32, x, y *float32, n int)
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX

axpy32:
	CMPQ        CX, $32
	JL          axpy8
	VMOVUPS     (DI), Y1
	VMOVUPS     32(DI), Y2
	VMOVUPS     64(DI), Y3
	VMOVUPS     96(DI), Y4
	VFMADD231PS (SI), Y0, Y1
	VFMADD231PS 32(SI), Y0, Y2
	VFMADD231PS 64(SI), Y0, Y3
	VFMADD231PS 96(SI), Y0, Y4
	VMOVUPS     Y1, (DI)
	VMOVUPS     Y2, 32(DI)
	VMOVUPS     Y3, 64(DI)
	VMOVUPS     Y4, 96(DI)
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         axpy32

axpy8:
	CMPQ        CX, $8
	JL          axpydone
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         axpy8

axpydone:
	VZEROUPPER
	RET

// func dotF16AVX2(a *uint16, b *float32, n int) float32
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	ZERO4(Y0, Y1, Y2, Y3)

h32:
	CMPQ        CX, $32
	JL          h8
	VCVTPH2PS   (SI), Y4
	VCVTPH2PS   16(SI), Y5
	VCVTPH2PS   32(SI), Y6
	VCVTPH2PS   48(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         h32

h8:
	CMPQ        CX, $8
	JL          hdone
	VCVTPH2PS   (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         h8

hdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func matVecF32AVX2(out *float32, k *float32, n, d, stride int, q *float32)
TEXT ·matVecF32AVX2(SB), NOSPLIT, $0-48
	MATVECROWS(MVF32_0, MVF32_1, MVF32_2, MVF32_3, 128, MVPF32)

// func matVecF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32)
TEXT ·matVecF16AVX2(SB), NOSPLIT, $0-48
	MATVECROWS(MVF16_0, MVF16_1, MVF16_2, MVF16_3, 64, MVPF16)

// func matVecBF16AVX2(out *float32, k *uint16, n, d, stride int, q *float32)
TEXT ·matVecBF16AVX2(SB), NOSPLIT, $0-48
	MATVECROWS(MVBF16_0, MVBF16_1, MVBF16_2, MVBF16_3, 64, MVPF16)

// func dotBF16AVX2(a *uint16, b *float32, n int) float32
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	ZERO4(Y0, Y1, Y2, Y3)

b32:
	CMPQ        CX, $32
	JL          b8
	VPMOVZXWD   (SI), Y4
	VPMOVZXWD   16(SI), Y5
	VPMOVZXWD   32(SI), Y6
	VPMOVZXWD   48(SI), Y7
	VPSLLD      $16, Y4, Y4
	VPSLLD      $16, Y5, Y5
	VPSLLD      $16, Y6, Y6
	VPSLLD      $16, Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         b32

b8:
	CMPQ        CX, $8
	JL          bdone
	VPMOVZXWD   (SI), Y4
	VPSLLD      $16, Y4, Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         b8

bdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func axpyF16AVX2(a float32, x *uint16, y *float32, n int)
TEXT ·axpyF16AVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX

ah8:
	CMPQ        CX, $8
	JL          ahdone
	VCVTPH2PS   (SI), Y2
	VMOVUPS     (DI), Y1
	VFMADD231PS Y2, Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         ah8

ahdone:
	VZEROUPPER
	RET

// func f16ToF32sAVX2(dst *float32, src *uint16, n int)
TEXT ·f16ToF32sAVX2(SB), NOSPLIT, $0-24
	WIDEN16(CVTF16)

// func f32ToF16sAVX2(dst *uint16, src *float32, n int)
TEXT ·f32ToF16sAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

e8:
	CMPQ      CX, $8
	JL        edone
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, X1 // imm 0: round to nearest even
	VMOVDQU   X1, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX
	JMP       e8

edone:
	VZEROUPPER
	RET

// Loads the product of an f16 weight scale at off(SI) and the float32
// activation scale at (DX), broadcast into Yreg (Xreg is its low half).
#define SCALE(off, X, Y) \
	MOVWLZX      off(SI), AX \
	VMOVD        AX, X \
	VCVTPH2PS    X, X \
	VMULSS       (DX), X, X \
	VBROADCASTSS X, Y

// Signed int8 × int8 dot of 32-byte vectors Yw, Ya into 8 int32 lanes of Yout,
// using |w| (unsigned) × a·sign(w) (signed) since VPMADDUBSW needs one
// unsigned operand. |w| ≤ 127 here (-128 never occurs in Q8_0 or Q4_0−8), so
// pairs cannot saturate. Y15 holds int16 ones.
#define MULSUM_I8(Yw, Ya, Yt, Yout) \
	VPSIGNB    Yw, Ya, Yt \
	VPSIGNB    Yw, Yw, Yout \
	VPMADDUBSW Yt, Yout, Yout \
	VPMADDWD   Y15, Yout, Yout

// Expands the 16 Q4_0 nibble bytes at off(SI) into 32 signed values q−8:
// low nibbles (elements 0..15) in the low half, high nibbles in the high.
// Y14 holds 0x0F bytes, Y13 holds 8s.
#define Q4_0LOAD(off, X, Y, Xt) \
	VMOVDQU     off(SI), X \
	VPSRLW      $4, X, Xt \
	VINSERTI128 $1, Xt, Y, Y \
	VPAND       Y14, Y, Y \
	VPSUBB      Y13, Y, Y

// func vdQ4_0RowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, nb int)
//
// out[r] = row r · x for n Q4_0 rows rb bytes apart, streamed and
// prefetched as vdQ8_0RowsAVX2's.
TEXT ·vdQ4_0RowsAVX2(SB), NOSPLIT, $0-56
	MOVQ          out+0(FP), R14
	MOVQ          w+8(FP), R15
	MOVQ          n+16(FP), R12
	BCAST32($0x00010001, X15, Y15)
	BCAST32($0x0f0f0f0f, X14, Y14)
	BCAST32($0x08080808, X13, Y13)

q4row:
	MOVQ          R15, SI
	MOVQ          qs+32(FP), DI
	MOVQ          d+40(FP), DX
	MOVQ          nb+48(FP), CX
	VXORPS        Y0, Y0, Y0
	VXORPS        Y1, Y1, Y1

q4two:
	CMPQ        CX, $2
	JL          q4one
	PREFETCHT0  q8PF(SI)
	Q4_0LOAD(2, X2, Y2, X12)
	VMOVDQU     (DI), Y3
	MULSUM_I8(Y2, Y3, Y4, Y5)
	Q4_0LOAD(20, X6, Y6, X12)
	VMOVDQU     32(DI), Y7
	MULSUM_I8(Y6, Y7, Y8, Y9)
	VCVTDQ2PS   Y5, Y5
	VCVTDQ2PS   Y9, Y9
	SCALE(0, X10, Y10)
	ADDQ        $4, DX
	SCALE(18, X11, Y11)
	ADDQ        $4, DX
	VFMADD231PS Y10, Y5, Y0
	VFMADD231PS Y11, Y9, Y1
	ADDQ        $36, SI
	ADDQ        $64, DI
	SUBQ        $2, CX
	JMP         q4two

q4one:
	TESTQ       CX, CX
	JZ          q4done
	Q4_0LOAD(2, X2, Y2, X12)
	VMOVDQU     (DI), Y3
	MULSUM_I8(Y2, Y3, Y4, Y5)
	VCVTDQ2PS   Y5, Y5
	SCALE(0, X10, Y10)
	VFMADD231PS Y10, Y5, Y0

q4done:
	VADDPS Y1, Y0, Y0
	HSUM(Y0, X0, X1)
	VMOVSS X0, (R14)
	ADDQ   $4, R14
	ADDQ   rb+24(FP), R15
	DECQ   R12
	JNZ    q4row
	VZEROUPPER
	RET

// Unpacks the 12-byte scale field of the Q4_K super-block at SI into the
// eight 6-bit sub-block scales (bytes of AX) and mins (bytes of R12).
// Clobbers BX, R9–R11, R13.
#define Q4KUNPACK \
	MOVL 4(SI), AX \
	MOVL 8(SI), BX \
	MOVL 12(SI), R9 \
	MOVL R9, R10 \
	SHRL $4, R10 \
	ANDL $0x0f0f0f0f, R10 \
	MOVL BX, R11 \
	SHRL $6, R11 \
	ANDL $0x03030303, R11 \
	SHLL $4, R11 \
	ORL  R11, R10 \
	MOVL BX, R12 \
	ANDL $0x3f3f3f3f, R12 \
	MOVL R9, R11 \
	ANDL $0x0f0f0f0f, R11 \
	MOVL AX, R13 \
	SHRL $6, R13 \
	ANDL $0x03030303, R13 \
	SHLL $4, R13 \
	ORL  R13, R11 \
	ANDL $0x3f3f3f3f, AX \
	SHLQ $32, R11 \
	ORQ  R11, AX \
	SHLQ $32, R10 \
	ORQ  R10, R12

// func vdQ4KRowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, bs32 *int16, nb int)
//
// out[r] = row r · x for n Q4_K rows rb bytes apart (nb super-blocks each).
// Per super-block: unpack the 12-byte scale field into 8 scales and 8 mins
// with scalar shifts and masks; the mins term Σ m·Σq8 uses the activation's
// per-32 sums (VPMADDWD), and each 32-value sub-block contributes
// sc·Σ q4·q8 via VPMADDUBSW (q4 unsigned, q8 signed) then VPMADDWD by the
// broadcast scale. The row loop is here rather than in Go because a 768-wide
// row is only three super-blocks; rows laid end to end are one stream, fed
// by prefetching q8PF bytes ahead as the Q8_0 kernel does.
TEXT ·vdQ4KRowsAVX2(SB), NOSPLIT, $8-64
	MOVQ          out+0(FP), R14
	MOVQ          w+8(FP), R15
	MOVQ          n+16(FP), AX
	LEAQ          (R14)(AX*4), AX
	MOVQ          AX, end-8(SP)
	BCAST32($0x0f0f0f0f, X15, Y15)

q4krow:
	MOVQ          R15, SI
	MOVQ          qs+32(FP), DI
	MOVQ          d+40(FP), DX
	MOVQ          bs32+48(FP), R8
	MOVQ          nb+56(FP), CX
	VXORPS        Y0, Y0, Y0 // Σ d·sumi
	VXORPS        Y1, Y1, Y1 // Σ dmin·summ (low 4 lanes)

q4kloop:
	TESTQ CX, CX
	JZ    q4kdone
	PREFETCHT0 q8PF(SI)
	PREFETCHT0 (q8PF+64)(SI)
	PREFETCHT0 (q8PF+128)(SI)

	Q4KUNPACK

	// Scales as words in both 128-bit halves for the VPSHUFB broadcasts
	// (taken out of AX before SCALE reuses it).
	VMOVQ       AX, X8
	VPMOVZXBW   X8, X8
	VINSERTI128 $1, X8, Y8, Y8

	// Mins term: Σ_j m_j·bs32_j, scaled by dmin·d8.
	VMOVQ       R12, X9
	VPMOVZXBW   X9, X9
	VPMADDWD    (R8), X9, X9
	VCVTDQ2PS   X9, X9
	SCALE(2, X10, Y10)
	VFMADD231PS X10, X9, X1
	VPXOR       Y6, Y6, Y6
	VPXOR       Y7, Y7, Y7

	VMOVDQU    16(SI), Y2
	VPSRLW     $4, Y2, Y3
	VPAND      Y15, Y2, Y2
	VPAND      Y15, Y3, Y3
	VPMADDUBSW 0(DI), Y2, Y2
	VPMADDUBSW 32(DI), Y3, Y3
	VPSHUFB    q4kShuf<>+0(SB), Y8, Y4
	VPSHUFB    q4kShuf<>+32(SB), Y8, Y5
	VPMADDWD   Y4, Y2, Y2
	VPMADDWD   Y5, Y3, Y3
	VPADDD     Y2, Y6, Y6
	VPADDD     Y3, Y7, Y7

	VMOVDQU    48(SI), Y2
	VPSRLW     $4, Y2, Y3
	VPAND      Y15, Y2, Y2
	VPAND      Y15, Y3, Y3
	VPMADDUBSW 64(DI), Y2, Y2
	VPMADDUBSW 96(DI), Y3, Y3
	VPSHUFB    q4kShuf<>+64(SB), Y8, Y4
	VPSHUFB    q4kShuf<>+96(SB), Y8, Y5
	VPMADDWD   Y4, Y2, Y2
	VPMADDWD   Y5, Y3, Y3
	VPADDD     Y2, Y6, Y6
	VPADDD     Y3, Y7, Y7

	VMOVDQU    80(SI), Y2
	VPSRLW     $4, Y2, Y3
	VPAND      Y15, Y2, Y2
	VPAND      Y15, Y3, Y3
	VPMADDUBSW 128(DI), Y2, Y2
	VPMADDUBSW 160(DI), Y3, Y3
	VPSHUFB    q4kShuf<>+128(SB), Y8, Y4
	VPSHUFB    q4kShuf<>+160(SB), Y8, Y5
	VPMADDWD   Y4, Y2, Y2
	VPMADDWD   Y5, Y3, Y3
	VPADDD     Y2, Y6, Y6
	VPADDD     Y3, Y7, Y7

	VMOVDQU    112(SI), Y2
	VPSRLW     $4, Y2, Y3
	VPAND      Y15, Y2, Y2
	VPAND      Y15, Y3, Y3
	VPMADDUBSW 192(DI), Y2, Y2
	VPMADDUBSW 224(DI), Y3, Y3
	VPSHUFB    q4kShuf<>+192(SB), Y8, Y4
	VPSHUFB    q4kShuf<>+224(SB), Y8, Y5
	VPMADDWD   Y4, Y2, Y2
	VPMADDWD   Y5, Y3, Y3
	VPADDD     Y2, Y6, Y6
	VPADDD     Y3, Y7, Y7

	VPADDD      Y7, Y6, Y6
	VCVTDQ2PS   Y6, Y6
	SCALE(0, X10, Y10)
	VFMADD231PS Y10, Y6, Y0

	ADDQ $144, SI
	ADDQ $256, DI
	ADDQ $4, DX
	ADDQ $16, R8
	DECQ CX
	JMP  q4kloop

q4kdone:
	VSUBPS Y1, Y0, Y0 // Y1's high half is zero (VEX 128-bit ops clear it)
	HSUM(Y0, X0, X1)
	VMOVSS X0, (R14)
	ADDQ   $4, R14
	ADDQ   rb+24(FP), R15
	CMPQ   R14, end-8(SP)
	JLT    q4krow
	VZEROUPPER
	RET

// func vdQ6KRowsAVX2(out *float32, w *byte, n, rb int, qs *int8, d *float32, bs16 *int16, nb int)
//
// out[r] = row r · x for n Q6_K rows rb bytes apart, streamed and
// prefetched as vdQ4KRowsAVX2's. q6 values are assembled unsigned (0..63)
// so VPMADDUBSW applies; the −32 offset is removed afterwards as
// 32·Σ sc·Σq8 from the activation's per-16 sums.
TEXT ·vdQ6KRowsAVX2(SB), NOSPLIT, $0-64
	MOVQ          out+0(FP), R14
	MOVQ          w+8(FP), R15
	MOVQ          n+16(FP), R12
	BCAST32($0x0f0f0f0f, X15, Y15)
	BCAST32($0x30303030, X13, Y13)

q6krow:
	MOVQ          R15, SI
	MOVQ          qs+32(FP), DI
	MOVQ          d+40(FP), DX
	MOVQ          bs16+48(FP), R8
	MOVQ          nb+56(FP), CX
	VXORPS        Y0, Y0, Y0

q6kloop:
	TESTQ CX, CX
	JZ    q6kdone
	PREFETCHT0 q8PF(SI)
	PREFETCHT0 (q8PF+64)(SI)
	PREFETCHT0 (q8PF+128)(SI)
	PREFETCHT0 (q8PF+192)(SI)

	// Offset term 32·Σ sc_k·bs16_k, kept to subtract from the int sum.
	VPMOVSXBW 192(SI), Y8
	VPMADDWD  (R8), Y8, Y9
	VPSLLD    $5, Y9, Y9
	VPXOR     Y6, Y6, Y6

	VPMOVSXBW   192(SI), X10
	VINSERTI128 $1, X10, Y10, Y10
	VMOVDQU     0(SI), Y2
	VMOVDQU     32(SI), Y3
	VMOVDQU     128(SI), Y4
	// q1 = ql[0:32]&15 | (qh&3)<<4
	VPSLLW      $4, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPAND       Y15, Y2, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  0(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+0(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q2 = ql[32:64]&15 | (qh>>2&3)<<4
	VPSLLW      $2, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPAND       Y15, Y3, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  32(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+32(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q3 = ql[0:32]>>4 | (qh>>4&3)<<4
	VPAND       Y13, Y4, Y11
	VPSRLW      $4, Y2, Y5
	VPAND       Y15, Y5, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  64(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+64(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q4 = ql[32:64]>>4 | (qh>>6)<<4
	VPSRLW      $2, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPSRLW      $4, Y3, Y5
	VPAND       Y15, Y5, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  96(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+96(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6

	VPMOVSXBW   200(SI), X10
	VINSERTI128 $1, X10, Y10, Y10
	VMOVDQU     64(SI), Y2
	VMOVDQU     96(SI), Y3
	VMOVDQU     160(SI), Y4
	// q1 = ql[0:32]&15 | (qh&3)<<4
	VPSLLW      $4, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPAND       Y15, Y2, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  128(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+0(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q2 = ql[32:64]&15 | (qh>>2&3)<<4
	VPSLLW      $2, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPAND       Y15, Y3, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  160(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+32(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q3 = ql[0:32]>>4 | (qh>>4&3)<<4
	VPAND       Y13, Y4, Y11
	VPSRLW      $4, Y2, Y5
	VPAND       Y15, Y5, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  192(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+64(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6
	// q4 = ql[32:64]>>4 | (qh>>6)<<4
	VPSRLW      $2, Y4, Y11
	VPAND       Y13, Y11, Y11
	VPSRLW      $4, Y3, Y5
	VPAND       Y15, Y5, Y5
	VPOR        Y11, Y5, Y5
	VPMADDUBSW  224(DI), Y5, Y5
	VPSHUFB     q6kShuf<>+96(SB), Y10, Y12
	VPMADDWD    Y12, Y5, Y5
	VPADDD      Y5, Y6, Y6

	VPSUBD      Y9, Y6, Y6
	VCVTDQ2PS   Y6, Y6
	SCALE(208, X10, Y10)
	VFMADD231PS Y10, Y6, Y0

	ADDQ $210, SI
	ADDQ $256, DI
	ADDQ $4, DX
	ADDQ $32, R8
	DECQ CX
	JMP  q6kloop

q6kdone:
	HSUM(Y0, X0, X1)
	VMOVSS X0, (R14)
	ADDQ   $4, R14
	ADDQ   rb+24(FP), R15
	DECQ   R12
	JNZ    q6krow
	VZEROUPPER
	RET

// One activation row's part of a gemm6x16AVX2 k step: its value at byte
// OFF of the row at BASE, broadcast into YB, times the panel's 16 values
// (Y12, Y13), into the row's accumulators A0, A1.
#define G6ROW(BASE, OFF, YB, A0, A1) \
	VBROADCASTSS OFF(BASE)(AX*1), YB \
	VFMADD231PS  YB, Y12, A0 \
	VFMADD231PS  YB, Y13, A1

// One k step at byte offset OFF: the panel's 16 values for this k, then
// the six rows (Y14/Y15 alternate so consecutive rows do not wait on one
// register).
#define G6STEP(OFF) \
	VMOVUPS (OFF*16)(SI), Y12 \
	VMOVUPS (OFF*16+32)(SI), Y13 \
	G6ROW(R8, OFF, Y14, Y0, Y1) \
	G6ROW(R10, OFF, Y15, Y2, Y3) \
	G6ROW(R11, OFF, Y14, Y4, Y5) \
	G6ROW(R12, OFF, Y15, Y6, Y7) \
	G6ROW(R13, OFF, Y14, Y8, Y9) \
	G6ROW(R14, OFF, Y15, Y10, Y11)

// c[j·cs : j·cs+16] += Yacc pair (row j of the block).
#define G6ADD(YA, YB) \
	VADDPS  (DI), YA, YA \
	VMOVUPS YA, (DI) \
	VADDPS  32(DI), YB, YB \
	VMOVUPS YB, 32(DI) \
	ADDQ    R9, DI

// c[j·cs : j·cs+16] = Yacc pair.
#define G6SET(YA, YB) \
	VMOVUPS YA, (DI) \
	VMOVUPS YB, 32(DI) \
	ADDQ    R9, DI

// func gemm6x16AVX2(wp *float32, k int, x *float32, xs int, c *float32, cs int, add bool)
//
// c[j*cs+i] (+)= Σ_kk x[j*xs+kk] · wp[kk*16+i] for j < 6, i < 16, kk < k
// (added to c with add, else stored, so a first k chunk needs no cleared
// output):
// six activation rows against a packed panel of 16 weight rows (k-major,
// 16 values per k). The broadcast form keeps the 6×16 block in twelve
// accumulators for the whole k range, so unlike a dot-product kernel there
// is no horizontal sum at all, and each k costs 2 panel loads and 6
// broadcasts per 12 FMAs.
TEXT ·gemm6x16AVX2(SB), NOSPLIT, $0-49
	MOVQ wp+0(FP), SI
	MOVQ k+8(FP), CX
	MOVQ x+16(FP), R8
	MOVQ xs+24(FP), R9
	SHLQ $2, R9
	LEAQ (R8)(R9*1), R10
	LEAQ (R10)(R9*1), R11
	LEAQ (R11)(R9*1), R12
	LEAQ (R12)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	XORQ AX, AX
	ZERO4(Y0, Y1, Y2, Y3)
	ZERO4(Y4, Y5, Y6, Y7)
	ZERO4(Y8, Y9, Y10, Y11)

g6two:
	CMPQ CX, $2
	JL   g6one
	G6STEP(0)
	G6STEP(4)
	ADDQ $128, SI
	ADDQ $8, AX
	SUBQ $2, CX
	JMP  g6two

g6one:
	TESTQ CX, CX
	JZ    g6store
	G6STEP(0)

g6store:
	MOVQ   c+32(FP), DI
	MOVQ   cs+40(FP), R9
	SHLQ   $2, R9
	CMPB   add+48(FP), $0
	JEQ    g6set
	G6ADD(Y0, Y1)
	G6ADD(Y2, Y3)
	G6ADD(Y4, Y5)
	G6ADD(Y6, Y7)
	G6ADD(Y8, Y9)
	G6ADD(Y10, Y11)
	VZEROUPPER
	RET

g6set:
	G6SET(Y0, Y1)
	G6SET(Y2, Y3)
	G6SET(Y4, Y5)
	G6SET(Y6, Y7)
	G6SET(Y8, Y9)
	G6SET(Y10, Y11)
	VZEROUPPER
	RET

// Transposes the 8×8 block of floats at BASE (rows ss bytes apart: R8 =
// ss, R9 = 3ss, R10 = 5ss, R11 = 6ss, R12 = 7ss) into eight 8-value
// columns stored 64 bytes apart from OFF(DI): unpack pairs, shuffle quads,
// then swap 128-bit halves.
#define TRANSPOSE8(BASE, OFF) \
	VMOVUPS    (BASE), Y0 \
	VMOVUPS    (BASE)(R8*1), Y1 \
	VMOVUPS    (BASE)(R8*2), Y2 \
	VMOVUPS    (BASE)(R9*1), Y3 \
	VMOVUPS    (BASE)(R8*4), Y4 \
	VMOVUPS    (BASE)(R10*1), Y5 \
	VMOVUPS    (BASE)(R11*1), Y6 \
	VMOVUPS    (BASE)(R12*1), Y7 \
	VUNPCKLPS  Y1, Y0, Y8 \
	VUNPCKHPS  Y1, Y0, Y9 \
	VUNPCKLPS  Y3, Y2, Y10 \
	VUNPCKHPS  Y3, Y2, Y11 \
	VUNPCKLPS  Y5, Y4, Y12 \
	VUNPCKHPS  Y5, Y4, Y13 \
	VUNPCKLPS  Y7, Y6, Y14 \
	VUNPCKHPS  Y7, Y6, Y15 \
	VSHUFPS    $0x44, Y10, Y8, Y0 \
	VSHUFPS    $0xee, Y10, Y8, Y1 \
	VSHUFPS    $0x44, Y11, Y9, Y2 \
	VSHUFPS    $0xee, Y11, Y9, Y3 \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xee, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xee, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15 \
	VMOVUPS    Y8, (OFF)(DI) \
	VMOVUPS    Y9, (OFF+64)(DI) \
	VMOVUPS    Y10, (OFF+128)(DI) \
	VMOVUPS    Y11, (OFF+192)(DI) \
	VMOVUPS    Y12, (OFF+256)(DI) \
	VMOVUPS    Y13, (OFF+320)(DI) \
	VMOVUPS    Y14, (OFF+384)(DI) \
	VMOVUPS    Y15, (OFF+448)(DI)

// func packPanelAVX2(panel *float32, src *float32, ss int, k8 int)
//
// panel[kk*16+i] = src[i*ss+kk] for 16 rows i and kk < 8·k8: gemm6x16's
// k-major panel from row-major weights, two 8×8 transposes per 8 columns.
TEXT ·packPanelAVX2(SB), NOSPLIT, $0-32
	MOVQ panel+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ss+16(FP), R8
	SHLQ $2, R8
	MOVQ k8+24(FP), CX
	LEAQ (R8)(R8*2), R9
	LEAQ (R8)(R8*4), R10
	LEAQ (R9)(R9*1), R11
	LEAQ (R11)(R8*1), R12
	LEAQ (SI)(R8*8), R13

packloop:
	TESTQ CX, CX
	JZ    packdone
	TRANSPOSE8(SI, 0)
	TRANSPOSE8(R13, 32)
	ADDQ  $32, SI
	ADDQ  $32, R13
	ADDQ  $512, DI
	DECQ  CX
	JMP   packloop

packdone:
	VZEROUPPER
	RET

// Sub-block pair J (0..3) of a Q4_K super-block at SI: 32 bytes whose low
// nibbles are sub-block 2J and high nibbles 2J+1, each value d·sc·q −
// dmin·m (a multiply, then a subtract, as dequantBlockQ4K rounds), eight at
// a time from zero-extended bytes. The factors are at 0(SP) (d·sc) and
// 32(SP) (dmin·m).
#define Q4KDEQ8(J, T) \
	VPMOVZXBD    (16+32*J+8*T)(SI), Y0 \
	VPAND        Y15, Y0, Y1 \
	VPSRLD       $4, Y0, Y2 \
	VCVTDQ2PS    Y1, Y1 \
	VCVTDQ2PS    Y2, Y2 \
	VMULPS       Y10, Y1, Y1 \
	VMULPS       Y12, Y2, Y2 \
	VSUBPS       Y11, Y1, Y1 \
	VSUBPS       Y13, Y2, Y2 \
	VMOVUPS      Y1, (256*J+32*T)(DI) \
	VMOVUPS      Y2, (256*J+128+32*T)(DI)

#define Q4KDEQPAIR(J) \
	VBROADCASTSS (8*J)(SP), Y10 \
	VBROADCASTSS (32+8*J)(SP), Y11 \
	VBROADCASTSS (8*J+4)(SP), Y12 \
	VBROADCASTSS (32+8*J+4)(SP), Y13 \
	Q4KDEQ8(J, 0) \
	Q4KDEQ8(J, 1) \
	Q4KDEQ8(J, 2) \
	Q4KDEQ8(J, 3)

// func dequantQ4KAVX2(dst *float32, src *byte, nb int)
// nb Q4_K super-blocks to float32, values identical to dequantBlockQ4K's
// (MatMul's weight tiles; Q4_K_M files are mostly Q4_K).
TEXT ·dequantQ4KAVX2(SB), NOSPLIT, $64-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         nb+16(FP), CX
	BCAST32($0x0f, X15, Y15)

dq4kloop:
	TESTQ CX, CX
	JZ    dq4kdone
	Q4KUNPACK
	VMOVQ        AX, X8
	VPMOVZXBD    X8, Y8
	VCVTDQ2PS    Y8, Y8
	VMOVQ        R12, X9
	VPMOVZXBD    X9, Y9
	VCVTDQ2PS    Y9, Y9
	VPBROADCASTW (SI), X3
	VCVTPH2PS    X3, Y3
	VPBROADCASTW 2(SI), X4
	VCVTPH2PS    X4, Y4
	VMULPS       Y3, Y8, Y8
	VMULPS       Y4, Y9, Y9
	VMOVUPS      Y8, 0(SP)
	VMOVUPS      Y9, 32(SP)
	Q4KDEQPAIR(0)
	Q4KDEQPAIR(1)
	Q4KDEQPAIR(2)
	Q4KDEQPAIR(3)
	ADDQ $144, SI
	ADDQ $1024, DI
	DECQ CX
	JMP  dq4kloop

dq4kdone:
	VZEROUPPER
	RET

// Eight values of each of a Q6_K super-block half's four 32-value rows:
// ql bytes 8T.. of the half H (low nibbles: rows 0 and 2 via Y0; the
// second 32 bytes: rows 1 and 3 via Y1), their two high bits from qh (Y2),
// minus 32, times the factor d·sc of sub-block IS (+2, +4, +6) at 4·k(SP),
// as dequantBlockQ6K rounds. Y13 = 32s, Y14 = 3s, Y15 = 0x0f, all dwords.
#define Q6KROW(LO, QHSHIFT, K, OUT) \
	VPSRLD       $QHSHIFT, Y2, Y4 \
	VPAND        Y14, Y4, Y4 \
	VPSLLD       $4, Y4, Y4 \
	VPOR         Y4, LO, Y3 \
	VPSUBD       Y13, Y3, Y3 \
	VCVTDQ2PS    Y3, Y3 \
	VBROADCASTSS (4*(K))(SP), Y5 \
	VMULPS       Y5, Y3, Y3 \
	VMOVUPS      Y3, (4*(OUT))(DI)

#define Q6KDEQ8(H, T, IS) \
	VPMOVZXBD    (64*H+8*T)(SI), Y0 \
	VPMOVZXBD    (64*H+32+8*T)(SI), Y1 \
	VPMOVZXBD    (128+32*H+8*T)(SI), Y2 \
	VPAND        Y15, Y0, Y6 \
	VPAND        Y15, Y1, Y7 \
	VPSRLD       $4, Y0, Y8 \
	VPSRLD       $4, Y1, Y9 \
	Q6KROW(Y6, 0, 8*H+IS, 128*H+8*T) \
	Q6KROW(Y7, 2, 8*H+IS+2, 128*H+8*T+32) \
	Q6KROW(Y8, 4, 8*H+IS+4, 128*H+8*T+64) \
	Q6KROW(Y9, 6, 8*H+IS+6, 128*H+8*T+96)

// func dequantQ6KAVX2(dst *float32, src *byte, nb int)
// nb Q6_K super-blocks to float32, values identical to dequantBlockQ6K's
// (MatMul's weight tiles; Q4_K_M files keep some tensors in Q6_K).
TEXT ·dequantQ6KAVX2(SB), NOSPLIT, $64-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         nb+16(FP), CX
	BCAST32($0x0f, X15, Y15)
	BCAST32($3, X14, Y14)
	BCAST32($32, X13, Y13)

dq6kloop:
	TESTQ CX, CX
	JZ    dq6kdone
	VPBROADCASTW 208(SI), X10
	VCVTPH2PS    X10, Y10
	VPMOVSXBD    192(SI), Y11
	VPMOVSXBD    200(SI), Y12
	VCVTDQ2PS    Y11, Y11
	VCVTDQ2PS    Y12, Y12
	VMULPS       Y10, Y11, Y11
	VMULPS       Y10, Y12, Y12
	VMOVUPS      Y11, 0(SP)
	VMOVUPS      Y12, 32(SP)
	Q6KDEQ8(0, 0, 0)
	Q6KDEQ8(0, 1, 0)
	Q6KDEQ8(0, 2, 1)
	Q6KDEQ8(0, 3, 1)
	Q6KDEQ8(1, 0, 0)
	Q6KDEQ8(1, 1, 0)
	Q6KDEQ8(1, 2, 1)
	Q6KDEQ8(1, 3, 1)
	ADDQ $210, SI
	ADDQ $1024, DI
	DECQ CX
	JMP  dq6kloop

dq6kdone:
	VZEROUPPER
	RET

// A block of 32 integers in Y1–Y4 (int32 lanes) to float32, times the
// scale broadcast in Y0, stored at DI: the tail of the Q8_0 and Q4_0 tile
// conversions.
#define SCALESTORE32 \
	VCVTDQ2PS Y1, Y1 \
	VCVTDQ2PS Y2, Y2 \
	VCVTDQ2PS Y3, Y3 \
	VCVTDQ2PS Y4, Y4 \
	VMULPS    Y0, Y1, Y1 \
	VMULPS    Y0, Y2, Y2 \
	VMULPS    Y0, Y3, Y3 \
	VMULPS    Y0, Y4, Y4 \
	VMOVUPS   Y1, (DI) \
	VMOVUPS   Y2, 32(DI) \
	VMOVUPS   Y3, 64(DI) \
	VMOVUPS   Y4, 96(DI)

// func dequantQ4_0AVX2(dst *float32, src *byte, nb int)
// nb Q4_0 blocks to float32 as dequantBlockQ4_0: (q−8)·d, low nibbles
// first; bit-identical.
TEXT ·dequantQ4_0AVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         nb+16(FP), CX
	BCAST32($0x0f, X15, Y15)
	BCAST32($8, X14, Y14)

dq40loop:
	TESTQ        CX, CX
	JZ           dq40done
	VPBROADCASTW (SI), X0
	VCVTPH2PS    X0, Y0
	VPMOVZXBD    2(SI), Y1
	VPMOVZXBD    10(SI), Y2
	VPSRLD       $4, Y1, Y3
	VPSRLD       $4, Y2, Y4
	VPAND        Y15, Y1, Y1
	VPAND        Y15, Y2, Y2
	VPSUBD       Y14, Y1, Y1
	VPSUBD       Y14, Y2, Y2
	VPSUBD       Y14, Y3, Y3
	VPSUBD       Y14, Y4, Y4
	SCALESTORE32
	ADDQ         $18, SI
	ADDQ         $128, DI
	DECQ         CX
	JMP          dq40loop

dq40done:
	VZEROUPPER
	RET

// func bf16ToF32sAVX2(dst *float32, src *uint16, n int)
// The 16 bits of a bfloat16 become the high half of the float32, exactly.
TEXT ·bf16ToF32sAVX2(SB), NOSPLIT, $0-24
	WIDEN16(CVTBF16)

// func dequantQ8_0AVX2(dst *float32, src *byte, nb int)
// nb Q8_0 blocks (f16 scale, 32 int8) to float32: sign-extend, convert,
// scale, eight values per instruction group.
TEXT ·dequantQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX

dq8loop:
	TESTQ        CX, CX
	JZ           dq8done
	MOVWLZX      (SI), AX
	VMOVD        AX, X0
	VCVTPH2PS    X0, X0
	VBROADCASTSS X0, Y0
	VPMOVSXBD    2(SI), Y1
	VPMOVSXBD    10(SI), Y2
	VPMOVSXBD    18(SI), Y3
	VPMOVSXBD    26(SI), Y4
	SCALESTORE32
	ADDQ         $34, SI
	ADDQ         $128, DI
	DECQ         CX
	JMP          dq8loop

dq8done:
	VZEROUPPER
	RET

// One Q8_0 block, OFF bytes into the weight row at SI (its f16 scale, then
// 32 int8 values), against activation block XOFF/32 (values at XOFF(BX),
// |values| at XOFF(R13), float32 scale at XOFF/8(DX)), added into ACC. The
// product is |x| (unsigned) × w·sign(x) (signed): VPMADDUBSW needs one
// unsigned operand, and |x| ≤ 127 keeps its pairs from saturating. The
// weight's scale comes from the f16→f32 table at R14 (exact) rather than
// VPBROADCASTW+VCVTPH2PS: the kernel is bound by vector µops, not loads, at
// cache speed (+10% on a cache-resident matrix, Zen 3), and the scales a
// matrix uses cluster in a few KB of the table. Clobbers YA, YT, YS, YD.
#define Q8BLOCK(OFF, XOFF, YA, YT, YS, YD, ACC) \
	VMOVDQU      XOFF(R13), YA \
	VMOVDQU      (OFF+2)(SI), YT \
	VPSIGNB      XOFF(BX), YT, YT \
	VPMADDUBSW   YT, YA, YT \
	VPMADDWD     Y15, YT, YT \
	VCVTDQ2PS    YT, YT \
	MOVWLZX      OFF(SI), AX \
	VBROADCASTSS (R14)(AX*4), YS \
	VBROADCASTSS (XOFF/8)(DX), YD \
	VMULPS       YD, YS, YS \
	VFMADD231PS  YS, YT, ACC

// func vdQ8_0RowsAVX2(out *float32, w *byte, n, rb int, qs *int8, ax *uint8, d *float32, nb int, f16 *float32)
//
// out[r] = row r · x for n Q8_0 rows rb bytes apart, one row at a time;
// x is qs (int8), ax (|qs|) and d (one scale per 32). Even blocks add into
// Y0, odd into Y1, so a row's sum does not depend on n. Rows laid end to
// end are one sequential stream, fed by prefetching the lines q8PF bytes
// ahead: in 110M decode this beat four rows at a time sharing each
// activation block (the next four prefetched) by ~8% (tg ~7%), 2 KB ahead a
// little more than 1 KB. Four blocks a step rather than two, with |x|
// prepared once per activation instead of once per block and row: +8% at
// cache speed. The loop is Q8ROWS (vec_amd64.h), shared with the VNNI
// kernel.
TEXT ·vdQ8_0RowsAVX2(SB), NOSPLIT, $0-72
	MOVQ         out+0(FP), DI
	MOVQ         w+8(FP), R11
	MOVQ         n+16(FP), R12
	MOVQ         f16+64(FP), R14
	BCAST32($0x00010001, X15, Y15)

	Q8ROWS(Q8BLOCK)

// func quantActAVX2(x *float32, qs *int8, ax *uint8, d *float32, nb, bs int)
//
// Rounds nb blocks of bs activations (bs a multiple of 32) to int8 with a
// symmetric scale per block, as quantizeActBlock: d = amax/127, id = 1/d
// (0 for an all-zero block), q = round-to-nearest-even(x·id) (VCVTPS2DQ
// under the default rounding mode), and ax = |q|. Every step is the same
// IEEE float32 operation as the Go code's, so the results are identical.
TEXT ·quantActAVX2(SB), NOSPLIT, $0-48
	MOVQ         x+0(FP), SI
	MOVQ         qs+8(FP), DI
	MOVQ         ax+16(FP), R8
	MOVQ         d+24(FP), DX
	MOVQ         nb+32(FP), R9
	MOVQ         bs+40(FP), R10
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15          // |·| mask
	MOVL         $0x42fe0000, AX   // 127
	VMOVD        AX, X14
	MOVL         $0x3f800000, AX   // 1
	VMOVD        AX, X13
	VMOVDQU      packOrder<>(SB), Y12

qablock:
	TESTQ  R9, R9
	JZ     qadone
	MOVQ   SI, R11
	MOVQ   R10, CX
	VXORPS Y0, Y0, Y0

qamax:
	VANDPS  (R11), Y15, Y1
	VANDPS  32(R11), Y15, Y2
	VANDPS  64(R11), Y15, Y3
	VANDPS  96(R11), Y15, Y4
	VMAXPS  Y2, Y1, Y1
	VMAXPS  Y4, Y3, Y3
	VMAXPS  Y3, Y1, Y1
	VMAXPS  Y1, Y0, Y0
	ADDQ    $128, R11
	SUBQ    $32, CX
	JNZ     qamax
	VEXTRACTF128 $1, Y0, X1
	VMAXPS  X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS  X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS  X1, X0, X0         // amax in every lane of X0
	VDIVSS  X14, X0, X1        // d = amax/127
	VMOVSS  X1, (DX)
	VXORPS  X2, X2, X2         // id = 0 unless d != 0
	VUCOMISS X2, X1
	JEQ     qaid
	VDIVSS  X1, X13, X2        // id = 1/d

qaid:
	VBROADCASTSS X2, Y2
	MOVQ   R10, CX

qaquant:
	VMULPS     (SI), Y2, Y4
	VMULPS     32(SI), Y2, Y5
	VMULPS     64(SI), Y2, Y6
	VMULPS     96(SI), Y2, Y7
	VCVTPS2DQ  Y4, Y4
	VCVTPS2DQ  Y5, Y5
	VCVTPS2DQ  Y6, Y6
	VCVTPS2DQ  Y7, Y7
	VPACKSSDW  Y5, Y4, Y4
	VPACKSSDW  Y7, Y6, Y6
	VPACKSSWB  Y6, Y4, Y4
	VPERMD     Y4, Y12, Y4
	VMOVDQU    Y4, (DI)
	VPABSB     Y4, Y4
	VMOVDQU    Y4, (R8)
	ADDQ       $128, SI
	ADDQ       $32, DI
	ADDQ       $32, R8
	SUBQ       $32, CX
	JNZ        qaquant
	ADDQ       $4, DX
	DECQ       R9
	JMP        qablock

qadone:
	VZEROUPPER
	RET

// func fmaLoopAVX2(n int)
//
// n × 12 independent 256-bit FMAs on registers: the core's multiply-add
// peak with nothing else in the way (12 chains cover 2 FMA pipes × a
// latency of up to 6 cycles).
TEXT ·fmaLoopAVX2(SB), NOSPLIT, $0-8
	MOVQ   n+0(FP), CX
	ZERO4(Y0, Y1, Y2, Y3)
	ZERO4(Y4, Y5, Y6, Y7)
	ZERO4(Y8, Y9, Y10, Y11)
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	TESTQ  CX, CX
	JZ     fmadone

fmaloop:
	VFMADD231PS Y12, Y13, Y0
	VFMADD231PS Y12, Y13, Y1
	VFMADD231PS Y12, Y13, Y2
	VFMADD231PS Y12, Y13, Y3
	VFMADD231PS Y12, Y13, Y4
	VFMADD231PS Y12, Y13, Y5
	VFMADD231PS Y12, Y13, Y6
	VFMADD231PS Y12, Y13, Y7
	VFMADD231PS Y12, Y13, Y8
	VFMADD231PS Y12, Y13, Y9
	VFMADD231PS Y12, Y13, Y10
	VFMADD231PS Y12, Y13, Y11
	DECQ        CX
	JNZ         fmaloop

fmadone:
	VZEROUPPER
	RET
