package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// refModel is a float64 copy of a model's weights for the reference forward.
type refModel struct {
	c                          Config
	embed, output              [][]float64
	outNorm                    []float64
	attnNorm, ffnNorm          [][]float64
	wq, wk, wv, wo, w1, w2, w3 [][][]float64
}

func dequant(m *tensor.Matrix) [][]float64 {
	out := make([][]float64, m.Rows)
	row := make([]float32, m.Cols)
	for r := range out {
		m.Row(r, row)
		out[r] = make([]float64, m.Cols)
		for j, v := range row {
			out[r][j] = float64(v)
		}
	}
	return out
}

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func newRef(m *Model) *refModel {
	r := &refModel{c: m.Config, embed: dequant(m.embed), output: dequant(m.output), outNorm: f64s(m.outNorm)}
	for _, l := range m.layers {
		r.attnNorm = append(r.attnNorm, f64s(l.attnNorm))
		r.ffnNorm = append(r.ffnNorm, f64s(l.ffnNorm))
		r.wq = append(r.wq, dequant(l.wq))
		r.wk = append(r.wk, dequant(l.wk))
		r.wv = append(r.wv, dequant(l.wv))
		r.wo = append(r.wo, dequant(l.wo))
		r.w1 = append(r.w1, dequant(l.gate))
		r.w2 = append(r.w2, dequant(l.down))
		r.w3 = append(r.w3, dequant(l.up))
	}
	return r
}

func matvec(w [][]float64, x []float64) []float64 {
	out := make([]float64, len(w))
	for r, row := range w {
		for j, v := range row {
			out[r] += v * x[j]
		}
	}
	return out
}

func rmsnorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i := range x {
		out[i] = x[i] * s * w[i]
	}
	return out
}

// forward runs the whole sequence from scratch and returns every position's
// logits: the textbook Llama forward, written for clarity, not speed.
func (r *refModel) forward(tokens []int) [][]float64 {
	c := r.c
	hd, g := c.HeadDim, c.Groups()
	var keys, vals [][][]float64 // layer → position → kv row
	keys = make([][][]float64, c.Layers)
	vals = make([][][]float64, c.Layers)
	var logits [][]float64
	for pos, tok := range tokens {
		x := append([]float64(nil), r.embed[tok]...)
		for l := 0; l < c.Layers; l++ {
			xb := rmsnorm(x, r.attnNorm[l], float64(c.Eps))
			q, k, v := matvec(r.wq[l], xb), matvec(r.wk[l], xb), matvec(r.wv[l], xb)
			rot := func(vec []float64) {
				for h := 0; h < len(vec)/hd; h++ {
					for i := 0; i < hd/2; i++ {
						f := float64(pos) * math.Pow(c.RopeBase, -float64(2*i)/float64(hd))
						a, b := vec[h*hd+2*i], vec[h*hd+2*i+1]
						vec[h*hd+2*i] = a*math.Cos(f) - b*math.Sin(f)
						vec[h*hd+2*i+1] = a*math.Sin(f) + b*math.Cos(f)
					}
				}
			}
			rot(q)
			rot(k)
			keys[l] = append(keys[l], k)
			vals[l] = append(vals[l], v)
			att := make([]float64, c.Dim)
			for h := 0; h < c.Heads; h++ {
				kh := h / g
				scores := make([]float64, pos+1)
				mx := math.Inf(-1)
				for j := 0; j <= pos; j++ {
					var s float64
					for d := 0; d < hd; d++ {
						s += q[h*hd+d] * keys[l][j][kh*hd+d]
					}
					scores[j] = s / math.Sqrt(float64(hd))
					mx = math.Max(mx, scores[j])
				}
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				for j := range scores {
					for d := 0; d < hd; d++ {
						att[h*hd+d] += scores[j] / sum * vals[l][j][kh*hd+d]
					}
				}
			}
			o := matvec(r.wo[l], att)
			for i := range x {
				x[i] += o[i]
			}
			xb = rmsnorm(x, r.ffnNorm[l], float64(c.Eps))
			a, b := matvec(r.w1[l], xb), matvec(r.w3[l], xb)
			for i := range a {
				a[i] = a[i] / (1 + math.Exp(-a[i])) * b[i]
			}
			d := matvec(r.w2[l], a)
			for i := range x {
				x[i] += d[i]
			}
		}
		logits = append(logits, matvec(r.output, rmsnorm(x, r.outNorm, float64(c.Eps))))
	}
	return logits
}

// TestForwardMatchesFloat64Reference builds small random models in every
// weight type with our GGUF writer and checks prefill and decode logits
// against a float64 forward over the same (dequantized) weights. Quantized
// types also quantize activations to 8 bits inside the matrix products,
// which bounds how close they can get.
func TestForwardMatchesFloat64Reference(t *testing.T) {
	shape := Shape{Name: "tiny", Dim: 256, Hidden: 512, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 300, Ctx: 64}
	for _, tc := range []struct {
		dt  tensor.DType
		tol float64 // max |Δlogit| / max |logit|
	}{
		{tensor.F32, 1e-5}, {tensor.F16, 1e-5}, {tensor.BF16, 1e-5},
		{tensor.Q8_0, 2e-2}, {tensor.Q4_0, 2e-2}, {tensor.Q4_K, 2e-2}, {tensor.Q6_K, 2e-2},
	} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := Synthesize(path, shape, tc.dt, 42); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tokens := []int{1, 17, 260, 5, 299, 42, 100, 7, 3, 250}
			want := newRef(m).forward(tokens)

			pool := tensor.NewPool(2)
			defer pool.Close()
			c := m.Config
			cache := kvcache.New(kvcache.Config{Layers: c.Layers, KVHeads: c.KVHeads}, kvcache.NewPool(c.HeadDim, kvcache.F32, 0, 0))
			defer cache.Close()
			st := NewState(m, pool)
			prefill := 6
			logits, err := st.Forward(cache, Batch{Tokens: tokens[:prefill], Flags: make([]kvcache.Flags, prefill), AllLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			got := make([][]float32, 0, len(tokens))
			for p := 0; p < prefill; p++ {
				got = append(got, append([]float32(nil), logits[p*c.Vocab:(p+1)*c.Vocab]...))
			}
			for _, tok := range tokens[prefill:] {
				logits, err = st.Forward(cache, Batch{Tokens: []int{tok}, Flags: make([]kvcache.Flags, 1)})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, append([]float32(nil), logits...))
			}
			var maxRef, maxDiff float64
			for p := range want {
				for j, v := range want[p] {
					maxRef = math.Max(maxRef, math.Abs(v))
					maxDiff = math.Max(maxDiff, math.Abs(v-float64(got[p][j])))
				}
			}
			if rel := maxDiff / maxRef; rel > tc.tol {
				t.Errorf("max |Δlogit| = %.3g (%.3g of max |logit| %.3g), want ≤ %.3g", maxDiff, rel, maxRef, tc.tol)
			} else {
				t.Logf("max |Δlogit| = %.3g of max |logit| %.3g", maxDiff, maxRef)
			}
		})
	}
}

// TestRopeTables: the rotation angles every backend takes (Model.RopeTables)
// are pos·base^(−2j/d), rounded once from float64, at small and far
// positions.
func TestRopeTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Synthesize(path, Shape{Name: "tiny", Dim: 64, Hidden: 128, Layers: 1, Heads: 2, KVHeads: 2, Vocab: 300, Ctx: 64}, tensor.F32, 1); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	half := c.RopeDim / 2
	for _, start := range []int{0, 1, 4093} {
		const n = 3
		cos, sin := make([]float32, n*half), make([]float32, n*half)
		m.RopeTables(start, n, cos, sin)
		for i := range n {
			for j := range half {
				a := float64(start+i) * math.Pow(c.RopeBase, -float64(2*j)/float64(c.RopeDim)) / c.RopeScale
				if got, want := cos[i*half+j], float32(math.Cos(a)); math.Abs(float64(got-want)) > 1e-7 {
					t.Fatalf("position %d pair %d: cos %g, want %g", start+i, j, got, want)
				}
				if got, want := sin[i*half+j], float32(math.Sin(a)); math.Abs(float64(got-want)) > 1e-7 {
					t.Fatalf("position %d pair %d: sin %g, want %g", start+i, j, got, want)
				}
			}
		}
	}
}
