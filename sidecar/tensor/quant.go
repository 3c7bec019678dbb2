package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Quantizers follow llama.cpp's reference (non-imatrix) code so files written
// here decode identically there; float32 arithmetic is kept where the
// reference uses it because scale searches compare errors and a float64
// intermediate would pick different scales on near ties.

const groupMaxEps = 1e-15

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

func put16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }

// nearestInt rounds half to even, as llama.cpp's nearest_int does with its
// 1.5·2^23 addition trick.
func nearestInt(f float32) int { return int(math.RoundToEven(float64(f))) }

// Quantize encodes src as type t. len(src) must be a multiple of t's block size.
func Quantize(t DType, src []float32) ([]byte, error) {
	bs := t.BlockSize()
	if bs == 0 {
		return nil, fmt.Errorf("tensor: cannot quantize to unsupported type %s", t)
	}
	if len(src)%bs != 0 {
		return nil, fmt.Errorf("tensor: cannot quantize %d values to %s: not a multiple of its block size %d", len(src), t, bs)
	}
	dst := make([]byte, t.RowBytes(len(src)))
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			put16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			put16(dst[2*i:], F32ToBF16(v))
		}
	case Q4_0:
		for i := 0; i < len(src)/qk4_0; i++ {
			quantizeBlockQ4_0(dst[i*q4_0Bytes:], src[i*qk4_0:(i+1)*qk4_0])
		}
	case Q8_0:
		for i := 0; i < len(src)/qk8_0; i++ {
			quantizeBlockQ8_0(dst[i*q8_0Bytes:], src[i*qk8_0:(i+1)*qk8_0])
		}
	case Q4_K:
		for i := 0; i < len(src)/qkK; i++ {
			quantizeBlockQ4K(dst[i*q4KBytes:], src[i*qkK:(i+1)*qkK])
		}
	case Q6_K:
		for i := 0; i < len(src)/qkK; i++ {
			quantizeBlockQ6K(dst[i*q6KBytes:], src[i*qkK:(i+1)*qkK])
		}
	}
	return dst, nil
}

// Dequantize decodes len(dst) values of type t from src. len(dst) must be a
// multiple of the block size and src must hold t.RowBytes(len(dst)) bytes.
func Dequantize(t DType, src []byte, dst []float32) {
	need := t.RowBytes(len(dst))
	if len(src) < need {
		panic(fmt.Sprintf("tensor: Dequantize %s: %d bytes for %d values, need %d", t, len(src), len(dst), need))
	}
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = f16Table[le16(src[2*i:])]
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(le16(src[2*i:]))
		}
	case Q4_0:
		for i := 0; i < len(dst)/qk4_0; i++ {
			dequantBlockQ4_0(dst[i*qk4_0:(i+1)*qk4_0], src[i*q4_0Bytes:])
		}
	case Q8_0:
		for i := 0; i < len(dst)/qk8_0; i++ {
			dequantBlockQ8_0(dst[i*qk8_0:(i+1)*qk8_0], src[i*q8_0Bytes:])
		}
	case Q4_K:
		for i := 0; i < len(dst)/qkK; i++ {
			dequantBlockQ4K(dst[i*qkK:(i+1)*qkK], src[i*q4KBytes:])
		}
	case Q6_K:
		for i := 0; i < len(dst)/qkK; i++ {
			dequantBlockQ6K(dst[i*qkK:(i+1)*qkK], src[i*q6KBytes:])
		}
	}
}

// Q4_0: d (f16), then 16 bytes whose low nibbles are elements 0..15 and high
// nibbles elements 16..31; value = (q-8)·d.

func quantizeBlockQ4_0(dst []byte, x []float32) {
	var amax, max float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, max = a, v
		}
	}
	d := max / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	put16(dst, F32ToF16(d))
	for j := 0; j < qk4_0/2; j++ {
		x0 := x[j]*id + 8.5
		x1 := x[j+qk4_0/2]*id + 8.5
		dst[2+j] = byte(min(15, int(int8(x0)))) | byte(min(15, int(int8(x1))))<<4
	}
}

func dequantBlockQ4_0(y []float32, b []byte) {
	d := f16Table[le16(b)]
	for j := 0; j < qk4_0/2; j++ {
		q := b[2+j]
		y[j] = float32(int(q&0xf)-8) * d
		y[j+qk4_0/2] = float32(int(q>>4)-8) * d
	}
}

// Q8_0: d (f16), then 32 int8; value = q·d.

func quantizeBlockQ8_0(dst []byte, x []float32) {
	d, id := int8Scale(x)
	put16(dst, F32ToF16(d))
	for j, v := range x {
		dst[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

func dequantBlockQ8_0(y []float32, b []byte) {
	d := f16Table[le16(b)]
	for j := range qk8_0 {
		y[j] = float32(int8(b[2+j])) * d
	}
}

// Q4_K super-block (256 values, 8 sub-blocks of 32): d, dmin (f16), 12 bytes
// of 6-bit sub-block scales and mins, 128 bytes of nibbles. Each 32 bytes of
// nibbles hold two sub-blocks: low nibbles first, high nibbles second.
// value = d·sc·q − dmin·m.

// scaleMinK4 unpacks the j-th 6-bit (scale, min) pair from the 12-byte field.
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func quantizeBlockQ4K(dst []byte, x []float32) {
	var (
		L       [qkK]uint8
		laux    [32]uint8
		weights [32]float32
		mins    [qkK / 32]float32
		scales  [qkK / 32]float32
	)
	var maxScale, maxMin float32
	for j := range qkK / 32 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += v * v
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(15, xs, weights[:], L[32*j:32*j+32], laux[:], -1, 0.1, 20)
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := dst[4:16]
	clear(sc)
	for j := range qkK / 32 {
		ls := uint8(min(63, nearestInt(invScale*scales[j])))
		lm := uint8(min(63, nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	put16(dst[0:], F32ToF16(maxScale/63))
	put16(dst[2:], F32ToF16(maxMin/63))
	d := f16Table[le16(dst[0:])]
	dmin := f16Table[le16(dst[2:])]
	// Requantize against the rounded scales actually stored.
	for j := range qkK / 32 {
		s, m := scaleMinK4(j, sc)
		dd := d * float32(s)
		if dd == 0 {
			continue
		}
		dm := dmin * float32(m)
		for ii := range 32 {
			L[32*j+ii] = uint8(max(0, min(15, nearestInt((x[32*j+ii]+dm)/dd))))
		}
	}
	q := dst[16:]
	for j := 0; j < qkK; j += 64 {
		for l := range 32 {
			q[l] = L[j+l] | L[j+l+32]<<4
		}
		q = q[32:]
	}
}

// makeQKX2Quants fits x ≈ scale·L − min with weighted least squares over a few
// candidate scales (llama.cpp make_qkx2_quants with use_mad=false). It returns
// the scale and the (non-negative) min.
func makeQKX2Quants(nmax int, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < len(x); i++ {
		mn = min(mn, x[i])
		mx = max(mx, x[i])
		sumW += weights[i]
		sumX += weights[i] * x[i]
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		clear(L[:len(x)])
		return 0, -mn
	}
	iscale := float32(nmax) / (mx - mn)
	scale := 1 / iscale
	var bestMad float32
	for i, v := range x {
		l := max(0, min(nmax, nearestInt(iscale*(v-mn))))
		L[i] = uint8(l)
		diff := scale*float32(l) + mn - v
		bestMad += weights[i] * diff * diff
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + rdelta*float32(is) + float32(nmax)) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := max(0, min(nmax, nearestInt(iscale*(v-mn))))
			laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += w * fl
			sumL2 += w * fl * fl
			sumXL += w * fl * v
		}
		D := sumW*sumL2 - sumL*sumL
		if D > 0 {
			thisScale := (sumW*sumXL - sumX*sumL) / D
			thisMin := (sumL2*sumX - sumL*sumXL) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var mad float32
			for i, v := range x {
				diff := thisScale*float32(laux[i]) + thisMin - v
				mad += weights[i] * diff * diff
			}
			if mad < bestMad {
				copy(L[:len(x)], laux[:len(x)])
				bestMad = mad
				scale = thisScale
				mn = thisMin
			}
		}
	}
	return scale, -mn
}

func dequantBlockQ4K(y []float32, b []byte) {
	d := f16Table[le16(b[0:])]
	dmin := f16Table[le16(b[2:])]
	sc := b[4:16]
	q := b[16:]
	for j := range qkK / 64 {
		s1, m1 := scaleMinK4(2*j, sc)
		s2, m2 := scaleMinK4(2*j+1, sc)
		d1, mm1 := d*float32(s1), dmin*float32(m1)
		d2, mm2 := d*float32(s2), dmin*float32(m2)
		for l := range 32 {
			y[64*j+l] = d1*float32(q[32*j+l]&0xf) - mm1
			y[64*j+32+l] = d2*float32(q[32*j+l]>>4) - mm2
		}
	}
}

// Q6_K super-block: ql[128] (low 4 bits), qh[64] (high 2 bits), 16 int8
// sub-block scales, d (f16). value = d·sc·(q−32), 16 values per scale.

func quantizeBlockQ6K(dst []byte, x []float32) {
	var (
		L      [qkK]int8
		scales [qkK / 16]float32
	)
	var maxScale, maxAbsScale float32
	for ib := range qkK / 16 {
		s := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if a := abs32(s); a > maxAbsScale {
			maxAbsScale, maxScale = a, s
		}
	}
	ql, qh, sc := dst[0:128], dst[128:192], dst[192:208]
	if maxAbsScale < groupMaxEps {
		clear(dst[:q6KBytes])
		return
	}
	iscale := -128 / maxScale
	put16(dst[208:], F32ToF16(1/iscale))
	for ib := range qkK / 16 {
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	d0 := f16Table[le16(dst[208:])]
	for j := range qkK / 16 {
		d := d0 * float32(int8(sc[j]))
		if d == 0 {
			continue
		}
		for ii := range 16 {
			l := max(-32, min(31, nearestInt(x[16*j+ii]/d)))
			L[16*j+ii] = int8(l + 32)
		}
	}
	for j := 0; j < qkK; j += 128 {
		for l := range 32 {
			q1 := uint8(L[j+l])
			q2 := uint8(L[j+l+32])
			q3 := uint8(L[j+l+64])
			q4 := uint8(L[j+l+96])
			ql[l] = q1&0xf | (q3&0xf)<<4
			ql[l+32] = q2&0xf | (q4&0xf)<<4
			qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
		ql = ql[64:]
		qh = qh[32:]
	}
}

// makeQXQuants is llama.cpp make_qx_quants with rmse_type 1 and no
// importance weights: symmetric levels in [-nmax, nmax), x²-weighted least
// squares over 19 candidate scales. L receives levels offset by nmax.
func makeQXQuants(nmax int, x []float32, L []int8) float32 {
	var max, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, max = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	iscale := -float32(nmax) / max
	var sumLX, sumL2 float32
	for i, v := range x {
		l := max0(nmax, nearestInt(iscale*v))
		L[i] = int8(l + nmax)
		w := v * v
		sumLX += w * v * float32(l)
		sumL2 += w * float32(l*l)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + 0.1*float32(is)) / max
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			l := max0(nmax, nearestInt(iscale*v))
			w := v * v
			sumLX += w * v * float32(l)
			sumL2 += w * float32(l*l)
		}
		if sumL2 > 0 && sumLX*sumLX > best*sumL2 {
			for i, v := range x {
				L[i] = int8(nmax + max0(nmax, nearestInt(iscale*v)))
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// max0 clamps l to the symmetric level range [-nmax, nmax-1].
func max0(nmax, l int) int { return max(-nmax, min(nmax-1, l)) }

func dequantBlockQ6K(y []float32, b []byte) {
	d := f16Table[le16(b[208:])]
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	for n := 0; n < qkK; n += 128 {
		for l := range 32 {
			is := l / 16
			q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
			q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			y[n+l] = d * float32(int8(sc[is])) * float32(q1)
			y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}

// int8Scale is the symmetric int8 scale of x, its largest magnitude over
// 127, and that scale's inverse (0 for an all-zero x): Q8_0 weights and the
// Q8 activations the integer kernels take both round x·id.
func int8Scale(x []float32) (d, id float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	if d = amax / 127; d != 0 {
		id = 1 / d
	}
	return d, id
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }
