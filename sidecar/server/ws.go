package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// wsConn is one fastgen.v1 connection. Engine events are encoded on the
// engine's goroutine and queued; one writer goroutine drains the queue, so a
// slow client never stalls a decode step, and a client that falls more than
// SendQueue frames behind is disconnected instead of growing memory.
type wsConn struct {
	s      *Server
	e      *engine.Engine
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	closed atomic.Bool
	// closeDone is closed when closeWith's close handshake has ended.
	closeDone chan struct{}

	// control limits ping, cancel and bad frames (read loop only).
	control bucket
	drops   int
	limited bool // an error frame was sent since the last allowed frame

	mu   sync.Mutex
	gens map[string]context.CancelFunc
	wg   sync.WaitGroup
	log  *slog.Logger
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	e := s.Engine()
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable_error", "", "loading", "the model is still loading; retry when GET /health answers 200")
		return
	}
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "unavailable_error", "", "shutting_down", "the server is shutting down")
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{shared.Protocol},
		// The Origin was checked by s.cors, the one rule for every route.
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has answered.
		s.log.Warn("websocket refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		s.metrics.requests.WithLabelValues("ws", "refused").Inc()
		return
	}
	if c.Subprotocol() != shared.Protocol {
		c.Close(websocket.StatusPolicyViolation, "subprotocol "+shared.Protocol+" required")
		return
	}
	c.SetReadLimit(s.cfg.MaxFrameBytes)
	ctx, cancel := context.WithCancel(context.Background())
	wc := &wsConn{s: s, e: e, c: c, ctx: ctx, cancel: cancel, out: make(chan []byte, s.cfg.SendQueue), closeDone: make(chan struct{}),
		gens: map[string]context.CancelFunc{}, log: s.log.With("remote", r.RemoteAddr),
		control: bucket{rate: s.cfg.ControlRate, burst: float64(s.cfg.ControlBurst), tokens: float64(s.cfg.ControlBurst), last: time.Now()}}
	s.metrics.conns.Inc()
	defer s.metrics.conns.Dec()
	// Shutdown past its deadline closes connections too.
	stop := context.AfterFunc(s.base, func() { wc.closeWith(websocket.StatusGoingAway, "server shutting down") })
	defer stop()

	writerDone := make(chan struct{})
	go func() { defer close(writerDone); wc.writer() }()
	wc.sendFrame(s.hello(e))
	wc.readLoop()
	if wc.closed.Load() {
		// closeWith is sending its reason; CloseNow would cut it off.
		<-wc.closeDone
	}
	// The tab is gone or the connection failed: cancel every generation
	// (each stops within one decode step and frees its cache) and wait.
	cancel()
	wc.wg.Wait()
	<-writerDone
	c.CloseNow()
}

func (s *Server) hello(e *engine.Engine) shared.Hello {
	c := e.Model.Config
	return shared.Hello{Protocol: shared.Protocol, Policies: fastgen.PolicyNames, KVModes: kvcache.Modes,
		Model: shared.ModelInfo{Name: s.model(), NLayers: c.Layers, NHeads: c.Heads, NKVHeads: c.KVHeads,
			HeadDim: c.HeadDim, NCtx: c.Ctx, VocabSize: c.Vocab}}
}

func (wc *wsConn) writer() {
	for {
		select {
		case <-wc.ctx.Done():
			return
		case b := <-wc.out:
			ctx, cancel := context.WithTimeout(wc.ctx, wc.s.cfg.WriteTimeout)
			err := wc.c.Write(ctx, websocket.MessageBinary, b)
			cancel()
			if err != nil {
				wc.cancel()
				return
			}
		}
	}
}

// closeWith closes the connection once with a status and reason; the read
// loop then ends and everything is cleaned up there.
func (wc *wsConn) closeWith(code websocket.StatusCode, reason string) {
	if wc.closed.Swap(true) {
		return
	}
	// Stop the runs at once (each frees its cache within a step), but keep
	// the connection's context until the close frame is out: cancelling a
	// coder/websocket Read drops the TCP connection, and the client would
	// see EOF instead of the reason.
	wc.mu.Lock()
	for _, cancel := range wc.gens {
		cancel()
	}
	wc.mu.Unlock()
	// Close waits for the peer's close frame (5 s at most); never do that
	// on an engine goroutine.
	go func() {
		// Let the writer flush what is queued (the last Done frames of a
		// drained run), within a bound: a slow client's queue never drains.
		for i := 0; i < 100 && len(wc.out) > 0; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		wc.c.Close(code, reason)
		wc.cancel()
		close(wc.closeDone)
	}()
}

// send queues an encoded frame without ever blocking the caller.
func (wc *wsConn) send(b []byte) {
	if wc.closed.Load() {
		return
	}
	select {
	case wc.out <- b:
		wc.s.metrics.wireBytes.Add(float64(len(b)))
	default:
		wc.log.Warn("websocket client too slow; closing", "queued", len(wc.out))
		wc.s.metrics.slowClients.Inc()
		wc.closeWith(websocket.StatusPolicyViolation, "client too slow: send buffer full")
	}
}

func (wc *wsConn) sendFrame(f shared.Frame) {
	b, err := shared.Encode(f)
	if err != nil {
		wc.log.Warn("encode frame", "type", f.FrameType(), "err", err)
		return
	}
	wc.send(b)
}

func (wc *wsConn) sendError(id string, re *reqError) {
	wc.sendFrame(shared.Error{ID: id, Code: re.Code, Message: re.Msg})
}

func (wc *wsConn) readLoop() {
	for {
		typ, b, err := wc.c.Read(wc.ctx)
		if wc.closed.Load() {
			return // closing: start nothing more
		}
		if err != nil {
			if st := websocket.CloseStatus(err); st == -1 && !errors.Is(err, context.Canceled) {
				wc.log.Info("websocket read ended", "err", err)
			}
			return
		}
		if typ != websocket.MessageBinary {
			if !wc.allowControl() {
				continue
			}
			wc.sendError("", badRequest("", "frames are binary msgpack (%s); got a text message", shared.Protocol))
			continue
		}
		f, err := shared.DecodeClient(b)
		if _, gen := f.(*shared.Generate); !gen && !wc.allowControl() {
			// Generate frames are bounded by admission (busy) instead.
			if err != nil {
				wc.s.metrics.badFrames.Inc()
			}
			continue
		}
		if err != nil {
			wc.s.metrics.badFrames.Inc()
			var ute *shared.UnknownTypeError
			msg := err.Error()
			if errors.As(err, &ute) {
				msg = fmt.Sprintf("unknown frame type %q: clients send generate, cancel or ping", ute.Type)
			}
			wc.sendError("", badRequest("", "%s", msg))
			continue
		}
		switch f := f.(type) {
		case *shared.Ping:
			wc.sendFrame(shared.Pong{})
		case *shared.Cancel:
			wc.mu.Lock()
			cancel := wc.gens[f.ID]
			wc.mu.Unlock()
			if cancel == nil {
				wc.sendError(f.ID, &reqError{Code: shared.CodeNotFound, Msg: fmt.Sprintf("no running request with id %q", f.ID)})
				continue
			}
			cancel()
		case *shared.Generate:
			wc.start(f)
		}
	}
}

// CodeRateLimited is the error code of a control frame over the
// connection's rate limit.
const CodeRateLimited = "rate_limited"

// allowControl takes a token from the connection's control bucket. Over the
// limit, the first dropped frame is answered with an error frame and the
// rest are dropped silently; too many drops close the connection.
func (wc *wsConn) allowControl() bool {
	if wc.control.allow(time.Now()) {
		wc.limited = false
		return true
	}
	wc.drops++
	if wc.drops >= wc.s.cfg.MaxControlDrops {
		wc.log.Warn("websocket client over the control-frame limit; closing", "drops", wc.drops)
		wc.closeWith(websocket.StatusPolicyViolation, "too many control frames")
		return false
	}
	if !wc.limited {
		wc.limited = true
		wc.sendError("", &reqError{Code: CodeRateLimited, Msg: fmt.Sprintf(
			"too many ping, cancel or bad frames: at most %g per second (burst %d); frames over the limit are dropped",
			wc.s.cfg.ControlRate, wc.s.cfg.ControlBurst)})
	}
	return false
}

// bucket is a token bucket: rate tokens a second up to burst.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *bucket) allow(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// start validates and admits a generate frame, then runs it on its own
// goroutine so the connection keeps reading (cancel, ping) meanwhile.
func (wc *wsConn) start(g *shared.Generate) {
	req, err := wc.request(g)
	if err != nil {
		wc.s.metrics.requests.WithLabelValues("ws", "bad_request").Inc()
		wc.sendError(g.ID, err)
		return
	}
	if _, re := wc.s.prepare(wc.e, &req); re != nil {
		wc.s.metrics.requests.WithLabelValues("ws", "bad_request").Inc()
		wc.sendError(g.ID, re)
		return
	}
	ctx, cancel := wc.s.sessionContext(wc.ctx)
	wc.mu.Lock()
	if _, dup := wc.gens[g.ID]; dup {
		wc.mu.Unlock()
		cancel()
		wc.sendError(g.ID, badRequest("id", "a request with id %q is already running on this connection", g.ID))
		return
	}
	if n := len(wc.gens); n >= wc.s.cfg.MaxRunsPerConn {
		wc.mu.Unlock()
		cancel()
		wc.s.metrics.requests.WithLabelValues("ws", shared.CodeBusy).Inc()
		wc.sendError(g.ID, &reqError{Status: 429, Code: shared.CodeBusy, Msg: fmt.Sprintf("this connection already has %d runs, the most one connection may hold (--max-runs-per-conn); wait for one to finish or cancel one", n)})
		return
	}
	wc.gens[g.ID] = cancel
	wc.mu.Unlock()
	wc.wg.Add(1)
	go func() {
		defer wc.wg.Done()
		defer func() {
			wc.mu.Lock()
			delete(wc.gens, g.ID)
			wc.mu.Unlock()
			cancel()
		}()
		wc.run(ctx, g, req)
	}()
}

func (wc *wsConn) run(ctx context.Context, g *shared.Generate, req engine.Request) {
	release, err := wc.s.acquire(ctx)
	if err != nil {
		re := classify(err)
		if re.Code == shared.CodeCancelled {
			wc.doneAll(g, engine.FinishCancelled)
			wc.s.metrics.requests.WithLabelValues("ws", "cancelled").Inc()
			return
		}
		wc.s.metrics.requests.WithLabelValues("ws", re.Code).Inc()
		wc.sendError(g.ID, re)
		return
	}
	defer release()
	sink := &frameSink{wc: wc, id: g.ID, e: wc.e, m: wc.s.metrics, rLocal: req.KV.FastGen.RLocal, compare: req.Compare != nil}
	start := time.Now()
	_, err = wc.e.Generate(ctx, req, sink)
	switch {
	case err == nil:
		wc.s.metrics.requests.WithLabelValues("ws", "ok").Inc()
	case ctx.Err() != nil:
		// Cancelled before decoding began: the engine sent no Done.
		wc.doneAll(g, engine.FinishCancelled)
		wc.s.metrics.requests.WithLabelValues("ws", "cancelled").Inc()
	default:
		re := classify(err)
		wc.s.metrics.requests.WithLabelValues("ws", re.Code).Inc()
		wc.sendError(g.ID, re)
	}
	wc.log.Info("ws generate", "id", g.ID, "streams", g.Streams(), "dur_ms", time.Since(start).Milliseconds(), "err", err)
}

func (wc *wsConn) doneAll(g *shared.Generate, reason string) {
	for _, st := range g.Streams() {
		wc.sendFrame(shared.Done{ID: g.ID, Stream: st, FinishReason: reason})
	}
}

// defaultBaselineBudget is the kept share a fixed baseline (primary or the
// compare_with stream; kv.budget applies to whichever is a baseline) gets when a
// request leaves kv.budget at 0; the engine fixes a comparison stream's
// policy before the FastGen run's pruned ratio is known.
const defaultBaselineBudget = 0.5

// kvOptions turns the wire's KV selection into engine options.
func kvOptions(mode string, kv *shared.KV, seed uint64) engine.KVOptions {
	o := engine.DefaultKV()
	o.Mode = mode
	o.Seed = seed
	if kv != nil {
		if kv.Threshold != nil {
			o.FastGen.Threshold = *kv.Threshold
		}
		if kv.LocalRatio > 0 {
			o.FastGen.RLocal = kv.LocalRatio
		}
		if kv.FrequentRatio > 0 {
			o.FastGen.RFreq = kv.FrequentRatio
		}
	}
	if mode != kvcache.ModeFull && mode != kvcache.ModeFastGen {
		b := defaultBaselineBudget
		if kv != nil && kv.Budget > 0 {
			b = kv.Budget
		}
		o.Budget = kvcache.Budget{Ratio: b}
	}
	return o
}

// request maps a validated generate frame to an engine request. Temperature
// defaults to 0 (greedy) so the UI's runs are reproducible; an absent seed
// is drawn at random, and both compare streams share it.
func (wc *wsConn) request(g *shared.Generate) (engine.Request, *reqError) {
	seed := rand.Uint64()
	if g.Seed != nil {
		seed = uint64(*g.Seed)
	}
	req := engine.Request{Prompt: g.Prompt, MaxTokens: g.MaxTokens, TopAlternatives: g.TopKAlternatives,
		Sampler: engine.SamplerConfig{Seed: seed, TopP: 1}}
	for _, m := range g.Messages {
		req.Messages = append(req.Messages, tokenizer.Message{Role: m.Role, Content: m.Content})
	}
	if g.Temperature != nil {
		req.Sampler.Temperature = *g.Temperature
	}
	if g.TopP != nil {
		req.Sampler.TopP = *g.TopP
	}
	req.KV = kvOptions(g.Mode(), g.KV, seed)
	if g.Compare {
		o := kvOptions(g.Baseline(), g.KV, seed)
		req.Compare = &o
	}
	return req, nil
}

// frameSink turns engine events into shared frames. It runs on the engine's
// goroutine and encodes at once, so the engine's reused slices (Kept,
// Evicted, Top) are never read after the call returns.
type frameSink struct {
	wc      *wsConn
	id      string
	e       *engine.Engine
	m       *metrics
	rLocal  float64
	compare bool
}

func (f *frameSink) Progress(processed, total int) {
	f.wc.sendFrame(shared.Progress{ID: f.id, Processed: processed, Total: total})
}

func (f *frameSink) Profile(stream string, p *fastgen.Profile, prompt []int) {
	f.m.observeProfile(p)
	f.wc.sendFrame(profileFrame(f.e, f.id, stream, p, prompt, f.rLocal))
}

func profileFrame(e *engine.Engine, id, stream string, p *fastgen.Profile, prompt []int, rLocal float64) shared.Profile {
	fr := shared.Profile{ID: id, Stream: stream, Threshold: p.Threshold,
		Heads: make([]shared.HeadProfile, len(p.Heads)), PromptTokens: make([]shared.PromptToken, len(prompt)),
		LocalWindow: int(math.Ceil(rLocal * float64(len(prompt))))}
	for i, h := range p.Heads {
		rec := make(map[string]float64, len(h.Recovery))
		for j, r := range h.Recovery {
			if j < len(p.Candidates) {
				rec[p.Candidates[j].Name()] = r
			}
		}
		fr.Heads[i] = shared.HeadProfile{Layer: h.Layer, KVHead: h.KVHead, Policy: h.Policy.Name(), Recovery: rec,
			Mass: shared.Mass{Special: h.Mass.Special, Punct: h.Mass.Punct, Local: h.Mass.Local, Other: h.Mass.Other}}
	}
	for i, t := range prompt {
		fr.PromptTokens[i] = shared.PromptToken{ID: t, Text: e.Tok.Piece(t), Class: fastgen.Name(e.Classes.Of(t))}
	}
	return fr
}

func (f *frameSink) Token(stream string, t engine.Token) {
	fr := shared.Token{ID: f.id, Stream: stream, Index: t.Index, Token: t.ID, Text: t.Text, Logprob: t.Logprob,
		Class: fastgen.Name(f.e.Classes.Of(t.ID))}
	if t.Compared {
		kl := t.KL
		fr.KL = &kl
	}
	if len(t.Top) > 0 {
		fr.Top = make([]shared.Alternative, len(t.Top))
		for i, a := range t.Top {
			fr.Top[i] = shared.Alternative{Token: a.Token, Text: f.e.Tok.Piece(a.Token), Logprob: a.Logprob}
		}
	}
	f.m.tokens.WithLabelValues("generated").Inc()
	f.wc.sendFrame(fr)
}

func (f *frameSink) Occupancy(stream string, o engine.Occupancy) {
	f.wc.sendFrame(occupancyFrame(f.id, stream, o))
}

func occupancyFrame(id, stream string, o engine.Occupancy) shared.Occupancy {
	fr := shared.Occupancy{ID: id, Stream: stream, Index: o.Index, Kept: o.Kept, KVBytes: o.KVBytes, KVBytesFull: o.KVBytesFull}
	for h, ev := range o.Evicted {
		if len(ev) == 0 {
			continue
		}
		pos := make([]uint32, len(ev))
		for i, p := range ev {
			pos[i] = uint32(p)
		}
		fr.Evicted = append(fr.Evicted, shared.Eviction{Head: h, Positions: pos})
	}
	return fr
}

func (f *frameSink) Done(stream, reason string, st engine.Stats) {
	f.m.observeStats(stream, st)
	fr := statsFrame(f.id, stream, st, f.compare)
	f.wc.sendFrame(fr)
	f.wc.sendFrame(shared.Done{ID: f.id, Stream: stream, FinishReason: reason})
}

func statsFrame(id, stream string, st engine.Stats, compare bool) shared.Stats {
	fr := shared.Stats{ID: id, Stream: stream, PrefillTokS: st.PrefillTokS, DecodeTokS: st.DecodeTokS, TTFTMS: st.TTFTms,
		PrunedRatio: st.PrunedRatio, KVBytes: st.KVBytes, KVBytesFull: st.KVBytesFull,
		PromptTokens: st.PromptN, GeneratedTokens: st.PredictedN, AttnLoss: st.AttnLoss}
	if compare {
		fr.Agreement, fr.KL = shared.Ptr(st.Agreement), shared.Ptr(st.KL)
	}
	return fr
}
