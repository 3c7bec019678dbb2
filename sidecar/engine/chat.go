package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// Chat is a multi-turn conversation on one session: each user turn is
// prefilled (and re-profiled) on top of what earlier turns kept, so what was
// evicted stays evicted, as the spec says.
type Chat struct {
	e        *Engine
	kv       KVOptions
	sess     *Session
	msgs     []tokenizer.Message
	pending  int // the last sampled token, not yet fed to the cache (-1: none)
	Profiles int // how many times the session was profiled
}

// NewChat starts a conversation, optionally with a system message.
func (e *Engine) NewChat(kv KVOptions, system string) (*Chat, error) {
	if kv.Mode == "" {
		kv = DefaultKV()
	}
	if err := kv.Validate(); err != nil {
		return nil, &BadRequestError{err.Error()}
	}
	c := &Chat{e: e, kv: kv, pending: -1}
	if system != "" {
		c.msgs = append(c.msgs, tokenizer.Message{Role: "system", Content: system})
	}
	return c, nil
}

// Messages is the conversation so far.
func (c *Chat) Messages() []tokenizer.Message { return c.msgs }

// Session is the conversation's session (nil before the first turn).
func (c *Chat) Session() *Session { return c.sess }

// Close frees the conversation's cache.
func (c *Chat) Close() {
	if c.sess != nil {
		c.sess.Close()
	}
}

// Send adds a user message and generates the reply. req supplies the
// sampling and length settings; its prompt, messages, cache and compare
// fields are ignored.
func (c *Chat) Send(ctx context.Context, user string, req Request, sink Sink) (Result, error) {
	if sink == nil {
		sink = NopSink{}
	}
	if err := req.Sampler.Validate(); err != nil {
		return Result{}, &BadRequestError{err.Error()}
	}
	msgs := append(append([]tokenizer.Message(nil), c.msgs...), tokenizer.Message{Role: "user", Content: user})
	all, err := c.e.Tokenize(&Request{Messages: msgs})
	if err != nil {
		return Result{}, err
	}
	// Feed only what the cache has not seen. The rendered conversation
	// normally extends the history token for token; when a template
	// re-tokenizes differently, start the session again rather than feed
	// the model a sequence it never saw.
	var fresh []int
	if c.sess != nil {
		hist := c.sess.History()
		if c.pending >= 0 {
			hist = append(hist[:len(hist):len(hist)], c.pending)
		}
		if len(all) > len(hist) && equalPrefix(all, hist) {
			fresh = all[len(hist):]
			if c.pending >= 0 {
				fresh = append([]int{c.pending}, fresh...)
			}
		} else {
			c.sess.Close()
			c.sess = nil
		}
	}
	if c.sess == nil {
		if c.sess, err = c.e.NewSession(c.kv); err != nil {
			return Result{}, &BadRequestError{err.Error()}
		}
		fresh = all
	}
	ctxLen := c.e.Model.Config.Ctx
	if c.sess.cache.Len()+len(fresh) >= ctxLen {
		return Result{}, &BadRequestError{fmt.Sprintf("the conversation needs %d more tokens but only %d of the context length %d are left: start a new chat",
			len(fresh), ctxLen-c.sess.cache.Len()-1, ctxLen)}
	}
	c.sess.OnProgress = sink.Progress
	sink.Progress(0, len(fresh))
	start := time.Now()
	logits, err := c.sess.Prefill(ctx, fresh, false)
	if err != nil {
		return Result{}, err
	}
	c.Profiles++
	prefill := time.Since(start)
	sink.Progress(len(fresh), len(fresh))
	st := &stream{name: streamName(c.kv), sess: c.sess, logits: logits}
	res, err := c.e.run(ctx, []*stream{st}, fresh, start, prefill, req, sink)
	if err != nil {
		return Result{}, err
	}
	r := res[0]
	c.pending = -1
	if n := len(r.Tokens); n > 0 && r.FinishReason != FinishCancelled {
		c.pending = r.Tokens[n-1] // a finished stream's last token is sampled, never decoded
	}
	c.msgs = append(msgs, tokenizer.Message{Role: "assistant", Content: r.Text})
	return r, nil
}

func equalPrefix(a, prefix []int) bool {
	if len(prefix) > len(a) {
		return false
	}
	for i, t := range prefix {
		if a[i] != t {
			return false
		}
	}
	return true
}
