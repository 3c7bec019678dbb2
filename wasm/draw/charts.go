package draw

import (
	"image"
	"image/color"
	"math"

	"github.com/fastgen/fastgen/shared"
)

// Grid lays out rows × cols square cells centred in an area, the geometry
// shared by drawing and hit-testing so a click always lands on the cell
// that was drawn there.
type Grid struct {
	Rows, Cols int
	Cell, Gap  int
	Origin     image.Point
}

// NewGrid fits the largest square cells into area. Gaps appear only when
// cells are large enough that a 1px gap does not swallow them.
func NewGrid(area image.Rectangle, rows, cols int) Grid {
	if rows <= 0 || cols <= 0 {
		return Grid{}
	}
	g := Grid{Rows: rows, Cols: cols}
	for _, gap := range []int{1, 0} {
		cw := (area.Dx() - gap*(cols-1)) / cols
		ch := (area.Dy() - gap*(rows-1)) / rows
		g.Cell, g.Gap = min(cw, ch), gap
		if g.Cell >= 6 || gap == 0 {
			break
		}
	}
	g.Cell = max(g.Cell, 1)
	w := cols*g.Cell + (cols-1)*g.Gap
	h := rows*g.Cell + (rows-1)*g.Gap
	g.Origin = image.Pt(area.Min.X+(area.Dx()-w)/2, area.Min.Y+(area.Dy()-h)/2)
	return g
}

// CellRect is the rectangle of cell (r, c).
func (g Grid) CellRect(r, c int) image.Rectangle {
	x := g.Origin.X + c*(g.Cell+g.Gap)
	y := g.Origin.Y + r*(g.Cell+g.Gap)
	return image.Rect(x, y, x+g.Cell, y+g.Cell)
}

// Hit returns the cell under p; gaps count as the cell to their left/top
// so the pointer never falls through between cells.
func (g Grid) Hit(p image.Point) (r, c int, ok bool) {
	if g.Rows == 0 || p.X < g.Origin.X || p.Y < g.Origin.Y {
		return 0, 0, false
	}
	step := g.Cell + g.Gap
	c = (p.X - g.Origin.X) / step
	r = (p.Y - g.Origin.Y) / step
	if r >= g.Rows || c >= g.Cols {
		return 0, 0, false
	}
	return r, c, true
}

// PolicyGrid draws one cell per (layer, KV head): rows are layers, columns
// KV heads, filled with the policy colour. policy holds indexes into
// shared.Policies per flat head (-1: not profiled yet). changed heads get
// an outline, and the selected head a thicker one.
func PolicyGrid(cv *Canvas, g Grid, policy []int, changed []bool, selected int) {
	for i, p := range policy {
		r, c := i/max(g.Cols, 1), i%max(g.Cols, 1)
		if r >= g.Rows {
			break
		}
		rect := g.CellRect(r, c)
		col := LightGray
		if p >= 0 && p < len(shared.Policies) {
			col = PolicyColor(shared.Policies[p])
		}
		cv.FillRect(rect, col)
		// Thin enough that a grid where every head changed still reads as
		// colours, thick enough to see on a projector.
		t := min(max(1, g.Cell/12), 4)
		if i < len(changed) && changed[i] {
			cv.StrokeRect(rect, t, Highlight)
			// An inner white ring keeps the outline visible on dark fills.
			if g.Cell >= 8 {
				cv.StrokeRect(rect.Inset(t), 1, White)
			}
		}
		if i == selected {
			cv.StrokeRect(rect.Inset(-max(1, g.Gap)), t+1, Highlight)
		}
	}
}

// Columns maps n equal columns onto area's width; column i spans
// [X(i), X(i+1)). With more columns than pixels some columns are empty, which
// callers treat as "hidden at this zoom".
func columnX(area image.Rectangle, i, n int) int {
	return area.Min.X + i*area.Dx()/max(n, 1)
}

// MassBars draws one stacked column per head (layer-major, a gap between
// layers when there is room): special at the bottom, then punct, local and
// other. Shares are normalised so rounding never overflows the bar.
func MassBars(cv *Canvas, area image.Rectangle, mass []shared.Mass, perLayer int, selected int) {
	n := len(mass)
	if n == 0 {
		return
	}
	perLayer = max(perLayer, 1)
	layers := (n + perLayer - 1) / perLayer
	slots := n
	if area.Dx() >= 2*(n+layers) {
		slots = n + layers - 1 // one empty slot between layers
	}
	for i, m := range mass {
		slot := i
		if slots > n {
			slot += i / perLayer
		}
		x0, x1 := columnX(area, slot, slots), columnX(area, slot+1, slots)
		if x1 <= x0 {
			continue
		}
		if x1-x0 >= 4 {
			x1-- // a hairline between bars
		}
		parts := [4]float64{m.Special, m.Punct, m.Local, m.Other}
		sum := 0.0
		for j := range parts {
			parts[j] = math.Max(0, parts[j])
			sum += parts[j]
		}
		if sum == 0 || math.IsNaN(sum) || math.IsInf(sum, 0) {
			continue
		}
		cols := [4]color.RGBA{MassSpecial, MassPunct, MassLocal, MassOther}
		h := float64(area.Dy())
		y := float64(area.Max.Y)
		for j, p := range parts {
			top := y - p/sum*h
			cv.FillRect(image.Rect(x0, int(math.Round(top)), x1, int(math.Round(y))), cols[j])
			y = top
		}
		if i == selected {
			cv.FillRect(image.Rect(x0, area.Min.Y, x1, area.Min.Y+3), Highlight)
		}
	}
}

// Cell is the state of one (step, position) in a head's kept-token strip.
// Larger values win when several positions share a pixel, so special and
// punctuation tokens stay visible when a long prompt is squeezed.
type Cell uint8

const (
	Future Cell = iota // position not generated yet at that step
	Evicted
	Kept
	InWindow
	Punct
	Special
)

// Color is the strip colour of a cell state.
func (c Cell) Color() color.RGBA {
	switch c {
	case Evicted:
		return CellEvicted
	case Kept:
		return CellKept
	case InWindow:
		return CellWindow
	case Punct:
		return CellPunct
	case Special:
		return CellSpecial
	}
	return CellFuture
}

// StripSource fills dst (one entry per position) with the state of every
// position at a decode step. A whole row per call keeps the inner loop free
// of interface calls.
type StripSource interface {
	Row(step int, dst []Cell)
}

// StripLayout fixes the strip's geometry for a whole run: rows are decode
// steps and columns token positions, both sized for the run's capacity
// (prompt + max tokens) so that a recorded step always lands on the same
// pixels and each new step draws one row instead of the whole strip.
type StripLayout struct {
	Area       image.Rectangle
	Steps      int // capacity in decode steps
	Positions  int // capacity in token positions
	row        []Cell
	cols, rows int
}

// NewStripLayout sizes a strip; with more steps (positions) than pixel rows
// (columns), several share a pixel.
func NewStripLayout(area image.Rectangle, steps, positions int) *StripLayout {
	l := &StripLayout{Area: area, Steps: max(steps, 1), Positions: max(positions, 1)}
	l.rows = min(l.Steps, max(area.Dy(), 1))
	l.cols = min(l.Positions, max(area.Dx(), 1))
	return l
}

// RowSpan is the pixel rows [y0, y1) where a step is drawn.
func (l *StripLayout) RowSpan(step int) (y0, y1 int) {
	r := step * l.rows / l.Steps
	y0 = l.Area.Min.Y + r*l.Area.Dy()/l.rows
	y1 = l.Area.Min.Y + (r+1)*l.Area.Dy()/l.rows
	if y1-y0 >= 4 {
		y1-- // separate steps when rows are tall enough to read
	}
	return y0, y1
}

// StepAt maps a pixel row back to the latest step drawn there.
func (l *StripLayout) StepAt(y int) int {
	if l.Area.Dy() == 0 {
		return 0
	}
	r := (y - l.Area.Min.Y) * l.rows / l.Area.Dy()
	return min(((r+1)*l.Steps-1)/l.rows, l.Steps-1)
}

// PosAt maps a pixel column to the first position it shows.
func (l *StripLayout) PosAt(x int) int {
	if l.Area.Dx() == 0 {
		return 0
	}
	c := (x - l.Area.Min.X) * l.cols / l.Area.Dx()
	return c * l.Positions / l.cols
}

// Strip draws steps [from, to) into their rows. When positions outnumber
// pixels a pixel shows what most of its positions are (see bucketState);
// when steps outnumber pixel rows the later step overwrites, so a row shows
// the newest state it covers.
func Strip(cv *Canvas, l *StripLayout, src StripSource, from, to int) {
	if cap(l.row) < l.Positions {
		l.row = make([]Cell, l.Positions)
	}
	row := l.row[:l.Positions]
	for step := max(from, 0); step < min(to, l.Steps); step++ {
		clear(row)
		src.Row(step, row)
		y0, y1 := l.RowSpan(step)
		cv.FillRect(image.Rect(l.Area.Min.X, y0, l.Area.Max.X, y1), CellFuture)
		for c := 0; c < l.cols; c++ {
			best := bucketState(row[c*l.Positions/l.cols : (c+1)*l.Positions/l.cols])
			if best == Future {
				continue
			}
			x0 := l.Area.Min.X + c*l.Area.Dx()/l.cols
			x1 := l.Area.Min.X + (c+1)*l.Area.Dx()/l.cols
			cv.FillRect(image.Rect(x0, y0, x1, y1), best.Color())
		}
	}
}

// bucketState summarises positions that share one pixel. A special token
// wins outright: there are few of them and they carry most of the attention
// sinks, so they must survive any squeeze. Otherwise the most common state
// among existing positions wins (ties to the larger Cell), which keeps the
// kept/evicted pattern readable; "any punctuation wins" would paint a
// 4k-token prompt solid.
func bucketState(cells []Cell) Cell {
	if len(cells) == 1 {
		return cells[0]
	}
	var n [Special + 1]int
	for _, s := range cells {
		if s == Special {
			return Special
		}
		if s < Special {
			n[s]++
		}
	}
	// Positions not generated yet never win against ones that exist, so
	// the newest token shows as soon as it lands in a pixel.
	best, bestN := Future, 0
	for s := Evicted; s < Special; s++ {
		if n[s] > 0 && n[s] >= bestN {
			best, bestN = s, n[s]
		}
	}
	return best
}

// Series is one line on a chart; NaN values leave gaps.
type Series struct {
	Values []float64
	Color  color.RGBA
}

// Chart draws series over a shared x axis of n points (n ≥ the longest
// series) scaled to [lo, hi]. A baseline and a top line frame the plot
// since the chart carries no text; the table beside it gives the numbers.
func Chart(cv *Canvas, area image.Rectangle, n int, lo, hi float64, series ...Series) {
	cv.FillRect(area, White)
	cv.FillRect(image.Rect(area.Min.X, area.Max.Y-1, area.Max.X, area.Max.Y), MidGray)
	cv.FillRect(image.Rect(area.Min.X, area.Min.Y, area.Max.X, area.Min.Y+1), LightGray)
	if hi <= lo {
		hi = lo + 1
	}
	for _, s := range series {
		n = max(n, len(s.Values))
	}
	if n == 0 {
		return
	}
	pt := func(i int, v float64) image.Point {
		x := area.Min.X
		if n > 1 {
			x += i * (area.Dx() - 1) / (n - 1)
		}
		f := (math.Min(math.Max(v, lo), hi) - lo) / (hi - lo)
		return image.Pt(x, area.Max.Y-1-int(math.Round(f*float64(area.Dy()-1))))
	}
	for _, s := range series {
		var prev image.Point
		have := false
		for i, v := range s.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				have = false
				continue
			}
			p := pt(i, v)
			if have {
				cv.Line(prev.X, prev.Y, p.X, p.Y, 2, s.Color)
			} else {
				cv.Line(p.X, p.Y, p.X, p.Y, 2, s.Color)
			}
			prev, have = p, true
		}
	}
}

// MarkX draws a vertical marker at point i of n on a chart's x axis, the
// same mapping Chart uses.
func MarkX(cv *Canvas, area image.Rectangle, i, n int, col color.RGBA) {
	x := area.Min.X
	if n > 1 {
		x += i * (area.Dx() - 1) / (n - 1)
	}
	cv.FillRect(image.Rect(x, area.Min.Y, x+1, area.Max.Y), col)
}
