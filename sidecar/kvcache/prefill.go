package kvcache

import (
	"fmt"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Attention over a whole prompt at once. Attend serves one (token, head)
// at a time: fine for a decode step, but a prompt's tokens each re-read
// every key and value of the head through per-block dot products. Here a
// head's keys and values are converted once into the panels of the MatMul
// micro-kernel, and the prompt's queries go through six at a time:
// scores = Q·Kᵀ and outputs = P·V are then panel products like prefill's
// matrix multiplies.

// PrefillScratch is one worker's memory for AttendPrefill, grown to the
// largest head seen and then reused: a head's keys and values in float32
// (2·Kept·d·4 bytes: 256 KiB for 512 entries of 64) plus six rows of scores
// per query group.
type PrefillScratch struct {
	kt    []float32 // key panels: entries 16p.. at kt[p*16*d:], d × 16
	vp    []float32 // value panels: columns 16c.. at vp[c*l16*16:], l16 × 16
	rows  []float32 // 16 entries' keys (or values) in float32
	s     []float32 // a tile's scores, then probabilities: groups × 6 rows of l16
	lse   []float32 // their log-normalisers, groups × 6
	probs []float32 // one token's rows for a RowSink, groups × limit
	qpad  []float32 // a short last tile's queries, 6 × d
	opad  []float32 // and its outputs
}

// RowSink receives what AttendPrefill computes for each token, in token
// order: its attention probabilities over the first limit entries (groups
// rows, row g at probs[g*limit:]) and their log-normalisers (lse[g]). The
// slices are reused after the call returns.
type RowSink interface {
	PromptRow(kvHead, token int, probs, lse []float32, groups, limit int)
}

// CanAttendPrefill reports whether AttendPrefill can serve this cache: head
// dims in whole 16-value panels, and K/V rows held in host memory.
func (c *Cache) CanAttendPrefill() bool {
	if c.pool.headDim == 0 || c.pool.headDim%16 != 0 {
		return false
	}
	for i := range c.heads {
		if len(c.heads[i].blocks) > 0 {
			return c.heads[i].blocks[0].hasRows()
		}
	}
	return true
}

// AttendPrefill attends every token of the n-token batch appended last, for
// the groups query heads sharing (layer, kvHead), exactly as n Attend calls
// with limits Kept−n+i+1 would, up to float rounding: token i's query for
// group g is q[i*qs+g*d:][:d] and its output goes to out[i*os+g*d:][:d].
// With a sink, every token's probabilities go to it as Attend would have
// written them (FastGen's profiler, attention observers).
func (c *Cache) AttendPrefill(layer, kvHead int, q []float32, qs, groups, n int, scale float32, out []float32, os int, sc *PrefillScratch, sink RowSink) {
	h := c.h(layer, kvHead)
	d := c.pool.headDim
	if n < 1 || n > h.n || d%16 != 0 {
		panic(fmt.Sprintf("kvcache: AttendPrefill of %d tokens over %d kept entries of dim %d", n, h.n, d))
	}
	total := h.n
	base := total - n
	l16 := (total + 15) &^ 15
	sc.grow(d, l16, groups)

	// Keys as k-major panels of 16 entries, values as 16-column panels
	// (entry-major), both zero past the last entry.
	nc := d / 16
	rows := sc.rows[:16*d]
	for p := 0; p < l16/16; p++ {
		lo, hi := 16*p, min(16*p+16, total)
		c.rowsF32(h, lo, hi, false, rows)
		clear(rows[(hi-lo)*d:])
		tensor.PackPanel(sc.kt[p*16*d:], rows, d, d)
		c.rowsF32(h, lo, hi, true, rows)
		clear(rows[(hi-lo)*d:])
		for i := range 16 {
			for cb := range nc {
				copy(sc.vp[(cb*l16+lo+i)*16:][:16], rows[i*d+16*cb:][:16])
			}
		}
	}

	const tile = tensor.PanelRows
	for i0 := 0; i0 < n; i0 += tile {
		nt := min(tile, n-i0)
		lt := base + i0 + nt // the tile's last token sees this many
		lt16 := (lt + 15) &^ 15
		padded := nt < tile
		for g := range groups {
			x, xs := q[i0*qs+g*d:], qs
			o, ostride := out[i0*os+g*d:], os
			if padded {
				for j := range tile {
					qj := sc.qpad[j*d : (j+1)*d]
					if j < nt {
						copy(qj, q[(i0+j)*qs+g*d:][:d])
					} else {
						clear(qj)
					}
				}
				x, xs, o, ostride = sc.qpad, d, sc.opad, d
			}
			s := sc.s[g*tile*lt16 : (g+1)*tile*lt16]
			for p := 0; p < lt16/16; p++ {
				tensor.Gemm6x16(sc.kt[p*16*d:], d, x, xs, s[16*p:], lt16, false)
			}
			for j := range tile {
				row := s[j*lt16 : (j+1)*lt16]
				limit := base + i0 + j + 1
				if j >= nt {
					limit = 0
				}
				tensor.Scale(scale, row[:limit])
				sc.lse[g*tile+j] = tensor.SoftmaxLSE(row[:limit])
				clear(row[limit:])
			}
			for cb := range nc {
				tensor.Gemm6x16(sc.vp[cb*l16*16:], lt16, s, lt16, o[16*cb:], ostride, false)
			}
			if padded {
				for j := range nt {
					copy(out[(i0+j)*os+g*d:][:d], o[j*d:(j+1)*d])
				}
			}
		}
		if sink == nil {
			continue
		}
		for j := range nt {
			limit := base + i0 + j + 1
			probs, lse := sc.probs[:groups*limit], sc.lse[groups*tile:][:groups]
			for g := range groups {
				copy(probs[g*limit:(g+1)*limit], sc.s[(g*tile+j)*lt16:][:limit])
				lse[g] = sc.lse[g*tile+j]
			}
			sink.PromptRow(kvHead, i0+j, probs, lse, groups, limit)
		}
	}
}

func (sc *PrefillScratch) grow(d, l16, groups int) {
	sc.kt = growTo(sc.kt, l16*d)
	sc.vp = growTo(sc.vp, l16*d)
	sc.s = growTo(sc.s, groups*tensor.PanelRows*l16)
	sc.lse = growTo(sc.lse, groups*(tensor.PanelRows+1))
	sc.probs = growTo(sc.probs, groups*l16)
	sc.rows = growTo(sc.rows, 16*d)
	sc.qpad = growTo(sc.qpad, tensor.PanelRows*d)
	sc.opad = growTo(sc.opad, tensor.PanelRows*d)
}

func growTo(s []float32, n int) []float32 {
	if len(s) < n {
		return make([]float32, n)
	}
	return s
}
