package tensor

import (
	"fmt"
	"math"
)

// Dot returns Σ a[i]·b[i] over len(a); b must be at least as long.
func Dot(a, b []float32) float32 {
	_ = b[:len(a)]
	return kern.dot(a, b)
}

// Sum returns Σ x[i].
func Sum(x []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	return kern.sum(x)
}

// Argmax is the index of the largest value (the first on ties): the greedy
// token of a row of logits.
func Argmax[T float32 | float64](x []T) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// Axpy computes y += a·x over len(x).
func Axpy(a float32, x, y []float32) {
	_ = y[:len(x)]
	kern.axpy(a, x, y)
}

// Scale multiplies x by a in place.
func Scale(a float32, x []float32) {
	kern.scale(a, x)
}

// DotF16 returns Σ a[i]·b[i] with a in IEEE half precision (attention over
// an f16 KV cache).
func DotF16(a []uint16, b []float32) float32 {
	_ = b[:len(a)]
	return kern.dotF16(a, b)
}

// AxpyF16 computes y += a·x with x in IEEE half precision.
func AxpyF16(a float32, x []uint16, y []float32) {
	_ = y[:len(x)]
	kern.axpyF16(a, x, y)
}

// RMSNorm writes out[i] = x[i]·weight[i]/sqrt(mean(x²)+eps). out may alias x.
func RMSNorm(out, x, weight []float32, eps float32) {
	if len(out) < len(x) || len(weight) < len(x) {
		panic(fmt.Sprintf("tensor: RMSNorm: x %d, weight %d, out %d", len(x), len(weight), len(out)))
	}
	if len(x) == 0 {
		return
	}
	ss := kern.dot(x, x)
	s := float32(1 / math.Sqrt(float64(ss)/float64(len(x))+float64(eps)))
	kern.mulScale(out, x, weight, s)
}

func mulScaleGo(out, x, w []float32, s float32) {
	for i, v := range x {
		out[i] = v * s * w[i]
	}
}

// expSumBlock is how many values ExpSum adds in float32 before carrying the
// partial sum in float64.
const expSumBlock = 128

// ExpSum replaces x[i] by e^(x[i]−mx) and returns their sum. The sum is
// carried in float64 across blocks of expSumBlock, so a vocabulary-long
// row keeps the relative accuracy of a short one (a plain float32 sum of
// 32k terms drifts by ~1e-5, which shows in a log-probability).
func ExpSum(x []float32, mx float32) float64 {
	var s float64
	for i := 0; i < len(x); i += expSumBlock {
		s += float64(kern.expSum(x[i:min(i+expSumBlock, len(x))], mx))
	}
	return s
}

// Softmax replaces x by exp(x−max)/Σexp(x−max), which cannot overflow. An
// all −Inf row (everything masked) becomes all zeros rather than NaN.
func Softmax(x []float32) {
	softmax(x)
}

// SoftmaxLSE is Softmax that also returns the log-normaliser ln Σ e^x[i]
// (−Inf for an empty or all −Inf row): with it a single probability can be
// recomputed later from its logit alone.
func SoftmaxLSE(x []float32) float32 {
	mx, sum := softmax(x)
	if sum == 0 {
		return float32(math.Inf(-1))
	}
	return float32(float64(mx) + math.Log(float64(sum)))
}

// softmax normalises x in place and returns its max and Σ e^(x−max), sum 0
// for an empty or all −Inf row. Decode's attention takes no logarithm.
func softmax(x []float32) (mx, sum float32) {
	if len(x) == 0 {
		return 0, 0
	}
	mx = kern.max(x)
	if math.IsInf(float64(mx), -1) {
		clear(x)
		return mx, 0
	}
	sum = kern.expSum(x, mx)
	Scale(1/sum, x)
	return mx, sum
}

func silu(v float32) float32 { return v / (1 + expf(-v)) }

// SiLU applies x·sigmoid(x) in place.
func SiLU(x []float32) {
	for i, v := range x {
		x[i] = silu(v)
	}
}

// SwiGLU writes out[i] = silu(gate[i])·up[i]; out may alias gate or up.
func SwiGLU(out, gate, up []float32) {
	if len(up) < len(gate) || len(out) < len(gate) {
		panic(fmt.Sprintf("tensor: SwiGLU: gate %d, up %d, out %d", len(gate), len(up), len(out)))
	}
	kern.swiglu(out, gate, up)
}

func swigluGo(out, gate, up []float32) {
	for i, g := range gate {
		out[i] = silu(g) * up[i]
	}
}

// SwiGLUParallel is SwiGLU split over the pool's threads: a prefill's
// batch × hidden elements would otherwise run on one core while the
// others wait for the next matrix product.
func SwiGLUParallel(p *Pool, out, gate, up []float32) {
	if len(up) < len(gate) || len(out) < len(gate) {
		panic(fmt.Sprintf("tensor: SwiGLU: gate %d, up %d, out %d", len(gate), len(up), len(out)))
	}
	p.sw = swigluTask{out: out, gate: gate, up: up}
	p.Parallel((len(gate)+swigluGrain-1)/swigluGrain, 1, &p.sw)
	p.sw = swigluTask{}
}

// swigluGrain elements (a few microseconds) make one unit of parallel work.
const swigluGrain = 8192

type swigluTask struct{ out, gate, up []float32 }

func (t *swigluTask) Run(_, lo, hi int) {
	a, b := lo*swigluGrain, min(hi*swigluGrain, len(t.gate))
	kern.swiglu(t.out[a:b], t.gate[a:b], t.up[a:b])
}
