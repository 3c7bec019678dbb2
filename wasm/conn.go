//go:build js && wasm

package main

import (
	"syscall/js"
	"time"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/app"
)

// conn is the page's one WebSocket to /v1/ws, through the browser's own
// WebSocket object. It reconnects with backoff; frames are decoded with
// the shared types and handed to the page.
type conn struct {
	ws   js.Value
	open bool
	// pending holds received messages not yet decoded: the socket callback
	// only copies bytes, and the render loop decodes within a time budget,
	// so a server streaming faster than the page can draw (a tiny model
	// makes hundreds of tokens per second) cannot starve rendering.
	pending  [][]byte
	head     int
	backoff  app.Backoff
	lastSeen time.Time
	handlers js.Func
	onFrame  func(shared.Frame)
	onState  func(text string, ok bool)
	onLost   func()
}

// Close code 1008 is what the server uses for slow consumers and oversized
// messages; show its reason instead of a generic "disconnected".
const closePolicyViolation = 1008

func newConn(onFrame func(shared.Frame), onState func(string, bool), onLost func()) *conn {
	c := &conn{
		backoff: app.Backoff{Base: 500 * time.Millisecond, Max: 15 * time.Second, Rand: func() float64 { return global.Get("Math").Call("random").Float() }},
		onFrame: onFrame, onState: onState, onLost: onLost,
	}
	// One handler for every event of every socket: stale sockets (replaced
	// after a reconnect) are recognised by identity and ignored.
	c.handlers = js.FuncOf(func(this js.Value, args []js.Value) any {
		ev := args[0]
		if !ev.Get("target").Equal(c.ws) {
			return nil
		}
		switch ev.Get("type").String() {
		case "open":
			c.open = true
			c.lastSeen = time.Now()
			c.backoff.Reset()
			c.onState("Connected", true)
		case "message":
			c.lastSeen = time.Now()
			c.message(ev.Get("data"))
		case "close":
			c.closed(ev.Get("code").Int(), ev.Get("reason").String())
		}
		return nil
	})
	every(15000, c.keepalive)
	return c
}

func (c *conn) url() string {
	loc := global.Get("location")
	scheme := "ws:"
	if loc.Get("protocol").String() == "https:" {
		scheme = "wss:"
	}
	return scheme + "//" + loc.Get("host").String() + "/v1/ws"
}

func (c *conn) connect() {
	c.onState("Connecting…", false)
	ws := global.Get("WebSocket").New(c.url(), shared.Protocol)
	ws.Set("binaryType", "arraybuffer")
	for _, ev := range []string{"open", "message", "close"} {
		ws.Call("addEventListener", ev, c.handlers)
	}
	c.ws = ws
}

func (c *conn) message(data js.Value) {
	if !data.InstanceOf(global.Get("ArrayBuffer")) {
		global.Get("console").Call("warn", "fastgen: ignoring a text message; the protocol is binary msgpack")
		return
	}
	c.pending = append(c.pending, bytesFromJS(data))
	// A hidden tab gets no animation frames; keep its state current
	// instead of letting the queue grow until the tab is shown again.
	if document.Get("hidden").Bool() {
		c.drain(-1)
	}
}

// drain decodes and dispatches queued messages in order until the queue is
// empty or budgetMS milliseconds have passed (budgetMS < 0: no limit).
func (c *conn) drain(budgetMS float64) {
	perf := global.Get("performance")
	start := perf.Call("now").Float()
	for c.head < len(c.pending) {
		b := c.pending[c.head]
		c.pending[c.head] = nil
		c.head++
		c.dispatch(b)
		if budgetMS >= 0 && perf.Call("now").Float()-start > budgetMS {
			break
		}
	}
	if c.head == len(c.pending) {
		c.pending, c.head = c.pending[:0], 0
	}
}

func (c *conn) dispatch(b []byte) {
	f, err := shared.Decode(b)
	if err != nil {
		global.Get("console").Call("warn", "fastgen: bad frame:", err.Error())
		return
	}
	if h, ok := f.(*shared.Hello); ok && h.Protocol != shared.Protocol {
		c.onState("Server speaks "+h.Protocol+", this page "+shared.Protocol+": reload the page", false)
	}
	c.onFrame(f)
}

func (c *conn) closed(code int, reason string) {
	// Frames that arrived before the close still count (a final done).
	c.drain(-1)
	wasOpen := c.open
	c.open = false
	delay := c.backoff.Next()
	msg := "Disconnected"
	if code == closePolicyViolation && reason != "" {
		msg = "Server closed the connection: " + reason
	}
	c.onState(msg+"; retrying in "+delay.Round(100*time.Millisecond).String(), false)
	if wasOpen {
		c.onLost()
	}
	after(int(delay/time.Millisecond), c.connect)
}

// keepalive pings an idle connection and drops one that stopped answering,
// which a half-open TCP connection (laptop sleep, Wi-Fi change) never does
// by itself.
func (c *conn) keepalive() {
	if !c.open {
		return
	}
	if time.Since(c.lastSeen) > 45*time.Second {
		c.ws.Call("close")
		return
	}
	c.send(&shared.Ping{})
}

// send reports false when there is no open connection to send on.
func (c *conn) send(f shared.Frame) bool {
	if !c.open {
		return false
	}
	b, err := shared.Encode(f)
	if err != nil {
		global.Get("console").Call("error", "fastgen: encode:", err.Error())
		return false
	}
	c.ws.Call("send", bytesToJS(b))
	return true
}
