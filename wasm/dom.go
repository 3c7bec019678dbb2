//go:build js && wasm

package main

import (
	"strconv"
	"strings"
	"syscall/js"
)

// Thin DOM helpers. Every handle the pages use is looked up once at start;
// a missing element yields js.Null and the helpers turn into no-ops, so a
// page without an optional control still works.

var (
	global   = js.Global()
	document = global.Get("document")
)

func byID(id string) js.Value { return document.Call("getElementById", id) }

func exists(v js.Value) bool { return v.Truthy() }

func setText(el js.Value, s string) {
	if exists(el) {
		el.Set("textContent", s)
	}
}

func setHTML(el js.Value, s string) {
	if exists(el) {
		el.Set("innerHTML", s)
	}
}

func setDisabled(el js.Value, d bool) {
	if exists(el) {
		el.Set("disabled", d)
	}
}

func setHidden(el js.Value, h bool) {
	if exists(el) {
		el.Set("hidden", h)
	}
}

// setBusy marks live regions busy while they stream, so screen readers
// announce the finished text once instead of every token.
func setBusy(busy bool, els ...js.Value) {
	for _, el := range els {
		if exists(el) {
			el.Call("setAttribute", "aria-busy", strconv.FormatBool(busy))
		}
	}
}

func value(el js.Value) string {
	if !exists(el) {
		return ""
	}
	return el.Get("value").String()
}

func setValue(el js.Value, s string) {
	if exists(el) {
		el.Set("value", s)
	}
}

func floatValue(el js.Value, def float64) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(value(el)), 64)
	if err != nil {
		return def
	}
	return f
}

func intValue(el js.Value, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(value(el)))
	if err != nil {
		return def
	}
	return n
}

// funcs keeps every listener alive for the page's lifetime; they are never
// released because the page never tears its controls down.
var funcs []js.Func

// on adds an event listener. The handler gets the event.
func on(el js.Value, event string, fn func(ev js.Value)) {
	if !exists(el) {
		return
	}
	f := js.FuncOf(func(this js.Value, args []js.Value) any {
		fn(args[0])
		return nil
	})
	funcs = append(funcs, f)
	el.Call("addEventListener", event, f)
}

// after runs fn once after ms milliseconds and returns the timer id.
func after(ms int, fn func()) int {
	var f js.Func
	f = js.FuncOf(func(js.Value, []js.Value) any {
		f.Release()
		fn()
		return nil
	})
	return global.Call("setTimeout", f, ms).Int()
}

func every(ms int, fn func()) {
	f := js.FuncOf(func(js.Value, []js.Value) any {
		fn()
		return nil
	})
	funcs = append(funcs, f)
	global.Call("setInterval", f, ms)
}

func cancelTimer(id int) { global.Call("clearTimeout", id) }

// dataInt reads a data-* attribute as an int, walking up from the event
// target to the nearest element that has it (event delegation).
func dataInt(target js.Value, key string) (int, js.Value, bool) {
	for el := target; exists(el) && el.Get("dataset").Truthy(); el = el.Get("parentElement") {
		if v := el.Get("dataset").Get(key); v.Truthy() {
			n, err := strconv.Atoi(v.String())
			return n, el, err == nil
		}
	}
	return 0, js.Null(), false
}

// copyText puts text on the clipboard; browsers refuse outside secure
// contexts, so the failure is reported in the status line.
func copyText(text string, done func(ok bool)) {
	clip := global.Get("navigator").Get("clipboard")
	if !clip.Truthy() {
		done(false)
		return
	}
	var ok, fail js.Func
	ok = js.FuncOf(func(js.Value, []js.Value) any { ok.Release(); fail.Release(); done(true); return nil })
	fail = js.FuncOf(func(js.Value, []js.Value) any { ok.Release(); fail.Release(); done(false); return nil })
	clip.Call("writeText", text).Call("then", ok, fail)
}

// bytesFromJS copies an ArrayBuffer (a binary WebSocket message) into Go.
func bytesFromJS(buf js.Value) []byte {
	arr := global.Get("Uint8Array").New(buf)
	b := make([]byte, arr.Get("length").Int())
	js.CopyBytesToGo(b, arr)
	return b
}

// bytesToJS copies Go bytes into a fresh Uint8Array for WebSocket.send.
func bytesToJS(b []byte) js.Value {
	arr := global.Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(arr, b)
	return arr
}
