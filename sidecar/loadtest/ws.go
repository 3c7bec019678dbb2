package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
)

// maxFramesPerRequest bounds the read loop of one request: a 512-token
// compare run sends a few thousand frames.
const maxFramesPerRequest = 200_000

// wsClient is one session's fastgen.v1 connection, reused across requests
// and redialled after a disconnect or failure.
type wsClient struct {
	r *runner
	c *websocket.Conn
}

func (w *wsClient) close() {
	if w.c != nil {
		w.c.Close(websocket.StatusNormalClosure, "")
		w.c = nil
	}
}

func (w *wsClient) drop() {
	if w.c != nil {
		w.c.CloseNow()
		w.c = nil
	}
}

func (w *wsClient) dial(ctx context.Context) error {
	u := *w.r.base
	u.Scheme = "ws"
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/ws"
	h := http.Header{}
	if w.r.cfg.APIKey != "" {
		h.Set("Authorization", "Bearer "+w.r.cfg.APIKey)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{shared.Protocol}})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.SetReadLimit(shared.MaxServerFrameBytes)
	_, b, err := c.Read(dctx)
	if err != nil {
		c.CloseNow()
		return fmt.Errorf("reading hello: %w", err)
	}
	if f, err := shared.Decode(b); err != nil {
		c.CloseNow()
		return fmt.Errorf("decoding hello: %w", err)
	} else if _, ok := f.(*shared.Hello); !ok {
		c.CloseNow()
		return fmt.Errorf("first frame is %s, not hello", f.FrameType())
	}
	w.c = c
	return nil
}

func (w *wsClient) write(ctx context.Context, f shared.Frame) error {
	b, err := shared.Encode(f)
	if err != nil {
		return err
	}
	return w.c.Write(ctx, websocket.MessageBinary, b)
}

var kvModes = []string{"fastgen", "full", "h2o", "local"}

// generate runs one generate (or compare) request on the connection.
func (w *wsClient) generate(ctx context.Context, p plan) reqResult {
	if w.c == nil {
		if err := w.dial(ctx); err != nil {
			return reqResult{out: failed, err: err}
		}
	}
	g := shared.Generate{ID: p.id, MaxTokens: p.maxTokens, Temperature: shared.Ptr(p.temp), Seed: shared.Ptr(p.seed),
		KV: &shared.KV{Mode: kvModes[int(uint64(p.seed)%uint64(len(kvModes)))]}, Compare: p.kind == KindCompare}
	if g.Compare && g.KV.Mode == "full" {
		g.KV.Mode = "fastgen" // compare_with defaults to full
	}
	if p.chat {
		g.Messages = []shared.Message{{Role: shared.RoleUser, Content: p.prompt}}
	} else {
		g.Prompt = p.prompt
	}
	streams := len(g.Streams())
	start := time.Now()
	if err := w.write(ctx, g); err != nil {
		w.drop()
		return errf("write generate: %v", err)
	}
	var rr reqResult
	cancelSent := false
	stop := func() (reqResult, bool) {
		if p.disconnect {
			// Abandon the connection mid-run, as a closed tab does.
			w.drop()
			rr.out = cancelled
			return rr, true
		}
		cancelSent = true
		if err := w.write(ctx, shared.Cancel{ID: p.id}); err != nil {
			w.drop()
			return errf("write cancel: %v", err), true
		}
		return rr, false
	}
	if p.cancelAt == 0 {
		// Before the first token: while queued or during prefill.
		if res, end := stop(); end {
			return res
		}
	}
	dones, gotCancelled := 0, false
	for range maxFramesPerRequest {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			w.drop()
			if ctx.Err() != nil {
				return errf("%s: no done after %s (%d tokens)", p.id, time.Since(start).Round(time.Millisecond), rr.tokens)
			}
			return errf("%s: read: %v", p.id, err)
		}
		f, err := shared.Decode(b)
		if err != nil {
			w.drop()
			return errf("%s: decode: %v", p.id, err)
		}
		switch f := f.(type) {
		case *shared.Token:
			if f.ID != p.id {
				continue
			}
			if rr.tokens == 0 {
				rr.ttft = time.Since(start)
			}
			rr.tokens++
			if p.cancelAt > 0 && !cancelSent && rr.tokens == p.cancelAt {
				if res, end := stop(); end {
					return res
				}
			}
		case *shared.Done:
			if f.ID != p.id {
				continue
			}
			dones++
			if f.FinishReason == "cancelled" {
				gotCancelled = true
			}
			if dones == streams {
				switch {
				case gotCancelled && !cancelSent:
					return errf("%s: cancelled by the server unasked", p.id)
				case gotCancelled:
					rr.out = cancelled
				default:
					rr.out = completed
				}
				return rr
			}
		case *shared.Error:
			switch {
			case f.Code == shared.CodeNotFound && (cancelSent || f.ID != p.id):
				// A cancel raced with its run's end (or its refusal); for an
				// earlier request it arrives during this one.
				continue
			case f.ID != p.id:
				return errf("%s: error frame for %q: %s: %s", p.id, f.ID, f.Code, f.Message)
			case f.Code == shared.CodeBusy && strings.Contains(f.Message, "busy"):
				rr.out = refused
				return rr
			}
			return errf("%s: error %s: %s", p.id, f.Code, f.Message)
		}
	}
	w.drop()
	return errf("%s: more than %d frames", p.id, maxFramesPerRequest)
}
