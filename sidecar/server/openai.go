package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// oaRequest is the union of the chat and completions request bodies; the
// fields whose JSON type varies (content, stop, prompt, logprobs) are read
// raw and checked by hand.
type oaRequest struct {
	Model               string          `json:"model"`
	Messages            []oaMessage     `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Logprobs    json.RawMessage `json:"logprobs"`
	TopLogprobs *int            `json:"top_logprobs"`
	N           *int            `json:"n"`
	// KVCompression is the opt-in cache selection, fastgen's one extension
	// to the API: the WebSocket's kv object.
	KVCompression *shared.KV `json:"kv_compression"`
}

type oaMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// maxStops matches OpenAI's limit on stop sequences.
const maxStops = 4

// toEngine validates the common fields and builds the engine request. chat
// selects the meaning of logprobs (bool + top_logprobs vs an int).
func (s *Server) toEngine(o *oaRequest, chat bool) (engine.Request, bool, *reqError) {
	var req engine.Request
	if o.N != nil && *o.N != 1 {
		return req, false, badRequest("n", "only n=1 is supported")
	}
	if chat {
		if len(o.Messages) == 0 {
			return req, false, badRequest("messages", "messages must hold at least one message")
		}
		for i, m := range o.Messages {
			role := m.Role
			switch role {
			case "developer":
				role = "system"
			case "system", "user", "assistant":
			default:
				return req, false, badRequest(fmt.Sprintf("messages[%d].role", i), "role %q is not supported (system, developer, user, assistant)", m.Role)
			}
			text, err := contentText(m.Content)
			if err != nil {
				return req, false, badRequest(fmt.Sprintf("messages[%d].content", i), "%v", err)
			}
			req.Messages = append(req.Messages, tokenizer.Message{Role: role, Content: text})
		}
	} else {
		p, err := promptText(o.Prompt)
		if err != nil {
			return req, false, badRequest("prompt", "%v", err)
		}
		req.Prompt = p
	}
	switch {
	case o.MaxCompletionTokens != nil:
		req.MaxTokens = *o.MaxCompletionTokens
	case o.MaxTokens != nil:
		req.MaxTokens = *o.MaxTokens
	}
	if req.MaxTokens < 0 {
		return req, false, badRequest("max_tokens", "max_tokens must be ≥ 0")
	}
	// OpenAI's defaults: temperature 1, top_p 1.
	req.Sampler = engine.SamplerConfig{Temperature: 1, TopP: 1, Seed: rand.Uint64()}
	if t := o.Temperature; t != nil {
		if math.IsNaN(*t) || *t < 0 || *t > 2 {
			return req, false, badRequest("temperature", "temperature must be in [0, 2]")
		}
		req.Sampler.Temperature = *t
	}
	if p := o.TopP; p != nil {
		if math.IsNaN(*p) || *p <= 0 || *p > 1 {
			return req, false, badRequest("top_p", "top_p must be in (0, 1]")
		}
		req.Sampler.TopP = *p
	}
	if o.Seed != nil {
		req.Sampler.Seed = uint64(*o.Seed)
	}
	stops, err := stopList(o.Stop)
	if err != nil {
		return req, false, badRequest("stop", "%v", err)
	}
	req.Stop = stops
	logprobs := false
	if len(o.Logprobs) > 0 && string(o.Logprobs) != "null" {
		if chat {
			if err := json.Unmarshal(o.Logprobs, &logprobs); err != nil {
				return req, false, badRequest("logprobs", "logprobs must be a boolean")
			}
			if o.TopLogprobs != nil {
				if *o.TopLogprobs < 0 || *o.TopLogprobs > 20 {
					return req, false, badRequest("top_logprobs", "top_logprobs must be in [0, 20]")
				}
				if !logprobs && *o.TopLogprobs > 0 {
					return req, false, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
				}
				req.TopAlternatives = *o.TopLogprobs
			}
		} else {
			var n int
			if err := json.Unmarshal(o.Logprobs, &n); err != nil || n < 0 || n > 5 {
				return req, false, badRequest("logprobs", "logprobs must be an integer in [0, 5]")
			}
			logprobs, req.TopAlternatives = true, n
		}
	}
	// Without kv_compression the cache is full, so ordinary clients get the
	// model's exact output.
	req.KV = engine.KVOptions{Mode: kvcache.ModeFull, FastGen: fastgen.Defaults()}
	if k := o.KVCompression; k != nil {
		var ve *shared.ValidationError
		if errors.As(k.Validate(), &ve) {
			return req, false, badRequest("kv_compression", "kv_compression.%s: %s", ve.Field, ve.Problem)
		}
		kv := kvOptions(k.EffectiveMode(), k, req.Sampler.Seed)
		if err := kv.Validate(); err != nil {
			return req, false, badRequest("kv_compression", "%v", err)
		}
		req.KV = kv
	}
	return req, logprobs, nil
}

func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("content must be a string or an array of text parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content part type %q is not supported (text only)", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

func promptText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("prompt is required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return "", fmt.Errorf("prompt is empty")
		}
		return s, nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		if len(list) != 1 {
			return "", fmt.Errorf("prompt arrays must hold exactly one string (batched prompts are not supported)")
		}
		return list[0], nil
	}
	return "", fmt.Errorf("prompt must be a string (token-id prompts are not supported)")
}

func stopList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("stop must be a string or an array of strings")
	}
	if len(list) > maxStops {
		return nil, fmt.Errorf("at most %d stop sequences", maxStops)
	}
	return list, nil
}

// ---- responses ----

type oaUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// fastgenStats is the opt-in extra block, present only when the request
// named kv_compression.
type fastgenStats struct {
	Mode        string         `json:"mode"`
	Threshold   float64        `json:"threshold,omitempty"`
	KVBytes     int64          `json:"kv_bytes"`
	KVBytesFull int64          `json:"kv_bytes_full"`
	PrunedRatio float64        `json:"pruned_ratio"`
	ProfileMs   float64        `json:"profile_ms"`
	PrefillTokS float64        `json:"prefill_tok_s"`
	DecodeTokS  float64        `json:"decode_tok_s"`
	TTFTms      float64        `json:"ttft_ms"`
	Policies    map[string]int `json:"policies,omitempty"`
}

type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatLogprob struct {
	topLogprob
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

func bytesOf(s string) []int {
	out := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = int(s[i])
	}
	return out
}

// genSink collects a stream's tokens for logprobs and hands released text to
// emit (streaming) as it is decoded.
type genSink struct {
	engine.NopSink
	e       *engine.Engine
	m       *metrics
	filter  stopFilter
	emitted strings.Builder
	emit    func(text string, lps []chatLogprob) bool // false: the client is gone
	cancel  context.CancelFunc
	lps     []chatLogprob
	pending []chatLogprob
	profile *fastgen.Profile
	reason  string
	stats   engine.Stats
}

func (g *genSink) Profile(_ string, p *fastgen.Profile, _ []int) {
	g.profile = p
	g.m.observeProfile(p)
}

func (g *genSink) Token(_ string, t engine.Token) {
	g.m.tokens.WithLabelValues("generated").Inc()
	if g.e.Tok.IsEOG(t.ID) {
		return
	}
	piece := g.e.Tok.Piece(t.ID)
	lp := chatLogprob{topLogprob: topLogprob{Token: piece, Logprob: t.Logprob, Bytes: bytesOf(piece)}, TopLogprobs: []topLogprob{}}
	for _, a := range t.Top {
		p := g.e.Tok.Piece(a.Token)
		lp.TopLogprobs = append(lp.TopLogprobs, topLogprob{Token: p, Logprob: a.Logprob, Bytes: bytesOf(p)})
	}
	if g.filter.stopped {
		return
	}
	g.lps = append(g.lps, lp)
	g.pending = append(g.pending, lp)
	if out := g.filter.add(t.Text); out != "" && g.emit != nil {
		g.send(out)
	}
}

func (g *genSink) send(text string) {
	g.emitted.WriteString(text)
	if !g.emit(text, g.pending) {
		g.cancel()
	}
	g.pending = nil
}

func (g *genSink) Done(_ string, reason string, st engine.Stats) {
	g.reason, g.stats = reason, st
	g.m.observeStats("", st)
}

// finish releases the text the stop filter still holds: the engine's final
// text (after its decoder flush and stop cut) is the reference.
func (g *genSink) finish(final string) {
	if g.emit == nil {
		return
	}
	if rest, ok := strings.CutPrefix(final, g.emitted.String()); ok && rest != "" {
		g.send(rest)
	}
}

func (s *Server) fastgenBlock(req *engine.Request, g *genSink) *fastgenStats {
	st := g.stats
	fb := &fastgenStats{Mode: req.KV.Mode, KVBytes: st.KVBytes, KVBytesFull: st.KVBytesFull, PrunedRatio: st.PrunedRatio,
		ProfileMs: st.ProfileMs, PrefillTokS: st.PrefillTokS, DecodeTokS: st.DecodeTokS, TTFTms: st.TTFTms}
	if req.KV.Mode == kvcache.ModeFastGen {
		fb.Threshold = req.KV.FastGen.Threshold
	}
	if g.profile != nil {
		fb.Policies = map[string]int{}
		for _, h := range g.profile.Heads {
			fb.Policies[h.Policy.Name()]++
		}
	}
	return fb
}

func finishReason(r string) string {
	if r == engine.FinishLength {
		return "length"
	}
	return "stop"
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.handleGenerate(w, r, true)
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	s.handleGenerate(w, r, false)
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request, chat bool) {
	api := "completions"
	if chat {
		api = "chat"
	}
	fail := func(re *reqError) {
		s.metrics.requests.WithLabelValues(api, re.Code).Inc()
		writeReqError(w, re)
	}
	var o oaRequest
	if re := s.readJSON(w, r, &o); re != nil {
		fail(re)
		return
	}
	e := s.Engine()
	req, logprobs, re := s.toEngine(&o, chat)
	if re != nil {
		fail(re)
		return
	}
	if _, re := s.prepare(e, &req); re != nil {
		fail(re)
		return
	}
	ctx, cancel := s.sessionContext(r.Context())
	defer cancel()
	release, err := s.acquire(ctx)
	if err != nil {
		fail(classify(err))
		return
	}
	defer release()

	id := newID("chatcmpl-")
	object := "chat.completion"
	if !chat {
		id, object = newID("cmpl-"), "text_completion"
	}
	model := o.Model
	if model == "" {
		model = s.model()
	}
	created := time.Now().Unix()
	g := &genSink{e: e, m: s.metrics, filter: stopFilter{stops: req.Stop}, cancel: cancel}
	var sse *sseWriter
	if o.Stream {
		sse = newSSE(w, s.cfg.WriteTimeout)
		chunkObj := object + ".chunk"
		if !chat {
			chunkObj = object
		}
		chunk := func(choice map[string]any) map[string]any {
			return map[string]any{"id": id, "object": chunkObj, "created": created, "model": model, "choices": []any{choice}}
		}
		if chat && !sse.send(chunk(map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil})) {
			return
		}
		g.emit = func(text string, lps []chatLogprob) bool {
			c := map[string]any{"index": 0, "finish_reason": nil}
			if chat {
				c["delta"] = map[string]any{"content": text}
				if logprobs {
					c["logprobs"] = map[string]any{"content": lps}
				}
			} else {
				c["text"] = text
				if logprobs {
					c["logprobs"] = completionLogprobs(lps, 0)
				}
			}
			return sse.send(chunk(c))
		}
		res, err := e.Generate(ctx, req, g)
		if err != nil {
			re := classify(err)
			s.metrics.requests.WithLabelValues(api, re.Code).Inc()
			sse.send(map[string]any{"error": apiError{Message: re.Msg, Type: "server_error", Code: re.Code}})
			sse.done()
			return
		}
		g.finish(res[0].Text)
		last := map[string]any{"index": 0, "finish_reason": finishReason(res[0].FinishReason)}
		if chat {
			last["delta"] = map[string]any{}
		} else {
			last["text"] = ""
		}
		fc := chunk(last)
		if o.KVCompression != nil {
			fc["fastgen"] = s.fastgenBlock(&req, g)
		}
		sse.send(fc)
		if o.StreamOptions != nil && o.StreamOptions.IncludeUsage {
			sse.send(map[string]any{"id": id, "object": chunkObj, "created": created, "model": model, "choices": []any{},
				"usage": usageOf(g.stats)})
		}
		sse.done()
		s.metrics.requests.WithLabelValues(api, outcome(ctx)).Inc()
		return
	}

	res, err := e.Generate(ctx, req, g)
	if err != nil {
		fail(classify(err))
		return
	}
	s.metrics.requests.WithLabelValues(api, outcome(ctx)).Inc()
	out := map[string]any{"id": id, "object": object, "created": created, "model": model, "usage": usageOf(g.stats)}
	choice := map[string]any{"index": 0, "finish_reason": finishReason(res[0].FinishReason), "logprobs": nil}
	if chat {
		choice["message"] = map[string]any{"role": "assistant", "content": res[0].Text, "refusal": nil}
		if logprobs {
			choice["logprobs"] = map[string]any{"content": g.lps, "refusal": nil}
		}
	} else {
		choice["text"] = res[0].Text
		if logprobs {
			choice["logprobs"] = completionLogprobs(g.lps, 0)
		}
	}
	out["choices"] = []any{choice}
	if o.KVCompression != nil {
		out["fastgen"] = s.fastgenBlock(&req, g)
	}
	writeJSON(w, http.StatusOK, out)
}

func outcome(ctx context.Context) string {
	if ctx.Err() != nil {
		return "cancelled"
	}
	return "ok"
}

func usageOf(st engine.Stats) oaUsage {
	return oaUsage{PromptTokens: st.PromptN, CompletionTokens: st.PredictedN, TotalTokens: st.PromptN + st.PredictedN}
}

// completionLogprobs is the legacy completions logprobs object.
func completionLogprobs(lps []chatLogprob, offset int) map[string]any {
	tokens := make([]string, len(lps))
	vals := make([]float64, len(lps))
	tops := make([]map[string]float64, len(lps))
	offs := make([]int, len(lps))
	for i, lp := range lps {
		tokens[i], vals[i], offs[i] = lp.Token, lp.Logprob, offset
		offset += len(lp.Token)
		tops[i] = map[string]float64{}
		for _, t := range lp.TopLogprobs {
			tops[i][t.Token] = t.Logprob
		}
	}
	return map[string]any{"tokens": tokens, "token_logprobs": vals, "top_logprobs": tops, "text_offset": offs}
}

// sseWriter writes server-sent events with a deadline per write, so a stalled
// client ends its own request instead of holding a slot forever.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	failed  bool
}

func newSSE(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	s.rc.Flush()
	return s
}

func (s *sseWriter) write(b []byte) bool {
	if s.failed {
		return false
	}
	s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(b); err != nil {
		s.failed = true
		return false
	}
	if err := s.rc.Flush(); err != nil {
		s.failed = true
		return false
	}
	return true
}

func (s *sseWriter) send(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	return s.write(append(append([]byte("data: "), b...), '\n', '\n'))
}

func (s *sseWriter) done() { s.write([]byte("data: [DONE]\n\n")) }
