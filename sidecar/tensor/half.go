package tensor

import "math"

// f16Table maps every half-precision bit pattern to its float32 value. The
// portable kernels use it instead of bit manipulation: one load beats a
// branchy decode in an inner loop, and 256 KiB is small next to a model.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: shift the mantissa up until the implicit bit appears,
		// lowering the exponent once per shift.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	case 0x1f:
		// Inf or NaN; the payload is kept so NaNs stay NaNs.
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F16ToF32 converts an IEEE 754 binary16 value to float32 (exactly; every
// half is representable).
func F16ToF32(h uint16) float32 { return f16Table[h] }

// F32ToF16 converts to IEEE 754 binary16 with round-to-nearest-even, giving
// subnormals, ±Inf on overflow and a quiet NaN for NaN, the same as the F16C
// VCVTPS2PH instruction so the assembly and portable paths agree bit for bit.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			// Below half the smallest subnormal: rounds to zero.
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++ // may carry into the smallest normal, which is the right encoding
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent yields the next binade or Inf, both correct
	}
	return sign | uint16(h)
}

// BF16ToF32 converts a bfloat16 value to float32 (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts to bfloat16 with round-to-nearest-even; NaNs stay
// (quiet) NaNs rather than rounding into Inf.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32s converts len(src) halves into dst (used by the f16 KV cache).
func F16ToF32s(dst []float32, src []uint16) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	kern.f16ToF32s(dst[:len(src)], src)
}

// F32ToF16s converts len(src) floats into dst with round-to-nearest-even.
func F32ToF16s(dst []uint16, src []float32) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	kern.f32ToF16s(dst[:len(src)], src)
}

func f16ToF32sGo(dst []float32, src []uint16) {
	for i, h := range src {
		dst[i] = f16Table[h]
	}
}

func f32ToF16sGo(dst []uint16, src []float32) {
	for i, f := range src {
		dst[i] = F32ToF16(f)
	}
}
