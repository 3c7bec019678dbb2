//go:build js && wasm

package main

import (
	"strconv"
	"strings"
	"syscall/js"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/app"
	"github.com/fastgen/fastgen/wasm/draw"
)

// classroomPage shows how FastGen decides, for students: the policy of
// every (layer, KV head) (the paper's Fig. 3), where each head's attention
// lands (Fig. 4), and for one head which cache entries survive each decode
// step, with step-by-step playback and a threshold slider that re-runs the
// same prompt and outlines heads that switched policy.
type classroomPage struct {
	c   *client
	run *app.Run
	// lastPrompt is what the T slider re-runs.
	lastPrompt string
	prev, cur  []int // policy index per head: previous and current profile
	changed    []bool
	selected   int
	player     *app.Player

	grid, mass, strip *surface
	gridLayout        draw.Grid
	stripLayout       *draw.StripLayout
	stripDrawn        int
	stripHead         int
	stripRun          *app.Run

	send, stop, slider, scrub js.Value
	debounce                  int

	gridDirty, massDirty, tableDirty, stripReset bool
}

func newClassroomPage(c *client) *classroomPage {
	p := &classroomPage{
		c: c, player: app.NewPlayer(), stripHead: -1,
		grid: c.surface("policy-grid"), mass: c.surface("category-mass"), strip: c.surface("token-strip"),
		send: byID("send"), stop: byID("stop"), slider: byID("threshold"), scrub: byID("scrub"),
	}
	on(byID("classroom-form"), "submit", func(ev js.Value) {
		ev.Call("preventDefault")
		if s := strings.TrimSpace(value(byID("prompt"))); s != "" {
			p.start(s)
		}
	})
	on(p.stop, "click", func(js.Value) { p.cancel() })
	on(p.slider, "input", func(js.Value) {
		setText(byID("threshold-value"), app.Num(floatValue(p.slider, shared.DefaultThreshold), 3))
		// Re-run once the slider rests, not on every pixel of a drag.
		if p.debounce != 0 {
			cancelTimer(p.debounce)
		}
		p.debounce = after(350, func() {
			p.debounce = 0
			if p.lastPrompt != "" {
				p.start(p.lastPrompt)
			}
		})
	})
	if g := p.grid; g != nil {
		on(g.el, "click", func(ev js.Value) {
			if r, col, ok := p.gridLayout.Hit(g.point(ev)); ok {
				p.selectHead(r, col)
			}
		})
		on(g.el, "keydown", func(ev js.Value) {
			layers, kv := p.shape()
			if kv == 0 {
				return
			}
			l, h := p.selected/kv, p.selected%kv
			switch ev.Get("key").String() {
			case "ArrowUp":
				l--
			case "ArrowDown":
				l++
			case "ArrowLeft":
				h--
			case "ArrowRight":
				h++
			default:
				return
			}
			ev.Call("preventDefault")
			p.selectHead(min(max(l, 0), layers-1), min(max(h, 0), kv-1))
		})
	}
	pick := func(js.Value) {
		p.selectHead(intValue(byID("sel-layer"), 0), intValue(byID("sel-head"), 0))
	}
	on(byID("sel-layer"), "change", pick)
	on(byID("sel-head"), "change", pick)
	on(byID("pause"), "click", func(js.Value) { p.player.Pause(); p.tableDirty = true })
	on(byID("step"), "click", func(js.Value) { p.player.Step(); p.tableDirty = true })
	on(byID("back"), "click", func(js.Value) { p.player.Back(); p.tableDirty = true })
	on(byID("play"), "click", func(js.Value) { p.player.Play(); p.tableDirty = true })
	on(p.scrub, "input", func(js.Value) { p.player.Seek(intValue(p.scrub, 0)); p.tableDirty = true })
	if s := p.strip; s != nil {
		on(s.el, "keydown", func(ev js.Value) {
			switch ev.Get("key").String() {
			case "ArrowRight":
				p.player.Step()
			case "ArrowLeft":
				p.player.Back()
			case "Home":
				p.player.Seek(0)
			case "End":
				p.player.Play()
			case " ":
				if p.player.Live() {
					p.player.Pause()
				} else {
					p.player.Play()
				}
			default:
				return
			}
			ev.Call("preventDefault")
			p.tableDirty = true
		})
		on(s.el, "mousemove", func(ev js.Value) { p.describeCell(s.point(ev).X, s.point(ev).Y) })
		on(s.el, "mouseleave", func(js.Value) { setText(byID("strip-hover"), "") })
	}
	p.gridDirty, p.massDirty, p.tableDirty = true, true, true
	return p
}

func (p *classroomPage) shape() (layers, kvHeads int) {
	if p.run != nil {
		if l, k := p.run.Shape(); l*k > 0 {
			return l, k
		}
	}
	return p.c.model.NLayers, p.c.model.NKVHeads
}

func (p *classroomPage) cancel() {
	if p.run != nil && !p.run.Finished() {
		p.c.send(&shared.Cancel{ID: p.run.ID})
	}
}

// start runs prompt greedily with FastGen at the slider's T, so two runs
// differ only by T and policy changes are T's doing.
func (p *classroomPage) start(prompt string) {
	s := app.DefaultSettings()
	s.Prompt = prompt
	s.Threshold = min(max(floatValue(p.slider, shared.DefaultThreshold), 0), 1)
	s.MaxTokens = max(intValue(byID("max-tokens"), 48), 1)
	s.TopK = 0
	req := s.Request(p.c.ids.Next(), false)
	p.cancel()
	if !p.c.send(&req) {
		return
	}
	if prompt == p.lastPrompt && p.cur != nil {
		p.prev = p.cur
	} else {
		p.prev = nil
	}
	p.lastPrompt = prompt
	p.run = app.NewRun(req, p.c.model)
	p.cur, p.changed = nil, nil
	p.player.Reset()
	p.player.Play()
	p.stripReset = true
	p.gridDirty, p.massDirty, p.tableDirty = true, true, true
	setText(byID("run-status"), "Profiling at T = "+app.Num(s.Threshold, 3)+"…")
}

func (p *classroomPage) selectHead(layer, head int) {
	layers, kv := p.shape()
	if layer < 0 || head < 0 || layer >= max(layers, 1) || head >= max(kv, 1) {
		return
	}
	p.selected = layer*kv + head
	setValue(byID("sel-layer"), strconv.Itoa(layer))
	setValue(byID("sel-head"), strconv.Itoa(head))
	setText(byID("sel-label"), "layer "+strconv.Itoa(layer)+", KV head "+strconv.Itoa(head))
	p.gridDirty, p.massDirty, p.tableDirty, p.stripReset = true, true, true, true
}

func (p *classroomPage) hello(h *shared.Hello) {
	p.gridDirty, p.massDirty, p.tableDirty = true, true, true
	setAttr(byID("sel-layer"), "max", strconv.Itoa(h.Model.NLayers-1))
	setAttr(byID("sel-head"), "max", strconv.Itoa(h.Model.NKVHeads-1))
}

func setAttr(el js.Value, k, v string) {
	if exists(el) {
		el.Call("setAttribute", k, v)
	}
}

func (p *classroomPage) frame(f shared.Frame) {
	r := p.run
	if r == nil || r.ID != app.FrameID(f) || !r.Apply(f) {
		return
	}
	switch f := f.(type) {
	case *shared.Profile:
		layers, kv := r.Shape()
		p.cur = app.PolicyIndexes(f, layers, kv)
		if p.prev != nil {
			p.changed = app.ChangedHeads(p.prev, p.cur)
		}
		p.selected = min(p.selected, max(layers*kv-1, 0))
		p.gridDirty, p.massDirty, p.stripReset = true, true, true
	case *shared.Occupancy:
		if h := r.Primary().History; h != nil && f.Stream == r.Primary().Name {
			p.player.Record(h.Steps())
		}
	}
	p.tableDirty = true
}

func (p *classroomPage) lost() {
	if p.run != nil && !p.run.Finished() {
		p.run.Apply(&shared.Error{ID: p.run.ID, Code: shared.CodeInternal, Message: "connection lost"})
		p.tableDirty = true
	}
}

func (p *classroomPage) render() {
	r := p.run
	running := r != nil && !r.Finished()
	setDisabled(p.stop, !running)
	showProgress(r)
	layers, kv := p.shape()
	if p.gridDirty {
		p.drawGrid(layers, kv)
	}
	if p.massDirty {
		p.drawMass(layers, kv)
	}
	p.drawStrip()
	if p.tableDirty {
		p.updateStatus()
		p.updateStripTable()
		shown, rec := p.player.Shown(), p.player.Recorded()
		if exists(p.scrub) {
			p.scrub.Set("max", rec)
			p.scrub.Set("value", shown)
		}
		live := ""
		if !p.player.Live() {
			live = " (paused)"
		}
		setText(byID("scrub-value"), "step "+strconv.Itoa(shown)+" / "+strconv.Itoa(rec)+live)
		p.tableDirty = false
	}
}

func (p *classroomPage) drawGrid(layers, kv int) {
	p.gridDirty = false
	var profile *shared.Profile
	if p.run != nil {
		profile = p.run.Profile
	}
	policy := app.PolicyIndexes(profile, layers, kv)
	if g := p.grid; g != nil {
		g.cv.Clear(draw.White)
		p.gridLayout = draw.NewGrid(g.cv.Rect.Inset(4), layers, kv)
		draw.PolicyGrid(g.cv, p.gridLayout, policy, p.changed, p.selected)
		g.dirty = true
	}
	counts := app.PolicyCounts(policy)
	for i, name := range shared.Policies {
		setText(document.Call("querySelector", `#policy-legend .count[data-policy="`+name+`"]`), strconv.Itoa(counts[i]))
	}
	// Text alternative: one row per layer, one cell per head.
	tbl := byID("policy-table")
	if !exists(tbl) {
		return
	}
	var head strings.Builder
	head.WriteString(`<tr><th scope="col">Layer</th>`)
	for h := range kv {
		head.WriteString(`<th scope="col">KV ` + strconv.Itoa(h) + `</th>`)
	}
	head.WriteString(`</tr>`)
	setHTML(tbl.Call("querySelector", "thead"), head.String())
	var rows strings.Builder
	if profile != nil {
		for l := range layers {
			rows.WriteString(`<tr><th scope="row">` + strconv.Itoa(l) + `</th>`)
			for h := range kv {
				i := l*kv + h
				cls := ""
				if i < len(p.changed) && p.changed[i] {
					cls = ` class="changed"`
				}
				name := "not profiled"
				if policy[i] >= 0 {
					name = shared.Policies[policy[i]]
				}
				rows.WriteString(`<td` + cls + ` title="` + name + `">` + app.PolicyShort(policy[i]) + `</td>`)
			}
			rows.WriteString(`</tr>`)
		}
	}
	setHTML(tbl.Call("querySelector", "tbody"), rows.String())
}

func (p *classroomPage) drawMass(layers, kv int) {
	p.massDirty = false
	var profile *shared.Profile
	if p.run != nil {
		profile = p.run.Profile
	}
	mass := app.Masses(profile, layers, kv)
	if m := p.mass; m != nil {
		m.cv.Clear(draw.White)
		draw.MassBars(m.cv, m.cv.Rect.Inset(2), mass, kv, p.selected)
		m.dirty = true
	}
	var rows strings.Builder
	if profile != nil {
		for l, m := range app.LayerMass(mass, kv) {
			rows.WriteString(app.TR("layer "+strconv.Itoa(l)+" (mean)", app.Pct(m.Special), app.Pct(m.Punct), app.Pct(m.Local), app.Pct(m.Other)))
		}
		if p.selected < len(mass) && kv > 0 {
			m := mass[p.selected]
			rows.WriteString(app.TR("selected: layer "+strconv.Itoa(p.selected/kv)+", KV head "+strconv.Itoa(p.selected%kv),
				app.Pct(m.Special), app.Pct(m.Punct), app.Pct(m.Local), app.Pct(m.Other)))
		}
	}
	setHTML(byID("mass-table").Call("querySelector", "tbody"), rows.String())
}

// drawStrip adds only the rows of newly shown steps; a new head, a new run
// or scrubbing backwards redraws from the top.
func (p *classroomPage) drawStrip() {
	s := p.strip
	if s == nil {
		return
	}
	r := p.run
	var h *app.History
	if r != nil {
		h = r.Primary().History
	}
	if h == nil {
		if p.stripReset {
			s.cv.Clear(draw.White)
			s.dirty = true
			p.stripReset = false
		}
		return
	}
	shown := min(p.player.Shown(), h.Steps())
	steps := max(r.Req.MaxTokens, h.Steps(), 1)
	positions := r.PromptLen() + steps
	l := p.stripLayout
	if l == nil || p.stripRun != r || l.Steps < steps || l.Positions < positions {
		p.stripLayout = draw.NewStripLayout(s.cv.Rect, steps, positions)
		p.stripRun = r
		p.stripReset = true
	}
	if p.stripReset || p.stripHead != p.selected || shown < p.stripDrawn {
		s.cv.Clear(draw.White)
		p.stripDrawn = 0
		p.stripHead = p.selected
		p.stripReset = false
		s.dirty = true
	}
	if shown > p.stripDrawn {
		draw.Strip(s.cv, p.stripLayout, app.HeadStrip{H: h, Head: p.selected}, p.stripDrawn, shown)
		p.stripDrawn = shown
		s.dirty = true
	}
}

// tokenText is the piece at an absolute cache position.
func (p *classroomPage) tokenText(pos int) (string, string) {
	r := p.run
	n := r.PromptLen()
	if r.Profile != nil && pos < len(r.Profile.PromptTokens) {
		t := r.Profile.PromptTokens[pos]
		return t.Text, t.Class
	}
	toks := r.Primary().Tokens
	if i := pos - n; i >= 0 && i < len(toks) {
		return toks[i].Text, toks[i].Class
	}
	return "", ""
}

func (p *classroomPage) describeCell(x, y int) {
	l := p.stripLayout
	if l == nil || p.run == nil || p.run.Primary().History == nil {
		return
	}
	h := p.run.Primary().History
	step, pos := l.StepAt(y), l.PosAt(x)
	if step >= min(p.player.Shown(), h.Steps()) || pos >= h.Length(step) {
		setText(byID("strip-hover"), "")
		return
	}
	row := make([]draw.Cell, h.Length(step))
	app.HeadStrip{H: h, Head: p.selected}.Row(step, row)
	state := map[draw.Cell]string{draw.Evicted: "evicted", draw.Kept: "kept", draw.InWindow: "kept (in the local window)",
		draw.Punct: "kept (punctuation)", draw.Special: "kept (special token)"}[row[pos]]
	text, class := p.tokenText(pos)
	if class == "" {
		class = shared.ClassNormal
	}
	setText(byID("strip-hover"), "Step "+strconv.Itoa(step)+", position "+strconv.Itoa(pos)+" "+
		app.QuoteText(text)+" ("+class+"): "+state)
}

// stripRows bounds the step table: a 4k-step run would otherwise rebuild
// thousands of rows per token.
const stripRows = 64

func (p *classroomPage) updateStripTable() {
	var rows strings.Builder
	if r := p.run; r != nil && r.Primary().History != nil {
		h := r.Primary().History
		shown := min(p.player.Shown(), h.Steps())
		toks := r.Primary().Tokens
		for step := max(shown-stripRows, 0); step < shown; step++ {
			t := ""
			if step < len(toks) {
				t = app.QuoteText(toks[step].Text)
			}
			rows.WriteString(app.TR(strconv.Itoa(step), t, strconv.Itoa(h.KeptAt(p.selected, step)), strconv.Itoa(h.Length(step))))
		}
	}
	setHTML(byID("strip-table").Call("querySelector", "tbody"), rows.String())
}

func (p *classroomPage) updateStatus() {
	r := p.run
	if r == nil {
		return
	}
	if e := errorText(r); e != "" {
		setText(byID("run-status"), e)
		return
	}
	s := r.Primary()
	if r.Profile == nil {
		// A stop pressed while the prompt was still being encoded ends the
		// run before any profile is sent.
		if s.Finish != "" {
			setText(byID("run-status"), "Ended before the prompt was profiled ("+s.Finish+").")
		}
		return
	}
	msg := "T = " + app.Num(r.Profile.Threshold, 3) + ": profiled " + strconv.Itoa(len(r.Profile.PromptTokens)) + " prompt tokens"
	if r.Profile.ProfileMS > 0 {
		msg += " in " + app.Num(r.Profile.ProfileMS, 1) + " ms"
	}
	if p.changed != nil {
		n := 0
		for _, c := range p.changed {
			if c {
				n++
			}
		}
		msg += "; " + strconv.Itoa(n) + " heads changed policy (outlined)"
	}
	if _, ratio, ok := s.KVSaved(); ok {
		msg += "; KV cache " + app.Pct(ratio) + " smaller than full"
	}
	if s.Stats != nil {
		msg += "; pruned ratio " + app.Pct(s.Stats.PrunedRatio)
	}
	if s.Finish != "" {
		msg += " (" + s.Finish + ")"
	}
	setText(byID("run-status"), msg+".")
}
