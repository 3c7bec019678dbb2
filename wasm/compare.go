//go:build js && wasm

package main

import (
	"math"
	"strconv"
	"strings"
	"syscall/js"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/app"
	"github.com/fastgen/fastgen/wasm/draw"
)

// comparePage runs one prompt with two caches on the same seed and shows
// them side by side: token diff, first divergence, agreement/KL and memory
// charts, and top-k alternatives on hover.
type comparePage struct {
	c                *client
	run              *app.Run
	colA, colB       js.Value
	send, stop       js.Value
	tip              js.Value
	agree, mem       *surface
	dirty            bool
	vocab            int
	shareLink        js.Value
	agreeTbl, memTbl js.Value
	view             compareView
}

func newComparePage(c *client) *comparePage {
	p := &comparePage{
		c: c, colA: byID("output-fastgen"), colB: byID("output-full"),
		send: byID("send"), stop: byID("stop"), tip: byID("alternatives"),
		agree: c.surface("chart-agreement"), mem: c.surface("chart-memory"),
		shareLink: byID("share-link"),
		agreeTbl:  byID("agreement-table").Call("querySelector", "tbody"),
		memTbl:    byID("memory-table").Call("querySelector", "tbody"),
	}
	// A shared link pre-fills the form; the user presses Send.
	if q := strings.TrimPrefix(global.Get("location").Get("search").String(), "?"); q != "" {
		writeSettings(app.ParseSettings(q))
	}
	p.updateShare()
	on(byID("compare-form"), "submit", func(ev js.Value) {
		ev.Call("preventDefault")
		p.start()
	})
	on(byID("prompt"), "keydown", func(ev js.Value) {
		if ev.Get("key").String() == "Enter" && (ev.Get("ctrlKey").Bool() || ev.Get("metaKey").Bool()) {
			ev.Call("preventDefault")
			p.start()
		}
	})
	on(p.stop, "click", func(js.Value) {
		if p.run != nil && !p.run.Finished() {
			c.send(&shared.Cancel{ID: p.run.ID})
		}
	})
	on(byID("copy-link"), "click", func(js.Value) {
		p.updateShare()
		copyText(p.shareLink.Get("href").String(), func(ok bool) {
			if !ok {
				c.status("Copy the link from the “Link to this comparison” anchor", true)
			}
		})
	})
	for _, col := range []js.Value{p.colA, p.colB} {
		on(col, "mouseover", p.hover)
		on(col, "focusin", p.hover)
		on(col, "mouseleave", func(js.Value) { p.hideTip() })
		on(col, "focusout", func(js.Value) { p.hideTip() })
	}
	on(document, "keydown", func(ev js.Value) {
		if ev.Get("key").String() == "Escape" {
			p.hideTip()
		}
	})
	// Scroll the columns together so the same step stays side by side.
	syncing := false
	sync := func(from, to js.Value) func(js.Value) {
		return func(js.Value) {
			if syncing {
				return
			}
			syncing = true
			to.Set("scrollTop", from.Get("scrollTop"))
			syncing = false
		}
	}
	on(p.colA, "scroll", sync(p.colA, p.colB))
	on(p.colB, "scroll", sync(p.colB, p.colA))
	p.dirty = true
	return p
}

// updateShare writes the current settings into the link and the address
// bar, so the page can be bookmarked or shared at any moment.
func (p *comparePage) updateShare() {
	q := readSettings().Query()
	href := global.Get("location").Get("pathname").String() + "?" + q
	if exists(p.shareLink) {
		p.shareLink.Set("href", href)
	}
	global.Get("history").Call("replaceState", nil, "", href)
}

func (p *comparePage) start() {
	s := readSettings()
	if s.Prompt == "" || (p.run != nil && !p.run.Finished()) {
		return
	}
	if s.Mode == s.Baseline {
		p.c.status("Pick a baseline different from the cache mode", false)
		return
	}
	req := s.Request(p.c.ids.Next(), true)
	if !p.c.send(&req) {
		return
	}
	p.run = app.NewRun(req, p.c.model)
	p.updateShare()
	p.hideTip()
	p.dirty = true
}

func (p *comparePage) hello(h *shared.Hello) { p.vocab = h.Model.VocabSize }

func (p *comparePage) frame(f shared.Frame) {
	if p.run != nil && p.run.ID == app.FrameID(f) && p.run.Apply(f) {
		p.dirty = true
	}
}

func (p *comparePage) lost() {
	if p.run != nil && !p.run.Finished() {
		p.run.Apply(&shared.Error{ID: p.run.ID, Code: shared.CodeInternal, Message: "connection lost"})
		p.dirty = true
	}
}

func (p *comparePage) stream(col string) *app.Stream {
	if p.run == nil {
		return nil
	}
	if col == "b" {
		return p.run.Baseline()
	}
	return p.run.Primary()
}

func (p *comparePage) hover(ev js.Value) {
	i, el, ok := dataInt(ev.Get("target"), "i")
	if !ok {
		return
	}
	col := el.Get("dataset").Get("col").String()
	s := p.stream(col)
	if s == nil || i < 0 || i >= len(s.Tokens) {
		return
	}
	setHTML(p.tip, app.AlternativesHTML(s.Tokens[i]))
	r := el.Call("getBoundingClientRect")
	scroll := global.Get("scrollY").Float()
	st := p.tip.Get("style")
	st.Set("left", strconv.Itoa(int(r.Get("left").Float()))+"px")
	st.Set("top", strconv.Itoa(int(r.Get("bottom").Float()+scroll+6))+"px")
	setHidden(p.tip, false)
	el.Call("setAttribute", "aria-describedby", "alternatives")
	// Mark the same step in the other column.
	other := p.colB
	if col == "b" {
		other = p.colA
	}
	p.clearPeer()
	if peer := other.Call("querySelector", `.tok[data-i="`+strconv.Itoa(i)+`"]`); exists(peer) {
		peer.Get("classList").Call("add", "peer")
	}
}

func (p *comparePage) clearPeer() {
	for _, col := range []js.Value{p.colA, p.colB} {
		if exists(col) {
			if el := col.Call("querySelector", ".tok.peer"); exists(el) {
				el.Get("classList").Call("remove", "peer")
			}
		}
	}
}

func (p *comparePage) hideTip() {
	setHidden(p.tip, true)
	p.clearPeer()
}

func (p *comparePage) render() {
	if !p.dirty {
		return
	}
	p.dirty = false
	r := p.run
	running := r != nil && !r.Finished()
	setDisabled(p.stop, !running)
	setDisabled(p.send, running)
	setBusy(running, p.colA, p.colB)
	showProgress(r)
	if r == nil {
		p.drawCharts(nil, nil, nil, -1)
		return
	}
	a, b := r.Primary(), r.Baseline()
	setText(byID("title-a"), a.Name)
	setText(byID("th-a"), a.Name)
	if b == nil {
		b = &app.Stream{}
	}
	setText(byID("title-b"), b.Name)
	setText(byID("th-b"), b.Name)

	div := app.Divergence(a.Tokens, b.Tokens)
	p.renderColumns(r, a, b, div)
	setText(byID("stats-a"), statsLine(a))
	setText(byID("stats-b"), statsLine(b))

	n := min(len(a.Tokens), len(b.Tokens))
	msg := ""
	switch {
	case errorText(r) != "":
		msg = errorText(r)
	case div >= 0:
		msg = "First divergence at token " + strconv.Itoa(div) + ": " + app.QuoteText(a.Tokens[div].Text) +
			" (" + a.Name + ") vs " + app.QuoteText(b.Tokens[div].Text) + " (" + b.Name + ")."
	case n > 0:
		msg = "Identical for all " + strconv.Itoa(n) + " tokens so far."
	default:
		msg = "Waiting for the first tokens…"
	}
	setText(byID("divergence"), msg)

	agree := app.Agreement(a.Tokens, b.Tokens)
	kl, exact := app.KLSeries(a.Tokens, b.Tokens, p.vocab)
	p.drawCharts(agree, kl, a, div)

	// Table rows are final once written (both tokens of a step are known),
	// so only new rows are appended.
	v := &p.view
	var rows strings.Builder
	for i := v.agreeRows; i < n; i++ {
		k := app.Num(kl[i], 4)
		if !exact && !math.IsNaN(kl[i]) && a.Tokens[i].KL == nil {
			k += " (top-k estimate)"
		}
		rows.WriteString(app.TR(strconv.Itoa(i), a.Tokens[i].Text, b.Tokens[i].Text, app.Pct(agree[i]), k))
	}
	appendHTML(p.agreeTbl, rows.String())
	v.agreeRows = n
	rows.Reset()
	for i := v.memRows; i < len(a.Mem); i++ {
		m := a.Mem[i]
		saved := 0.0
		if m.KVBytesFull > 0 {
			saved = 1 - float64(m.KVBytes)/float64(m.KVBytesFull)
		}
		rows.WriteString(app.TR(strconv.Itoa(i), app.Bytes(m.KVBytes), app.Bytes(m.KVBytesFull), app.Pct(saved)))
	}
	appendHTML(p.memTbl, rows.String())
	v.memRows = len(a.Mem)
}

// compareView is what the DOM already shows of the current run. Rebuilding
// both columns and tables on every frame costs O(tokens) per frame, which a
// fast model turns into seconds of jank; streaming appends instead.
type compareView struct {
	run                *app.Run
	spansA, spansB     int // token spans in each column
	paired             int // steps whose same/differ mark is set
	div                int // first divergence marked, -1 none yet
	agreeRows, memRows int
	final              bool // the finished run got its LCS diff
}

// renderColumns streams tokens into the columns with a positional diff
// (final for a step as soon as both tokens exist), then, once the run is
// over, redraws both with the LCS diff, which can re-align the text after a
// divergence but may change earlier marks, so it is not used mid-stream.
func (p *comparePage) renderColumns(r *app.Run, a, b *app.Stream, div int) {
	v := &p.view
	if v.run != r {
		*v = compareView{run: r, div: -1}
		for _, el := range []js.Value{p.colA, p.colB, p.agreeTbl, p.memTbl} {
			setHTML(el, "")
		}
	}
	if v.final {
		return
	}
	if r.Finished() {
		da, db := app.TokenDiff(a.Tokens, b.Tokens)
		setHTML(p.colA, app.TokenHTML(a.Tokens, 0, da, div, "a"))
		setHTML(p.colB, app.TokenHTML(b.Tokens, 0, db, div, "b"))
		v.final = true
		return
	}
	appendHTML(p.colA, app.TokenHTML(a.Tokens[v.spansA:], v.spansA, nil, -1, "a"))
	appendHTML(p.colB, app.TokenHTML(b.Tokens[v.spansB:], v.spansB, nil, -1, "b"))
	v.spansA, v.spansB = len(a.Tokens), len(b.Tokens)
	n := min(len(a.Tokens), len(b.Tokens))
	for i := v.paired; i < n; i++ {
		if a.Tokens[i].Token != b.Tokens[i].Token {
			markSpan(p.colA, i, "diff")
			markSpan(p.colB, i, "diff")
		}
	}
	v.paired = n
	if v.div < 0 && div >= 0 {
		markSpan(p.colA, div, "first-div")
		markSpan(p.colB, div, "first-div")
		v.div = div
	}
}

func appendHTML(el js.Value, html string) {
	if html != "" && exists(el) {
		el.Call("insertAdjacentHTML", "beforeend", html)
	}
}

// markSpan adds a class to the i-th token span of a column.
func markSpan(col js.Value, i int, class string) {
	if !exists(col) {
		return
	}
	if el := col.Get("children").Call("item", i); exists(el) {
		el.Get("classList").Call("add", class)
	}
}

func (p *comparePage) drawCharts(agree, kl []float64, a *app.Stream, div int) {
	if s := p.agree; s != nil {
		area := s.cv.Rect.Inset(4)
		s.cv.Clear(draw.White)
		klMax := 0.0
		for _, v := range kl {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				klMax = max(klMax, v)
			}
		}
		// KL shares the plot on its own scale: its shape matters, the table
		// has the values.
		klScaled := make([]float64, len(kl))
		for i, v := range kl {
			klScaled[i] = v / max(klMax, 1e-9)
		}
		draw.Chart(s.cv, area, len(agree), 0, 1,
			draw.Series{Values: klScaled, Color: draw.KLColor},
			draw.Series{Values: agree, Color: draw.StreamFastGen})
		if div >= 0 {
			draw.MarkX(s.cv, area, div, len(agree), draw.Black)
		}
		s.dirty = true
	}
	if s := p.mem; s != nil {
		area := s.cv.Rect.Inset(4)
		s.cv.Clear(draw.White)
		var kv, full []float64
		if a != nil {
			kv, full = app.MemSeries(a)
		}
		hi := 0.0
		for _, v := range full {
			hi = max(hi, v)
		}
		draw.Chart(s.cv, area, len(full), 0, hi,
			draw.Series{Values: full, Color: draw.StreamBaseline},
			draw.Series{Values: kv, Color: draw.StreamFastGen})
		s.dirty = true
	}
}

// statsLine summarises one stream's final numbers under its column.
func statsLine(s *app.Stream) string {
	if s == nil || s.Name == "" {
		return ""
	}
	line := app.Measure(s).String()
	if st := s.Stats; st != nil {
		line += " · pruned " + app.Pct(st.PrunedRatio) + " · attention loss " + app.Num(st.AttnLoss, 4)
		if st.Agreement != nil {
			line += " · agreement " + app.Pct(*st.Agreement)
		}
		if st.KL != nil {
			line += " · KL " + app.Num(*st.KL, 4)
		}
	}
	if s.Finish != "" {
		line += " · " + s.Finish
	}
	return line
}
