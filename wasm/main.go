//go:build js && wasm

// Command wasm is the browser client (GOOS=js GOARCH=wasm). It drives the
// page named by <body data-page>: chat, compare or classroom. Page state
// and drawing live in the js-free packages wasm/app and wasm/draw; this
// package only wires DOM events, the WebSocket and the canvases to them.
package main

import (
	"strconv"
	"strings"
	"syscall/js"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/app"
)

// page is one of the three page controllers.
type page interface {
	hello(h *shared.Hello)
	frame(f shared.Frame) // a frame that belongs to a request
	lost()                // the connection dropped: in-flight runs are gone
	render()              // once per animation frame; cheap when nothing changed
}

type client struct {
	conn     *conn
	model    shared.ModelInfo
	page     page
	surfaces []*surface
	ids      app.IDs
	statusEl js.Value
}

func main() {
	c := &client{statusEl: byID("conn")}
	// A per-tab prefix keeps request ids distinct in server logs.
	c.ids.Prefix = "r" + strconv.FormatInt(int64(global.Get("Math").Call("random").Float()*1e9), 36) + "-"
	switch document.Get("body").Get("dataset").Get("page").String() {
	case "compare":
		c.page = newComparePage(c)
	case "classroom":
		c.page = newClassroomPage(c)
	default:
		c.page = newChatPage(c)
	}
	setupPresenter()
	c.conn = newConn(c.frame, c.status, c.page.lost)
	c.conn.connect()
	c.startRenderLoop()
	select {} // keep the Go runtime alive for the callbacks
}

func (c *client) status(text string, ok bool) {
	setText(c.statusEl, text)
	if exists(c.statusEl) {
		c.statusEl.Get("classList").Call("toggle", "ok", ok)
		c.statusEl.Get("classList").Call("toggle", "bad", !ok)
	}
}

func (c *client) frame(f shared.Frame) {
	switch f := f.(type) {
	case *shared.Hello:
		c.model = f.Model
		m := f.Model
		setText(byID("model"), m.Name+" · "+strconv.Itoa(m.NLayers)+" layers × "+strconv.Itoa(m.NKVHeads)+" KV heads")
		c.page.hello(f)
		return
	case *shared.Pong:
		return
	case *shared.Error:
		if f.ID == "" {
			c.status("Server error ("+f.Code+"): "+f.Message, false)
			return
		}
	}
	c.page.frame(f)
}

// send transmits a frame, reporting a closed connection in the status line.
func (c *client) send(f shared.Frame) bool {
	if !c.conn.send(f) {
		c.status("Not connected yet: the request was not sent", false)
		return false
	}
	return true
}

func (c *client) surface(id string) *surface {
	s := newSurface(byID(id))
	if s != nil {
		c.surfaces = append(c.surfaces, s)
	}
	return s
}

// startRenderLoop decodes queued frames and redraws on
// requestAnimationFrame, so bursts of frames from the socket cost one DOM
// update and one canvas copy per display frame.
func (c *client) startRenderLoop() {
	var loop js.Func
	loop = js.FuncOf(func(js.Value, []js.Value) any {
		// Half a 60 Hz frame for frames, leaving the rest for drawing.
		c.conn.drain(8)
		c.page.render()
		for _, s := range c.surfaces {
			s.flush()
		}
		global.Call("requestAnimationFrame", loop)
		return nil
	})
	global.Call("requestAnimationFrame", loop)
}

// setupPresenter toggles large type for projectors, from the button or the
// P key, and remembers the choice.
func setupPresenter() {
	btn := byID("presenter")
	body := document.Get("body")
	store := global.Get("localStorage")
	set := func(on bool) {
		body.Get("classList").Call("toggle", "presenter", on)
		if exists(btn) {
			btn.Call("setAttribute", "aria-pressed", strconv.FormatBool(on))
		}
		if store.Truthy() {
			store.Call("setItem", "fastgen.presenter", strconv.FormatBool(on))
		}
	}
	if store.Truthy() && store.Call("getItem", "fastgen.presenter").String() == "true" {
		set(true)
	}
	toggle := func() { set(!body.Get("classList").Call("contains", "presenter").Bool()) }
	on(btn, "click", func(js.Value) { toggle() })
	on(document, "keydown", func(ev js.Value) {
		if ev.Get("key").String() == "p" && !typing(ev) && !ev.Get("ctrlKey").Bool() && !ev.Get("metaKey").Bool() {
			toggle()
		}
	})
}

// typing reports whether a key event goes to a text field, where shortcuts
// must not fire.
func typing(ev js.Value) bool {
	tag := strings.ToLower(ev.Get("target").Get("tagName").String())
	return tag == "input" || tag == "textarea" || tag == "select"
}

// readSettings collects the request knobs present on the page.
func readSettings() app.Settings {
	s := app.DefaultSettings()
	s.Prompt = strings.TrimSpace(value(byID("prompt")))
	if m := value(byID("kv-mode")); m != "" {
		s.Mode = m
	}
	if m := value(byID("compare-with")); m != "" {
		s.Baseline = m
	}
	s.Threshold = min(max(floatValue(byID("threshold"), s.Threshold), 0), 1)
	s.Temperature = max(floatValue(byID("temperature"), s.Temperature), 0)
	s.MaxTokens = max(intValue(byID("max-tokens"), s.MaxTokens), 1)
	s.Seed = int64(intValue(byID("seed"), int(s.Seed)))
	s.TopK = min(max(intValue(byID("top-k"), s.TopK), 0), shared.MaxTopKAlternatives)
	return s
}

// writeSettings pre-fills the form, e.g. from a shared link.
func writeSettings(s app.Settings) {
	setValue(byID("prompt"), s.Prompt)
	setValue(byID("kv-mode"), s.Mode)
	setValue(byID("compare-with"), s.Baseline)
	setValue(byID("threshold"), strconv.FormatFloat(s.Threshold, 'g', -1, 64))
	setValue(byID("temperature"), strconv.FormatFloat(s.Temperature, 'g', -1, 64))
	setValue(byID("max-tokens"), strconv.Itoa(s.MaxTokens))
	setValue(byID("seed"), strconv.FormatInt(s.Seed, 10))
	setValue(byID("top-k"), strconv.Itoa(s.TopK))
}

// progress shows prefill progress until the first token arrives.
func showProgress(r *app.Run) {
	wrap, bar := byID("prefill-wrap"), byID("prefill")
	active := r != nil && !r.Finished() && r.Total > 0 && len(r.Primary().Tokens) == 0
	setHidden(wrap, !active)
	if active && exists(bar) {
		bar.Set("max", r.Total)
		bar.Set("value", r.Processed)
	}
}

// errorText describes how a run failed, or "".
func errorText(r *app.Run) string {
	if r.Err != nil {
		return "Error (" + r.Err.Code + "): " + r.Err.Message
	}
	return ""
}
