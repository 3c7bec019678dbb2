package draw

import (
	"image"
	"image/color"
)

// Canvas is an RGBA buffer with the few primitives the charts need. The
// primitives write Pix directly: image/draw's generic paths are far too slow
// to redraw a 4k-column strip every animation frame in wasm.
type Canvas struct {
	*image.RGBA
}

// NewCanvas allocates a w×h canvas.
func NewCanvas(w, h int) *Canvas {
	return &Canvas{image.NewRGBA(image.Rect(0, 0, w, h))}
}

// W and H are the canvas size.
func (c *Canvas) W() int { return c.Rect.Dx() }
func (c *Canvas) H() int { return c.Rect.Dy() }

// Clear fills the whole canvas.
func (c *Canvas) Clear(col color.RGBA) { c.FillRect(c.Rect, col) }

// FillRect fills r clipped to the canvas.
func (c *Canvas) FillRect(r image.Rectangle, col color.RGBA) {
	r = r.Intersect(c.Rect)
	if r.Empty() {
		return
	}
	w := r.Dx() * 4
	row := c.Pix[c.PixOffset(r.Min.X, r.Min.Y):]
	// Fill the first row, then copy it: copy is a memmove.
	for i := 0; i < w; i += 4 {
		row[i], row[i+1], row[i+2], row[i+3] = col.R, col.G, col.B, col.A
	}
	first := row[:w]
	for y := r.Min.Y + 1; y < r.Max.Y; y++ {
		copy(c.Pix[c.PixOffset(r.Min.X, y):], first)
	}
}

// StrokeRect draws a rectangle outline t pixels thick inside r.
func (c *Canvas) StrokeRect(r image.Rectangle, t int, col color.RGBA) {
	if t <= 0 {
		return
	}
	c.FillRect(image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+t), col)
	c.FillRect(image.Rect(r.Min.X, r.Max.Y-t, r.Max.X, r.Max.Y), col)
	c.FillRect(image.Rect(r.Min.X, r.Min.Y, r.Min.X+t, r.Max.Y), col)
	c.FillRect(image.Rect(r.Max.X-t, r.Min.Y, r.Max.X, r.Max.Y), col)
}

// Set writes one pixel if it is inside the canvas.
func (c *Canvas) Set(x, y int, col color.RGBA) {
	if !(image.Point{x, y}).In(c.Rect) {
		return
	}
	i := c.PixOffset(x, y)
	c.Pix[i], c.Pix[i+1], c.Pix[i+2], c.Pix[i+3] = col.R, col.G, col.B, col.A
}

// At is the colour of one pixel as RGBA (image.RGBA's At returns
// color.Color, which tests would have to convert).
func (c *Canvas) RGBAAt(x, y int) color.RGBA { return c.RGBA.RGBAAt(x, y) }

// Line draws a line t pixels thick with Bresenham's algorithm.
func (c *Canvas) Line(x0, y0, x1, y1, t int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	h := t / 2
	for {
		if t <= 1 {
			c.Set(x0, y0, col)
		} else {
			c.FillRect(image.Rect(x0-h, y0-h, x0-h+t, y0-h+t), col)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
