package tensor

import (
	"encoding/binary"
	"math"
)

// Activations are quantized once per MatVec/MatMul call and then dotted
// against every weight row with integer arithmetic, as llama.cpp does. The
// activation formats are private, so they keep float32 scales (llama.cpp's
// Q8_0 rounds its scale to f16; the extra precision here is free) and carry
// the per-sub-block sums the k-quant kernels need for their offsets.

// quantizeActQ8_0 fills qs (len(x) int8), ax (their magnitudes, for the
// Q8_0 kernels) and d (len(x)/32 scales).
func quantizeActQ8_0(x []float32, qs []int8, ax []uint8, d []float32) {
	kern.quantAct(x, qs, ax, d, qk8_0)
}

// quantActGo is the portable quantAct.
func quantActGo(x []float32, qs []int8, ax []uint8, d []float32, bs int) {
	for b := range len(x) / bs {
		d[b] = quantizeActBlock(x[b*bs:(b+1)*bs], qs[b*bs:(b+1)*bs])
	}
	for i, v := range qs[:len(x)/bs*bs] {
		ax[i] = uint8(max(v, -v))
	}
}

// quantizeActBlock rounds one block of activations to int8 with a symmetric
// scale (amax/127) and returns the scale.
func quantizeActBlock(xs []float32, q []int8) float32 {
	s, id := int8Scale(xs)
	for j, v := range xs {
		q[j] = int8(math.RoundToEven(float64(v * id)))
	}
	return s
}

// quantizeActQ8K fills the Q8_K activation: int8 values (and their
// magnitudes, unused by the K kernels), one float32 scale per 256, and
// int16 sums per 16 (bs16, for Q6_K's −32 offset) and per 32 (bs32, for
// Q4_K's mins).
func quantizeActQ8K(x []float32, qs []int8, ax []uint8, d []float32, bs16, bs32 []int16) {
	kern.quantAct(x, qs, ax, d, qkK)
	for g := range len(x) / qkK * 16 {
		var sum int16
		for _, v := range qs[16*g : 16*g+16] {
			sum += int16(v)
		}
		bs16[g] = sum
	}
	for g := range len(x) / qkK * 8 {
		bs32[g] = bs16[2*g] + bs16[2*g+1]
	}
}

// Portable row kernels. Each returns Σ w[c]·x[c] for one encoded weight row.

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

func dotF16Go(a []uint16, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(a); i += 2 {
		s0 += f16Table[a[i]] * b[i]
		s1 += f16Table[a[i+1]] * b[i+1]
	}
	for ; i < len(a); i++ {
		s0 += f16Table[a[i]] * b[i]
	}
	return s0 + s1
}

func axpyF16Go(a float32, x []uint16, y []float32) {
	y = y[:len(x)]
	for i, h := range x {
		y[i] += a * f16Table[h]
	}
}

func sumGo(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i]
		s1 += x[i+1]
		s2 += x[i+2]
		s3 += x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func vdF32Go(w []byte, x []float32) float32 {
	w = w[:4*len(x)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:])) * x[i]
		s1 += math.Float32frombits(binary.LittleEndian.Uint32(w[4*i+4:])) * x[i+1]
	}
	for ; i < len(x); i++ {
		s0 += math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:])) * x[i]
	}
	return s0 + s1
}

func vdF16Go(w []byte, x []float32) float32 {
	w = w[:2*len(x)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += f16Table[le16(w[2*i:])] * x[i]
		s1 += f16Table[le16(w[2*i+2:])] * x[i+1]
	}
	for ; i < len(x); i++ {
		s0 += f16Table[le16(w[2*i:])] * x[i]
	}
	return s0 + s1
}

func vdBF16Go(w []byte, x []float32) float32 {
	w = w[:2*len(x)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += BF16ToF32(le16(w[2*i:])) * x[i]
		s1 += BF16ToF32(le16(w[2*i+2:])) * x[i+1]
	}
	for ; i < len(x); i++ {
		s0 += BF16ToF32(le16(w[2*i:])) * x[i]
	}
	return s0 + s1
}

// vdQ8_0Go ignores ax: the magnitudes only spare the vector kernel a
// sign operation per block and row.
func vdQ8_0Go(w []byte, qs []int8, _ []uint8, d []float32) float32 {
	var sum float32
	for b := range d {
		blk := w[b*q8_0Bytes : (b+1)*q8_0Bytes]
		q := qs[b*qk8_0 : (b+1)*qk8_0]
		var s int32
		for j := range qk8_0 {
			s += int32(int8(blk[2+j])) * int32(q[j])
		}
		sum += f16Table[le16(blk)] * d[b] * float32(s)
	}
	return sum
}

func vdQ4_0Go(w []byte, qs []int8, d []float32) float32 {
	var sum float32
	for b := range d {
		blk := w[b*q4_0Bytes : (b+1)*q4_0Bytes]
		q := qs[b*qk4_0 : (b+1)*qk4_0]
		var s int32
		for j := range qk4_0 / 2 {
			v := blk[2+j]
			s += (int32(v&0xf) - 8) * int32(q[j])
			s += (int32(v>>4) - 8) * int32(q[j+16])
		}
		sum += f16Table[le16(blk)] * d[b] * float32(s)
	}
	return sum
}

func vdQ4KGo(w []byte, qs []int8, d []float32, bs32 []int16) float32 {
	var sum float32
	for b := range d {
		blk := w[b*q4KBytes : (b+1)*q4KBytes]
		sc := blk[4:16]
		q4 := blk[16:]
		q8 := qs[b*qkK : (b+1)*qkK]
		var sumi, summ int32
		for j := range qkK / 64 {
			s1, m1 := scaleMinK4(2*j, sc)
			s2, m2 := scaleMinK4(2*j+1, sc)
			var lo, hi int32
			for l := range 32 {
				v := q4[32*j+l]
				lo += int32(v&0xf) * int32(q8[64*j+l])
				hi += int32(v>>4) * int32(q8[64*j+32+l])
			}
			sumi += int32(s1)*lo + int32(s2)*hi
			summ += int32(m1)*int32(bs32[b*8+2*j]) + int32(m2)*int32(bs32[b*8+2*j+1])
		}
		sum += d[b] * (f16Table[le16(blk[0:])]*float32(sumi) - f16Table[le16(blk[2:])]*float32(summ))
	}
	return sum
}

func vdQ6KGo(w []byte, qs []int8, d []float32, bs16 []int16) float32 {
	var sum float32
	for b := range d {
		blk := w[b*q6KBytes : (b+1)*q6KBytes]
		ql, qh, sc := blk[0:128], blk[128:192], blk[192:208]
		q8 := qs[b*qkK : (b+1)*qkK]
		var sumi int32
		for n := 0; n < 2; n++ {
			var s [8]int32
			for l := range 32 {
				is := l / 16
				q1 := int32(ql[l]&0xf | (qh[l]>>0&3)<<4)
				q2 := int32(ql[l+32]&0xf | (qh[l]>>2&3)<<4)
				q3 := int32(ql[l]>>4 | (qh[l]>>4&3)<<4)
				q4 := int32(ql[l+32]>>4 | (qh[l]>>6&3)<<4)
				s[is] += q1 * int32(q8[l])
				s[is+2] += q2 * int32(q8[l+32])
				s[is+4] += q3 * int32(q8[l+64])
				s[is+6] += q4 * int32(q8[l+96])
			}
			for k := range 8 {
				sumi += int32(int8(sc[k])) * (s[k] - 32*int32(bs16[b*16+n*8+k]))
			}
			ql, qh, sc, q8 = ql[64:], qh[32:], sc[8:], q8[128:]
		}
		sum += d[b] * f16Table[le16(blk[208:])] * float32(sumi)
	}
	return sum
}
