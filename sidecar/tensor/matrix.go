package tensor

import (
	"fmt"
	"unsafe"
)

// Matrix is a row-major 2-D tensor in its encoded form: Rows rows of
// Type.RowBytes(Cols) bytes each. Data is usually a view of a memory-mapped
// model file and is never copied or written by this package.
type Matrix struct {
	Type       DType
	Rows, Cols int
	Data       []byte
}

// Bytes returns the encoded size of the matrix.
func (m *Matrix) Bytes() int { return m.Rows * m.Type.RowBytes(m.Cols) }

// Row dequantizes row i into dst[:Cols] (an embedding lookup).
func (m *Matrix) Row(i int, dst []float32) {
	if i < 0 || i >= m.Rows {
		panic(fmt.Sprintf("tensor: row %d out of range [0, %d)", i, m.Rows))
	}
	rb := m.Type.RowBytes(m.Cols)
	Dequantize(m.Type, m.Data[i*rb:(i+1)*rb], dst[:m.Cols])
}

func (m *Matrix) check(op string) {
	if !m.Type.Valid() {
		panic(fmt.Sprintf("tensor: %s: unsupported weight type %s", op, m.Type))
	}
	if m.Cols%m.Type.BlockSize() != 0 {
		panic(fmt.Sprintf("tensor: %s: %d columns is not a whole number of %s blocks", op, m.Cols, m.Type))
	}
	if len(m.Data) < m.Bytes() {
		panic(fmt.Sprintf("tensor: %s: %s matrix %dx%d needs %d bytes, has %d", op, m.Type, m.Rows, m.Cols, m.Bytes(), len(m.Data)))
	}
}

// prepareActivations quantizes n rows of x (each w.Cols long) into the pool's
// scratch in the format w's integer kernel consumes. Float weight types use
// x as is.
func (p *Pool) prepareActivations(w *Matrix, x []float32, n int) {
	total := n * w.Cols
	a := &p.act
	switch w.Type {
	case Q8_0, Q4_0:
		a.qs = grow(a.qs, total)
		a.ax = grow(a.ax, total)
		a.d = grow(a.d, total/qk8_0)
		quantizeActQ8_0(x[:total], a.qs, a.ax, a.d)
	case Q4_K, Q6_K:
		a.qs = grow(a.qs, total)
		a.ax = grow(a.ax, total)
		a.d = grow(a.d, total/qkK)
		a.bs16 = grow(a.bs16, total/16)
		a.bs32 = grow(a.bs32, total/32)
		quantizeActQ8K(x[:total], a.qs, a.ax, a.d, a.bs16, a.bs32)
	}
}

// rowDot dots one encoded weight row with activation row j (as prepared by
// prepareActivations) using kernel set k.
func (p *Pool) rowDot(k *kernelSet, t DType, row []byte, x []float32, cols, j int) float32 {
	a := &p.act
	switch t {
	case F32:
		return k.vdF32(row, x[j*cols:(j+1)*cols])
	case F16:
		return k.vdF16(row, x[j*cols:(j+1)*cols])
	case BF16:
		return k.vdBF16(row, x[j*cols:(j+1)*cols])
	case Q8_0:
		nb := cols / qk8_0
		return k.vdQ8_0(row, a.qs[j*cols:(j+1)*cols], a.ax[j*cols:(j+1)*cols], a.d[j*nb:(j+1)*nb])
	case Q4_0:
		nb := cols / qk4_0
		return k.vdQ4_0(row, a.qs[j*cols:(j+1)*cols], a.d[j*nb:(j+1)*nb])
	case Q4_K:
		nb := cols / qkK
		return k.vdQ4K(row, a.qs[j*cols:(j+1)*cols], a.d[j*nb:(j+1)*nb], a.bs32[j*nb*8:(j+1)*nb*8])
	case Q6_K:
		nb := cols / qkK
		return k.vdQ6K(row, a.qs[j*cols:(j+1)*cols], a.d[j*nb:(j+1)*nb], a.bs16[j*nb*16:(j+1)*nb*16])
	}
	panic("tensor: unsupported type " + t.String())
}

// matVecTask dots rows of up to maxMatVecs matrices that read the same
// activations, as one pool operation over their rows laid end to end,
// against n activation rows; n > 1 is the small-batch MatMul path, where
// each weight row is read from memory once and reused from L1 for every
// activation row.
type matVecTask struct {
	p     *Pool
	ws    [maxMatVecs]*Matrix
	outs  [maxMatVecs][]float32
	start [maxMatVecs + 1]int // first row of each matrix in the joint range
	nw    int
	x     []float32
	n     int
}

const maxMatVecs = 4

func (t *matVecTask) Run(_, lo, hi int) {
	for i := 0; i < t.nw; i++ {
		a, b := max(lo, t.start[i]), min(hi, t.start[i+1])
		if a < b {
			t.rows(t.ws[i], t.outs[i], a-t.start[i], b-t.start[i])
		}
	}
}

// rows dots rows [lo, hi) of w into out.
func (t *matVecTask) rows(w *Matrix, out []float32, lo, hi int) {
	k := kern
	rb := w.Type.RowBytes(w.Cols)
	if t.n == 1 && len(w.Data) > 0 && isLittleEndian {
		// One kernel call for the whole range instead of one per row: tiny
		// models save the calls, and the kernel streams the range's rows
		// as one sequential read with a software prefetch ahead of it.
		base := unsafe.Pointer(&w.Data[r0(lo, rb)])
		switch w.Type {
		case F32:
			if uintptr(base)%4 == 0 {
				k.matVecF32(out[lo:hi], unsafe.Slice((*float32)(base), (hi-lo)*w.Cols), w.Cols, t.x, 1)
				return
			}
		case F16:
			if uintptr(base)%2 == 0 {
				k.matVecF16(out[lo:hi], unsafe.Slice((*uint16)(base), (hi-lo)*w.Cols), w.Cols, t.x, 1)
				return
			}
		case BF16:
			if uintptr(base)%2 == 0 {
				k.matVecBF16(out[lo:hi], unsafe.Slice((*uint16)(base), (hi-lo)*w.Cols), w.Cols, t.x, 1)
				return
			}
		case Q8_0:
			k.vdQ8_0Rows(out[lo:hi], w.Data[lo*rb:hi*rb], rb, t.p.act.qs[:w.Cols], t.p.act.ax[:w.Cols], t.p.act.d[:w.Cols/qk8_0])
			return
		case Q4_0:
			k.vdQ4_0Rows(out[lo:hi], w.Data[lo*rb:hi*rb], rb, t.p.act.qs[:w.Cols], t.p.act.d[:w.Cols/qk4_0])
			return
		case Q4_K:
			a := &t.p.act
			nb := w.Cols / qkK
			k.vdQ4KRows(out[lo:hi], w.Data[lo*rb:hi*rb], rb, a.qs[:w.Cols], a.d[:nb], a.bs32[:nb*8])
			return
		case Q6_K:
			a := &t.p.act
			nb := w.Cols / qkK
			k.vdQ6KRows(out[lo:hi], w.Data[lo*rb:hi*rb], rb, a.qs[:w.Cols], a.d[:nb], a.bs16[:nb*16])
			return
		}
	}
	for r := lo; r < hi; r++ {
		row := w.Data[r*rb : (r+1)*rb]
		for j := range t.n {
			out[j*w.Rows+r] = t.p.rowDot(k, w.Type, row, t.x, w.Cols, j)
		}
	}
}

// MatVec computes out[r] = Σ_c w[r,c]·x[c] for every row of w (decode).
// Quantized weights are dotted against x quantized once to 8 bits (Q8_0 for
// Q4_0/Q8_0, Q8_K for the k-quants); float weights are converted in
// registers. x may be longer than w.Cols; the rest is ignored. p must not be
// nil.
func MatVec(p *Pool, out []float32, w *Matrix, x []float32) {
	w.check("MatVec")
	if len(x) < w.Cols || len(out) < w.Rows {
		panic(fmt.Sprintf("tensor: MatVec: %dx%d weights, x has %d values, out %d", w.Rows, w.Cols, len(x), len(out)))
	}
	p.matVec([maxMatVecs][]float32{out}, [maxMatVecs]*Matrix{w}, 1, x[:w.Cols], 1)
}

// MatVecs is MatVec for up to four matrices that read the same x (a
// layer's Q, K and V; gate and up): x is prepared once and all their rows
// are one pool operation, so the cores meet once instead of once per
// matrix. The matrices must share Cols and Type; ws ends at its first nil.
func MatVecs(p *Pool, outs [maxMatVecs][]float32, ws [maxMatVecs]*Matrix, x []float32) {
	nw := 0
	for nw < maxMatVecs && ws[nw] != nil {
		w := ws[nw]
		w.check("MatVecs")
		if w.Cols != ws[0].Cols || w.Type != ws[0].Type {
			panic(fmt.Sprintf("tensor: MatVecs: matrix %d is %dx%d %s, matrix 0 %dx%d %s", nw, w.Rows, w.Cols, w.Type, ws[0].Rows, ws[0].Cols, ws[0].Type))
		}
		if len(outs[nw]) < w.Rows {
			panic(fmt.Sprintf("tensor: MatVecs: %dx%d weights, out %d", w.Rows, w.Cols, len(outs[nw])))
		}
		nw++
	}
	if nw == 0 {
		return
	}
	if len(x) < ws[0].Cols {
		panic(fmt.Sprintf("tensor: MatVecs: %d columns, x has %d values", ws[0].Cols, len(x)))
	}
	p.matVec(outs, ws, nw, x[:ws[0].Cols], 1)
}

func (p *Pool) matVec(outs [maxMatVecs][]float32, ws [maxMatVecs]*Matrix, nw int, x []float32, n int) {
	w := ws[0]
	p.prepareActivations(w, x, n)
	t := &p.mv
	*t = matVecTask{p: p, ws: ws, outs: outs, nw: nw, x: x, n: n}
	for i := range nw {
		t.start[i+1] = t.start[i] + ws[i].Rows
	}
	// A chunk streams at least 32 KiB of weights per activation row: less
	// than that takes about as long as waking a worker, so small matrices
	// (tiny models, GQA's K/V) run on the calling goroutine.
	p.Parallel(t.start[nw], max(8, (32<<10)/(n*w.Type.RowBytes(w.Cols))), t)
	*t = matVecTask{}
}

func r0(r, rb int) int { return r * rb }

// MatMul tile geometry: a worker dequantizes mmTileRows weight rows ×
// mmTileK columns into a float32 panel packed k-major (128 KiB, resident in
// L2) and reuses it for every activation row, six rows at a time against
// all 16 weight rows in registers (the kernel set's gemm: gemm6x16, or
// twelve rows with AVX-512).
//
// Each kernel call reads six activation rows mmTileK long from L3 (a
// prompt's activations outgrow L2). Longer chunks mean longer sequential
// reads: 512-token prefill of 1.1B Q8_0 measured 78–79%, 82–83%, 84–85%
// and 84–88% of the FMA peak at 256, 512, 1024 and 2048 columns, 4096 no
// better, and 110M +1–4% from 512 to 2048 (docs/performance.md). A
// multiple of every block size (256).
const (
	mmTileRows = 16 // gemm6x16's panel width
	mmGroup    = 6  // gemm6x16's activation rows
	mmGroupMax = 12 // the most any set's gemm takes (gemmRows)
	mmTileK    = 2048
	// Below this batch the dequantization of a tile costs more than it
	// saves; small batches use the integer row kernels instead.
	mmMinBatch = 4
)

type matMulTask struct {
	w   *Matrix
	x   []float32
	out []float32
	n   int
	p   *Pool
}

func (t *matMulTask) Run(worker, lo, hi int) {
	k := kern
	w := t.w
	rows, cols, n := w.Rows, w.Cols, t.n
	rb := w.Type.RowBytes(cols)
	ws := &t.p.work[worker]
	if len(ws.panel) < mmTileRows*mmTileK {
		ws.tile = make([]float32, mmTileRows*mmTileK)
		ws.panel = make([]float32, mmTileRows*mmTileK)
		ws.xpad = make([]float32, mmGroupMax*mmTileK)
		ws.block = make([]float32, mmGroupMax*mmTileRows)
	}
	panel := ws.panel
	group := k.gemmRows
	for tile := lo; tile < hi; tile++ {
		r0 := tile * mmTileRows
		mr := min(mmTileRows, rows-r0)
		for kc := 0; kc < cols; kc += mmTileK {
			add := kc > 0 // the first k chunk writes out, the rest add
			kl := min(mmTileK, cols-kc)
			b0, b1 := w.Type.RowBytes(kc), w.Type.RowBytes(kc+kl)
			for i := range mmTileRows {
				wt := ws.tile[i*mmTileK : i*mmTileK+kl]
				if i >= mr {
					clear(wt) // the missing rows multiply as zeros
					continue
				}
				row := w.Data[(r0+i)*rb : (r0+i+1)*rb]
				dequantTile(k, w.Type, row[b0:b1], wt)
			}
			k.packPanel(panel, ws.tile, mmTileK, kl)
			for j0 := 0; j0 < n; j0 += group {
				nr := min(group, n-j0)
				x, xs := t.x[j0*cols+kc:], cols
				if nr < group {
					for j := range group {
						if j < nr {
							copy(ws.xpad[j*mmTileK:j*mmTileK+kl], x[j*cols:j*cols+kl])
						} else {
							clear(ws.xpad[j*mmTileK : j*mmTileK+kl])
						}
					}
					x, xs = ws.xpad, mmTileK
				}
				if nr == group && mr == mmTileRows {
					k.gemm(panel, kl, x, xs, t.out[j0*rows+r0:], rows, add)
					continue
				}
				c := ws.block
				k.gemm(panel, kl, x, xs, c, mmTileRows, false)
				for j := range nr {
					o := t.out[(j0+j)*rows+r0 : (j0+j)*rows+r0+mr]
					if !add {
						copy(o, c[j*mmTileRows:])
						continue
					}
					for i := range o {
						o[i] += c[j*mmTileRows+i]
					}
				}
			}
		}
	}
}

// dequantTile is Dequantize with vector paths (float formats, whole
// quantized blocks), whose conversion would otherwise rival the
// micro-kernel's time at moderate batch sizes. The reinterpretation needs natural alignment, which GGUF's 32-byte
// tensor alignment gives; anything else takes the portable path.
func dequantTile(k *kernelSet, t DType, src []byte, dst []float32) {
	if len(dst) > 0 {
		addr := uintptr(unsafe.Pointer(&src[0]))
		switch {
		case t == F16 && addr%2 == 0 && isLittleEndian:
			k.f16ToF32s(dst, unsafe.Slice((*uint16)(unsafe.Pointer(&src[0])), len(dst)))
			return
		case t == BF16 && addr%2 == 0 && isLittleEndian:
			k.bf16ToF32s(dst, unsafe.Slice((*uint16)(unsafe.Pointer(&src[0])), len(dst)))
			return
		case t == F32 && addr%4 == 0 && isLittleEndian:
			copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), len(dst)))
			return
		case t.BlockSize() > 1 && len(dst)%t.BlockSize() == 0 && len(src) >= t.RowBytes(len(dst)) && k.deqBlocks(t, dst, src):
			return
		}
	}
	Dequantize(t, src, dst)
}

// isLittleEndian gates reinterpreting file bytes as native floats.
var isLittleEndian = func() bool {
	v := uint16(1)
	return *(*byte)(unsafe.Pointer(&v)) == 1
}()

// MatMul computes out = x·wᵀ for n activation rows (prefill): x is n×Cols
// and out n×Rows, both row-major. Batches of at least mmMinBatch rows go
// through a blocked kernel that converts each weight tile to float32 once
// and reuses it across the whole batch. p must not be nil.
func MatMul(p *Pool, out []float32, w *Matrix, x []float32, n int) {
	w.check("MatMul")
	if n < 1 || len(x) < n*w.Cols || len(out) < n*w.Rows {
		panic(fmt.Sprintf("tensor: MatMul: %dx%d weights, n=%d, x has %d values, out %d", w.Rows, w.Cols, n, len(x), len(out)))
	}
	if n < mmMinBatch {
		p.matVec([maxMatVecs][]float32{out}, [maxMatVecs]*Matrix{w}, 1, x, n)
		return
	}
	t := &p.mm
	*t = matMulTask{w: w, x: x, out: out, n: n, p: p}
	p.Parallel((w.Rows+mmTileRows-1)/mmTileRows, 1, t)
	*t = matMulTask{}
}
