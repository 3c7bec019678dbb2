package app

import (
	"math"

	"github.com/fastgen/fastgen/shared"
)

// Divergence is the first index where the two streams chose different
// tokens, or -1 while they agree on every index both have produced.
func Divergence(a, b []shared.Token) int {
	for i := range min(len(a), len(b)) {
		if a[i].Token != b[i].Token {
			return i
		}
	}
	return -1
}

// Agreement is the running top-1 agreement: entry i is the share of steps
// 0..i at which both streams picked the same token.
func Agreement(a, b []shared.Token) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	same := 0
	for i := range n {
		if a[i].Token == b[i].Token {
			same++
		}
		out[i] = float64(same) / float64(i+1)
	}
	return out
}

// KLSeries gives KL(p_baseline ‖ p_primary) per step. The server's exact
// value (Token.KL on the primary stream) wins; otherwise it is estimated
// from the two top-k lists, with the primary's unlisted tokens sharing its
// leftover mass over the rest of the vocabulary. exact reports whether
// every value came from the server. Steps with no way to tell are NaN.
func KLSeries(primary, baseline []shared.Token, vocab int) (kl []float64, exact bool) {
	n := min(len(primary), len(baseline))
	kl = make([]float64, n)
	exact = true
	for i := range n {
		if primary[i].KL != nil {
			kl[i] = *primary[i].KL
			continue
		}
		exact = false
		kl[i] = estimateKL(baseline[i].Top, primary[i].Top, vocab)
	}
	return kl, exact
}

// estimateKL is KL(p ‖ q) over p's listed tokens.
func estimateKL(p, q []shared.Alternative, vocab int) float64 {
	if len(p) == 0 || len(q) == 0 {
		return math.NaN()
	}
	qp := make(map[int]float64, len(q))
	rest := 1.0
	for _, a := range q {
		v := math.Exp(a.Logprob)
		qp[a.Token] = v
		rest -= v
	}
	floor := 1e-9
	if unlisted := vocab - len(q); unlisted > 0 && rest > 0 {
		floor = max(floor, rest/float64(unlisted))
	}
	kl := 0.0
	for _, a := range p {
		pv := math.Exp(a.Logprob)
		qv, ok := qp[a.Token]
		if !ok || qv <= 0 {
			qv = floor
		}
		kl += pv * (math.Log(pv) - math.Log(qv))
	}
	return max(kl, 0)
}

// DiffOp marks one token in a two-column view.
type DiffOp uint8

const (
	Same    DiffOp = iota
	Changed        // present in this column only
)

// maxLCSCells bounds the LCS table (int32 cells): beyond it the diff falls
// back to position-by-position, which long free-running outputs need
// anyway once they have diverged.
const maxLCSCells = 4 << 20

// TokenDiff marks each token of a and b as Same when it belongs to a longest
// common subsequence of the two token-id sequences, so a stream that
// diverges and later re-joins the other shows only the differing stretch.
func TokenDiff(a, b []shared.Token) (da, db []DiffOp) {
	da, db = make([]DiffOp, len(a)), make([]DiffOp, len(b))
	n, m := len(a), len(b)
	if n*m > maxLCSCells {
		for i := range da {
			if i >= m || a[i].Token != b[i].Token {
				da[i] = Changed
			}
		}
		for i := range db {
			if i >= n || a[i].Token != b[i].Token {
				db[i] = Changed
			}
		}
		return da, db
	}
	// l[i][j] = LCS length of a[i:] and b[j:].
	w := m + 1
	l := make([]int32, (n+1)*w)
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i].Token == b[j].Token {
				l[i*w+j] = l[(i+1)*w+j+1] + 1
			} else {
				l[i*w+j] = max(l[(i+1)*w+j], l[i*w+j+1])
			}
		}
	}
	for i := range da {
		da[i] = Changed
	}
	for j := range db {
		db[j] = Changed
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i].Token == b[j].Token:
			da[i], db[j] = Same, Same
			i++
			j++
		case l[(i+1)*w+j] >= l[i*w+j+1]:
			i++
		default:
			j++
		}
	}
	return da, db
}

// MemSeries returns the compressed and full KV bytes per step of a stream.
func MemSeries(s *Stream) (kv, full []float64) {
	kv = make([]float64, len(s.Mem))
	full = make([]float64, len(s.Mem))
	for i, m := range s.Mem {
		kv[i], full[i] = float64(m.KVBytes), float64(m.KVBytesFull)
	}
	return kv, full
}
