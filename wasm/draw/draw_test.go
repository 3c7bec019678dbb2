package draw

import (
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/fastgen/fastgen/shared"
)

func TestPolicyColorsDistinct(t *testing.T) {
	seen := map[color.RGBA]string{}
	for _, p := range shared.Policies {
		c, ok := PolicyColors[p]
		if !ok {
			t.Fatalf("no colour for %s", p)
		}
		if prev, dup := seen[c]; dup {
			t.Fatalf("%s and %s share %s", p, prev, Hex(c))
		}
		seen[c] = p
	}
	if PolicyColor("future-policy") != MidGray {
		t.Fatal("unknown policy colour")
	}
	if Hex(Vermillion) != "#d55e00" {
		t.Fatal(Hex(Vermillion))
	}
}

func TestFillRectClips(t *testing.T) {
	cv := NewCanvas(4, 3)
	cv.Clear(White)
	cv.FillRect(image.Rect(-2, 1, 2, 10), Blue)
	want := []string{
		"WWWW",
		"BBWW",
		"BBWW",
	}
	check(t, cv, want, map[byte]color.RGBA{'W': White, 'B': Blue})
	cv.FillRect(image.Rect(10, 10, 20, 20), Blue) // fully outside: no panic
}

func TestStrokeAndLine(t *testing.T) {
	cv := NewCanvas(5, 5)
	cv.Clear(White)
	cv.StrokeRect(image.Rect(0, 0, 5, 5), 1, Black)
	cv.Line(1, 1, 3, 3, 1, Blue)
	want := []string{
		"KKKKK",
		"KBWWK",
		"KWBWK",
		"KWWBK",
		"KKKKK",
	}
	check(t, cv, want, map[byte]color.RGBA{'W': White, 'B': Blue, 'K': Black})
}

func check(t *testing.T, cv *Canvas, want []string, key map[byte]color.RGBA) {
	t.Helper()
	for y, row := range want {
		for x := range row {
			if got := cv.RGBAAt(x, y); got != key[row[x]] {
				t.Errorf("pixel (%d,%d) = %v, want %c", x, y, got, row[x])
			}
		}
	}
}

func TestGrid(t *testing.T) {
	tests := []struct {
		name             string
		w, h, rows, cols int
		cell, gap        int
	}{
		{"32x32 in 480", 480, 480, 32, 32, 14, 1},
		{"5x4 small model", 400, 300, 5, 4, 59, 1},
		{"tiny cells lose the gap", 64, 64, 32, 32, 2, 0},
		{"more cells than pixels", 10, 10, 32, 32, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			area := image.Rect(0, 0, tt.w, tt.h)
			g := NewGrid(area, tt.rows, tt.cols)
			if g.Cell != tt.cell || g.Gap != tt.gap {
				t.Fatalf("cell %d gap %d, want %d %d", g.Cell, g.Gap, tt.cell, tt.gap)
			}
			if tt.cols*g.Cell <= tt.w {
				last := g.CellRect(tt.rows-1, tt.cols-1)
				if !last.In(area) {
					t.Fatalf("last cell %v outside %v", last, area)
				}
			}
			// Every cell's centre hits itself.
			for r := 0; r < tt.rows; r++ {
				for c := 0; c < tt.cols; c++ {
					rc := g.CellRect(r, c)
					hr, hc, ok := g.Hit(rc.Min.Add(image.Pt(g.Cell/2, g.Cell/2)))
					if rc.Min.X < 0 || rc.Min.Y < 0 {
						continue // centred off-canvas when cells outnumber pixels
					}
					if !ok || hr != r || hc != c {
						t.Fatalf("hit (%d,%d) = (%d,%d,%v)", r, c, hr, hc, ok)
					}
				}
			}
		})
	}
	g := NewGrid(image.Rect(0, 0, 100, 100), 2, 2)
	if _, _, ok := g.Hit(image.Pt(-1, 5)); ok {
		t.Fatal("hit outside")
	}
}

func TestPolicyGridColours(t *testing.T) {
	cv := NewCanvas(200, 100)
	cv.Clear(White)
	g := NewGrid(cv.Rect, 2, 4)
	policy := []int{0, 1, 2, 3, 4, -1, 4, 0}
	PolicyGrid(cv, g, policy, []bool{false, true}, 7)
	for i, p := range policy {
		r := g.CellRect(i/4, i%4)
		centre := cv.RGBAAt((r.Min.X+r.Max.X)/2, (r.Min.Y+r.Max.Y)/2)
		want := LightGray
		if p >= 0 {
			want = PolicyColor(shared.Policies[p])
		}
		if centre != want {
			t.Errorf("head %d centre %v, want %v", i, centre, want)
		}
	}
	if c := g.CellRect(0, 1); cv.RGBAAt(c.Min.X, c.Min.Y) != Highlight {
		t.Error("changed head not outlined")
	}
	if c := g.CellRect(0, 0); cv.RGBAAt(c.Min.X, c.Min.Y) == Highlight {
		t.Error("unchanged head outlined")
	}
}

func TestMassBars(t *testing.T) {
	cv := NewCanvas(40, 100)
	cv.Clear(White)
	area := cv.Rect
	MassBars(cv, area, []shared.Mass{
		{Special: 0.5, Punct: 0.25, Local: 0.25},
		{Other: 2}, // not normalised: must still fill exactly the bar
	}, 1, -1)
	// Bar 0 occupies the first slot; bottom half special.
	if got := cv.RGBAAt(2, 90); got != MassSpecial {
		t.Fatalf("bottom of bar 0 = %v", got)
	}
	if got := cv.RGBAAt(2, 40); got != MassPunct {
		t.Fatalf("middle of bar 0 = %v", got)
	}
	if got := cv.RGBAAt(2, 10); got != MassLocal {
		t.Fatalf("top of bar 0 = %v", got)
	}
	// With room for layer gaps, bar 1 sits in slot 2 of 3.
	x := columnX(area, 2, 3) + 1
	if got := cv.RGBAAt(x, 0); got != MassOther {
		t.Fatalf("top of bar 1 = %v", got)
	}
	MassBars(cv, area, []shared.Mass{{Special: math.NaN()}}, 1, 0) // no panic
}

type fakeStrip func(s, p int) Cell

func (f fakeStrip) Row(step int, dst []Cell) {
	for p := range dst {
		dst[p] = f(step, p)
	}
}

func TestStrip(t *testing.T) {
	// 3 steps over 4 positions, 1 px per cell: position 0 special, 1 evicted
	// from step 1, 2 kept, 3 exists from step 2 only.
	src := fakeStrip(func(s, p int) Cell {
		switch {
		case p == 0:
			return Special
		case p == 1 && s >= 1:
			return Evicted
		case p == 3 && s < 2:
			return Future
		}
		return Kept
	})
	cv := NewCanvas(4, 3)
	l := NewStripLayout(cv.Rect, 3, 4)
	Strip(cv, l, src, 0, 3)
	want := []string{"SKKF", "SEKF", "SEKK"}
	check(t, cv, want, map[byte]color.RGBA{'S': CellSpecial, 'K': CellKept, 'E': CellEvicted, 'F': CellFuture})
	if l.StepAt(2) != 2 || l.PosAt(1) != 1 {
		t.Fatal("inverse mapping")
	}

	// Incremental drawing equals drawing at once.
	a, b := NewCanvas(50, 40), NewCanvas(50, 40)
	la, lb := NewStripLayout(a.Rect, 30, 70), NewStripLayout(b.Rect, 30, 70)
	Strip(a, la, src, 0, 30)
	for s := 0; s < 30; s++ {
		Strip(b, lb, src, s, s+1)
	}
	if string(a.Pix) != string(b.Pix) {
		t.Fatal("incremental strip differs")
	}

	// 4096 positions squeezed into 64 px (64 per pixel): a lone special
	// token survives, a lone punct among evicted entries does not, and a
	// mostly-kept bucket shows as kept despite some punctuation.
	big := fakeStrip(func(s, p int) Cell {
		switch {
		case p == 2049:
			return Special
		case p == 100:
			return Punct
		case p >= 128 && p < 192:
			if p%4 == 0 {
				return Punct
			}
			return Kept
		}
		return Evicted
	})
	cv = NewCanvas(64, 1)
	Strip(cv, NewStripLayout(cv.Rect, 1, 4096), big, 0, 1)
	for _, tt := range []struct {
		x    int
		want color.RGBA
	}{{2049 / 64, CellSpecial}, {100 / 64, CellEvicted}, {128 / 64, CellKept}} {
		if got := cv.RGBAAt(tt.x, 0); got != tt.want {
			t.Errorf("pixel %d = %v, want %v", tt.x, got, tt.want)
		}
	}
}

func TestBucketState(t *testing.T) {
	tests := []struct {
		in   []Cell
		want Cell
	}{
		{[]Cell{Future, Future}, Future},
		{[]Cell{Future, Evicted}, Evicted},
		{[]Cell{Kept, Evicted}, Kept},
		{[]Cell{Punct, Punct, Kept}, Punct},
		{[]Cell{Evicted, Evicted, Special}, Special},
		{[]Cell{InWindow}, InWindow},
		{[]Cell{Future, Future, Kept}, Kept},
	}
	for _, tt := range tests {
		if got := bucketState(tt.in); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestChart(t *testing.T) {
	cv := NewCanvas(11, 11)
	Chart(cv, cv.Rect, 0, 0, 1, Series{Values: []float64{0, math.NaN(), 1}, Color: Blue})
	if cv.RGBAAt(0, 9) != Blue && cv.RGBAAt(0, 10) != Blue {
		t.Fatal("first point not drawn at the bottom")
	}
	if cv.RGBAAt(10, 0) != Blue && cv.RGBAAt(9, 0) != Blue {
		t.Fatal("last point not drawn at the top")
	}
	if cv.RGBAAt(5, 5) == Blue {
		t.Fatal("NaN gap was bridged")
	}
	MarkX(cv, cv.Rect, 1, 2, Black)
	if cv.RGBAAt(10, 5) != Black {
		t.Fatal("marker")
	}
}

// BenchmarkStrip4kRow is the per-token cost: one new row of a 4k strip.
func BenchmarkStrip4kRow(b *testing.B) {
	src := fakeStrip(func(s, p int) Cell { return Cell(1 + (s+p)%5) })
	cv := NewCanvas(1024, 320)
	l := NewStripLayout(cv.Rect, 512, 4096)
	i := 0
	for b.Loop() {
		Strip(cv, l, src, i%512, i%512+1)
		i++
	}
}

func BenchmarkPolicyGrid32x32(b *testing.B) {
	cv := NewCanvas(480, 480)
	g := NewGrid(cv.Rect, 32, 32)
	policy := make([]int, 1024)
	for i := range policy {
		policy[i] = i % 5
	}
	for b.Loop() {
		PolicyGrid(cv, g, policy, nil, 3)
	}
}
