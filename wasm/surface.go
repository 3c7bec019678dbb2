//go:build js && wasm

package main

import (
	"image"
	"syscall/js"

	"github.com/fastgen/fastgen/wasm/draw"
)

// surface pairs a <canvas> with the Go buffer drawn into it. Pages draw
// into cv and mark it dirty; flush copies the whole buffer to the canvas at
// most once per animation frame. The Uint8ClampedArray and ImageData are
// allocated once and share memory, so a flush is one copy and one put.
type surface struct {
	el, ctx, arr, img js.Value
	cv                *draw.Canvas
	dirty             bool
}

func newSurface(el js.Value) *surface {
	if !exists(el) {
		return nil
	}
	w, h := el.Get("width").Int(), el.Get("height").Int()
	s := &surface{el: el, ctx: el.Call("getContext", "2d"), cv: draw.NewCanvas(w, h)}
	s.arr = global.Get("Uint8ClampedArray").New(w * h * 4)
	s.img = global.Get("ImageData").New(s.arr, w, h)
	s.cv.Clear(draw.White)
	s.dirty = true
	return s
}

func (s *surface) flush() {
	if s == nil || !s.dirty {
		return
	}
	js.CopyBytesToJS(s.arr, s.cv.Pix)
	s.ctx.Call("putImageData", s.img, 0, 0)
	s.dirty = false
}

// point maps a mouse event to canvas pixels: the canvas is scaled by CSS,
// so client coordinates are rescaled by the drawn size.
func (s *surface) point(ev js.Value) image.Point {
	r := s.el.Call("getBoundingClientRect")
	rw, rh := r.Get("width").Float(), r.Get("height").Float()
	if rw == 0 || rh == 0 {
		return image.Point{-1, -1}
	}
	x := (ev.Get("clientX").Float() - r.Get("left").Float()) * float64(s.cv.W()) / rw
	y := (ev.Get("clientY").Float() - r.Get("top").Float()) * float64(s.cv.H()) / rh
	return image.Pt(int(x), int(y))
}
