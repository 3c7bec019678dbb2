package eval

import (
	"math"
	"testing"
)

func approx(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestKL(t *testing.T) {
	cases := []struct {
		name string
		p, q []float32
		want float64
	}{
		{"identical", []float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{"shifted logits are the same distribution", []float32{1, 2, 3}, []float32{11, 12, 13}, 0},
		// p = (1/2, 1/2), q = (1/5, 4/5) via logits (0,0) and (0, ln 4):
		// KL = ½ln(½/⅕) + ½ln(½/⅘) = ½ln(2.5) + ½ln(0.625).
		{"hand computed pair", []float32{0, 0}, []float32{0, float32(math.Log(4))}, 0.5*math.Log(2.5) + 0.5*math.Log(0.625)},
		// p = (1/4, 3/4) via (0, ln 3), q uniform: ¼ln(½) + ¾ln(3/2).
		{"against uniform", []float32{0, float32(math.Log(3))}, []float32{5, 5}, 0.25*math.Log(0.5) + 0.75*math.Log(1.5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := KL(LogProbs(c.p, nil), LogProbs(c.q, nil))
			if !approx(got, c.want, 1e-6) {
				t.Fatalf("KL = %.9f, want %.9f", got, c.want)
			}
		})
	}
}

func TestRougeL(t *testing.T) {
	cases := []struct {
		ref, cand string
		want      float64
	}{
		{"the cat sat on the mat", "the cat sat on the mat", 1},
		{"", "", 1},
		{"a b c", "", 0},
		{"a b c", "x y z", 0},
		// LCS("the cat sat on the mat", "the cat was on the mat") = 5:
		// P = R = 5/6, F1 = 5/6.
		{"the cat sat on the mat", "the cat was on the mat", 5.0 / 6},
		// LCS = 2 ("a c"): P = 2/2, R = 2/4, F1 = 2·1·½/(1+½) = 2/3.
		{"a b c d", "a c", 2.0 / 3},
	}
	for _, c := range cases {
		if got := RougeL(c.ref, c.cand); !approx(got, c.want, 1e-12) {
			t.Errorf("RougeL(%q, %q) = %v, want %v", c.ref, c.cand, got, c.want)
		}
	}
}

func TestDeltaPPL(t *testing.T) {
	// Synthetic: full model gives every reference token p = 1/2, compressed
	// p = 1/4, so PPL goes 2 → 4: +100 %.
	n := 10
	full, comp := 0.0, 0.0
	for i := 0; i < n; i++ {
		full -= math.Log(0.5)
		comp -= math.Log(0.25)
	}
	cases := []struct {
		name       string
		full, comp float64
		n          int
		want       float64
	}{
		{"doubling", full, comp, n, 100},
		{"equal", full, full, n, 0},
		{"better", comp, full, n, -50},
	}
	for _, c := range cases {
		if got := DeltaPPLPct(c.full, c.comp, c.n); !approx(got, c.want, 1e-9) {
			t.Errorf("%s: ΔPPL = %v, want %v", c.name, got, c.want)
		}
	}
	if got := Perplexity(full, n); !approx(got, 2, 1e-12) {
		t.Errorf("Perplexity = %v, want 2", got)
	}
	if !math.IsNaN(DeltaPPLPct(0, 0, 0)) {
		t.Error("ΔPPL over no tokens should be NaN")
	}
}

func TestSequenceMetrics(t *testing.T) {
	cases := []struct {
		ref, cand []int
		div       int
		exact     float64
	}{
		{[]int{1, 2, 3}, []int{1, 2, 3}, 3, 1},
		{[]int{1, 2, 3, 4}, []int{1, 2, 9, 4}, 2, 0.75},
		{[]int{1, 2, 3, 4}, []int{1, 2}, 2, 0.5},
		{[]int{1, 2}, []int{1, 2, 3}, 2, 1},
		{[]int{5}, []int{6}, 0, 0},
		{nil, nil, 0, 1},
	}
	for _, c := range cases {
		if got := FirstDivergence(c.ref, c.cand); got != c.div {
			t.Errorf("FirstDivergence(%v, %v) = %d, want %d", c.ref, c.cand, got, c.div)
		}
		if got := ExactMatch(c.ref, c.cand); !approx(got, c.exact, 1e-12) {
			t.Errorf("ExactMatch(%v, %v) = %v, want %v", c.ref, c.cand, got, c.exact)
		}
	}
}

func TestPercentileAndLoss(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if got := Percentile(xs, 0.5); got != 3 {
		t.Errorf("median = %v, want 3", got)
	}
	if got := Percentile([]float64{0, 10}, 0.95); !approx(got, 9.5, 1e-12) {
		t.Errorf("p95 = %v, want 9.5", got)
	}
	a := []float32{0.1, 0.2, 0.3, 0.4}
	cases := []struct {
		kept []int32
		want float64
	}{
		{[]int32{0, 1, 2, 3}, 0},
		{[]int32{3}, 0.6},
		{[]int32{0, 2}, 0.6},
		{nil, 1},
	}
	for _, c := range cases {
		if got := AttentionLoss(a, c.kept); !approx(got, c.want, 1e-6) {
			t.Errorf("AttentionLoss(%v) = %v, want %v", c.kept, got, c.want)
		}
	}
}
