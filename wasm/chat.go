//go:build js && wasm

package main

import (
	"html"
	"strconv"
	"strings"
	"syscall/js"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/app"
)

// chatPage is the multi-turn chat: a streamed transcript with per-answer
// measurements, stop, regenerate and copy.
type chatPage struct {
	c                 *client
	chat              app.Chat
	transcript        js.Value
	prompt            js.Value
	send, stop, regen js.Value
	// structural: the list of turns changed and must be rebuilt; live: only
	// the last answer changed.
	structural, live bool
}

func newChatPage(c *client) *chatPage {
	p := &chatPage{
		c: c, transcript: byID("transcript"), prompt: byID("prompt"),
		send: byID("send"), stop: byID("stop"), regen: byID("regenerate"),
	}
	on(byID("chat-form"), "submit", func(ev js.Value) {
		ev.Call("preventDefault")
		p.ask()
	})
	on(p.prompt, "keydown", func(ev js.Value) {
		if ev.Get("key").String() == "Enter" && !ev.Get("shiftKey").Bool() && !ev.Get("isComposing").Bool() {
			ev.Call("preventDefault")
			p.ask()
		}
	})
	on(p.stop, "click", func(js.Value) { p.cancel() })
	on(p.regen, "click", func(js.Value) { p.regenerate() })
	on(byID("clear"), "click", func(js.Value) {
		p.cancel()
		p.chat.Turns = nil
		p.structural = true
	})
	on(p.transcript, "click", func(ev js.Value) {
		i, btn, ok := dataInt(ev.Get("target"), "copy")
		if !ok || i < 0 || i >= len(p.chat.Turns) {
			return
		}
		copyText(p.turnText(i), func(ok bool) {
			if ok {
				setText(btn, "Copied")
				after(1500, func() { setText(btn, "Copy") })
			} else {
				setText(btn, "Copy failed")
			}
		})
	})
	p.structural = true
	return p
}

func (p *chatPage) running() *app.Run {
	if r := p.chat.Current(); r != nil && !r.Finished() {
		return r
	}
	return nil
}

func (p *chatPage) ask() {
	text := strings.TrimSpace(value(p.prompt))
	if text == "" || p.running() != nil {
		return
	}
	p.chat.Turns = append(p.chat.Turns, app.Turn{Role: shared.RoleUser, Content: text})
	if p.start() {
		setValue(p.prompt, "")
	} else {
		p.chat.Turns = p.chat.Turns[:len(p.chat.Turns)-1]
	}
}

// start sends the conversation so far and attaches the answer's run.
func (p *chatPage) start() bool {
	s := readSettings()
	req := s.Request(p.c.ids.Next(), false)
	req.Prompt = ""
	req.Messages = p.chat.History()
	req.TopKAlternatives = 0
	if !p.c.send(&req) {
		return false
	}
	p.chat.Answer(app.NewRun(req, p.c.model))
	p.structural = true
	return true
}

func (p *chatPage) regenerate() {
	if p.running() != nil || !p.chat.DropLastAnswer() {
		return
	}
	if !p.start() {
		p.structural = true
	}
}

func (p *chatPage) cancel() {
	if r := p.running(); r != nil {
		p.c.send(&shared.Cancel{ID: r.ID})
	}
}

func (p *chatPage) hello(*shared.Hello) {}

func (p *chatPage) frame(f shared.Frame) {
	r := p.chat.Current()
	if r == nil || r.ID != app.FrameID(f) {
		return // a stale or cancelled request
	}
	if r.Apply(f) {
		p.live = true
		if r.Finished() {
			p.structural = true // buttons and the streaming marker change
		}
	}
}

func (p *chatPage) lost() {
	if r := p.running(); r != nil {
		r.Apply(&shared.Error{ID: r.ID, Code: shared.CodeInternal, Message: "connection lost"})
		p.structural = true
	}
}

func (p *chatPage) turnText(i int) string {
	t := p.chat.Turns[i]
	if t.Run != nil {
		return t.Run.Primary().Text()
	}
	return t.Content
}

func (p *chatPage) render() {
	if !p.structural && !p.live {
		return
	}
	run := p.running()
	setDisabled(p.stop, run == nil)
	setDisabled(p.send, run != nil)
	last := p.chat.Current()
	setDisabled(p.regen, run != nil || last == nil)
	setBusy(run != nil, p.transcript)
	showProgress(run)
	if p.structural {
		var b strings.Builder
		if len(p.chat.Turns) == 0 {
			b.WriteString(`<li class="empty">No messages yet. Ask something below; each answer shows its time to first token, speed and how much KV cache FastGen saved.</li>`)
		}
		for i := range p.chat.Turns {
			b.WriteString(p.turnHTML(i))
		}
		setHTML(p.transcript, b.String())
	} else if n := len(p.chat.Turns); n > 0 && exists(p.transcript) {
		// Streaming: replace only the last answer, keeping the rest of the
		// transcript (and any text selection in it) untouched.
		if li := p.transcript.Get("lastElementChild"); exists(li) {
			li.Set("outerHTML", p.turnHTML(n-1))
		}
	}
	p.structural, p.live = false, false
}

func (p *chatPage) turnHTML(i int) string {
	t := p.chat.Turns[i]
	idx := strconv.Itoa(i)
	if t.Run == nil {
		return `<li class="user"><div class="role">You</div><div class="content">` + app.Markdown(t.Content) + `</div></li>`
	}
	s := t.Run.Primary()
	cls := "assistant"
	if !t.Run.Finished() {
		cls += " streaming"
	}
	var b strings.Builder
	b.WriteString(`<li class="` + cls + `" data-i="` + idx + `"><div class="role">` + html.EscapeString(s.Name) + `</div><div class="content">`)
	b.WriteString(app.Markdown(s.Text()))
	b.WriteString(`</div><div class="meta">`)
	if e := errorText(t.Run); e != "" {
		b.WriteString(`<span class="error">` + html.EscapeString(e) + `</span>`)
	}
	if !t.Run.Finished() && len(s.Tokens) == 0 && t.Run.Total > 0 {
		b.WriteString(`<span>Reading prompt ` + strconv.Itoa(t.Run.Processed) + ` / ` + strconv.Itoa(t.Run.Total) + `</span>`)
	}
	b.WriteString(`<span class="m-stats">` + html.EscapeString(app.Measure(s).String()) + `</span>`)
	if s.Finish != "" && s.Finish != shared.FinishStop {
		b.WriteString(`<span>(` + html.EscapeString(s.Finish) + `)</span>`)
	}
	b.WriteString(`<button type="button" class="copy" data-copy="` + idx + `">Copy</button></div></li>`)
	return b.String()
}
