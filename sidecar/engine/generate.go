package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// Request is one generation.
type Request struct {
	Prompt   string              // raw text, or
	Messages []tokenizer.Message // a chat, rendered with the model's template
	// MaxTokens caps generated tokens (0 = until EOS or the context is full).
	MaxTokens int
	Sampler   SamplerConfig
	Stop      []string // stop sequences (not included in the output)
	// TopAlternatives is how many alternatives each token event carries.
	TopAlternatives int
	KV              KVOptions
	// Compare, when set, decodes a second stream from the same prefill with
	// these cache options, in lockstep and with the same seed.
	Compare *KVOptions
	// MaxPromptTokens refuses longer prompts (0 = the context length).
	MaxPromptTokens int
}

// Finish reasons.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishCancelled = "cancelled"
	FinishError     = "error"
)

// Token is one generated token of a stream.
type Token struct {
	Index   int
	ID      int
	Text    string // the text it completes (may be empty mid-character)
	Logprob float64
	Top     []Alternative
	// Compare mode: KL(compare stream ‖ primary stream) of this step's
	// distributions, and whether their top-1 tokens agreed.
	KL       float64
	Agree    bool
	Compared bool
}

// Occupancy is a stream's cache after one step.
type Occupancy struct {
	Index       int
	Kept        []uint32  // per head, layer-major
	Evicted     [][]int32 // per head: positions evicted this step
	KVBytes     int64
	KVBytesFull int64
	PrunedRatio float64
}

// Stats summarise a finished stream.
type Stats struct {
	PromptN     int     `json:"prompt_n"`
	PredictedN  int     `json:"predicted_n"`
	PrefillTokS float64 `json:"prefill_tok_s"`
	DecodeTokS  float64 `json:"decode_tok_s"`
	TTFTms      float64 `json:"ttft_ms"`
	KVBytes     int64   `json:"kv_bytes"`
	KVBytesFull int64   `json:"kv_bytes_full"`
	PrunedRatio float64 `json:"pruned_ratio"`
	ProfileMs   float64 `json:"profile_ms"`
	// AttnLoss is the mean over steps and heads of 1 − the attention mass (of
	// a full-cache shadow) on entries this stream kept; measured in compare
	// mode against full while both streams have generated the same tokens.
	AttnLoss float64 `json:"attn_loss,omitempty"`
	// Compare mode: share of steps whose top-1 tokens agreed, and the mean
	// KL(compare stream ‖ this stream) over steps.
	Agreement float64 `json:"agreement,omitempty"`
	KL        float64 `json:"kl,omitempty"`
}

// Sink receives a generation's events as they happen. Streams are named by
// their cache mode ("fastgen", "full", or a baseline's name).
type Sink interface {
	Progress(processed, total int)
	Profile(stream string, p *fastgen.Profile, prompt []int)
	Token(stream string, t Token)
	Occupancy(stream string, o Occupancy)
	Done(stream string, reason string, st Stats)
}

// NopSink ignores every event; embed it to implement only some.
type NopSink struct{}

func (NopSink) Progress(int, int)                       {}
func (NopSink) Profile(string, *fastgen.Profile, []int) {}
func (NopSink) Token(string, Token)                     {}
func (NopSink) Occupancy(string, Occupancy)             {}
func (NopSink) Done(string, string, Stats)              {}

// Result is what a stream produced.
type Result struct {
	Stream       string
	PromptTokens []int
	Tokens       []int
	Text         string
	FinishReason string
	Stats        Stats
	Profile      *fastgen.Profile
}

// BadRequestError is a request the engine refuses as given.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

// Tokenize turns a request's prompt or messages into token ids.
func (e *Engine) Tokenize(req *Request) ([]int, error) {
	if (req.Prompt == "") == (len(req.Messages) == 0) {
		return nil, &BadRequestError{"give either a prompt or messages"}
	}
	v := e.Tok.Vocab()
	if len(req.Messages) > 0 {
		text, err := e.Tok.RenderChat(req.Messages, true)
		if err != nil {
			return nil, &BadRequestError{err.Error()}
		}
		// Rendered templates carry their own BOS marker where they need one.
		addBOS := v.AddBOS && v.BOS >= 0 && !strings.HasPrefix(text, v.Tokens[v.BOS])
		return e.Tok.Encode(text, addBOS, true), nil
	}
	return e.Tok.Encode(req.Prompt, v.AddBOS, false), nil
}

// stream is one decoding sequence of a generation.
type stream struct {
	name    string
	sess    *Session
	sampler *Sampler
	dec     *tokenizer.StreamDecoder
	logits  []float32
	tokens  []int
	text    strings.Builder
	reason  string
	start   time.Time
	first   time.Duration
	top     []Alternative
	kept    []uint32
	evicted [][]int32
	agree   int
	klSum   float64
	steps   int
	// attention loss against a full-cache shadow (compare mode with full)
	attnSum   float64
	attnSteps int
	// this step's comparison, reported with its token
	stepKL    float64
	stepAgree bool
	compared  bool
}

func streamName(kv KVOptions) string {
	if kv.Mode == "" {
		return kvcache.ModeFastGen
	}
	return kv.Mode
}

// Generate runs a request to completion, cancellation or error, sending
// events to sink. The first result is the primary stream; in compare mode the
// second is the comparison stream.
func (e *Engine) Generate(ctx context.Context, req Request, sink Sink) ([]Result, error) {
	if sink == nil {
		sink = NopSink{}
	}
	if req.KV.Mode == "" {
		req.KV = DefaultKV()
	}
	if err := req.Sampler.Validate(); err != nil {
		return nil, &BadRequestError{err.Error()}
	}
	if req.MaxTokens < 0 {
		return nil, &BadRequestError{"max_tokens must be ≥ 0"}
	}
	if err := req.KV.Validate(); err != nil {
		return nil, &BadRequestError{err.Error()}
	}
	if req.Compare != nil {
		if err := req.Compare.Validate(); err != nil {
			return nil, &BadRequestError{err.Error()}
		}
		if streamName(*req.Compare) == streamName(req.KV) {
			return nil, &BadRequestError{fmt.Sprintf("compare mode needs two different cache modes (both are %q)", streamName(req.KV))}
		}
	}
	prompt, err := e.Tokenize(&req)
	if err != nil {
		return nil, err
	}
	ctxLen := e.Model.Config.Ctx
	limit := ctxLen
	if req.MaxPromptTokens > 0 && req.MaxPromptTokens < limit {
		limit = req.MaxPromptTokens
	}
	if len(prompt) == 0 {
		return nil, &BadRequestError{"the prompt is empty after tokenization"}
	}
	if len(prompt) > limit || len(prompt) >= ctxLen {
		return nil, &BadRequestError{fmt.Sprintf("prompt is %d tokens; the limit is %d (context length %d, leaving room to generate)", len(prompt), min(limit, ctxLen-1), ctxLen)}
	}

	primary, err := e.NewSession(req.KV)
	if err != nil {
		return nil, &BadRequestError{err.Error()}
	}
	defer primary.Close()
	primary.OnProgress = sink.Progress
	sink.Progress(0, len(prompt))
	start := time.Now()
	logits, err := primary.Prefill(ctx, prompt, req.Compare != nil)
	if err != nil {
		return nil, err
	}
	prefill := time.Since(start)
	sink.Progress(len(prompt), len(prompt))

	streams := []*stream{{name: streamName(req.KV), sess: primary}}
	if req.Compare != nil {
		other, err := primary.Fork(*req.Compare)
		if err != nil {
			return nil, &BadRequestError{err.Error()}
		}
		defer other.Close()
		primary.Apply()
		other.Apply()
		streams = append(streams, &stream{name: streamName(*req.Compare), sess: other, logits: append([]float32(nil), logits...)})
	}
	streams[0].logits = logits
	return e.run(ctx, streams, prompt, start, prefill, req, sink)
}

// run decodes the streams in lockstep until each stops, then reports.
func (e *Engine) run(ctx context.Context, streams []*stream, prompt []int, start time.Time, prefill time.Duration, req Request, sink Sink) ([]Result, error) {
	ctxLen := e.Model.Config.Ctx
	used := streams[0].sess.cache.Len()
	for _, s := range streams {
		s.sampler = NewSampler(req.Sampler)
		s.dec = e.Tok.NewStreamDecoder()
		s.start = time.Now()
		s.top = make([]Alternative, 0, req.TopAlternatives)
		if s.sess.Profile != nil {
			sink.Profile(s.name, s.sess.Profile, prompt)
		}
	}

	maxNew := req.MaxTokens
	if maxNew == 0 || maxNew > ctxLen-used {
		maxNew = ctxLen - used
	}
	var shadow *lossShadow
	if len(streams) == 2 && streams[1].name == kvcache.ModeFull && streams[0].name != kvcache.ModeFull {
		shadow = newLossShadow(streams[0].sess.cache, streams[1].sess.cache, ctxLen)
	}
	for step := 0; ; step++ {
		active := 0
		for _, s := range streams {
			if s.reason == "" {
				active++
			}
		}
		if active == 0 {
			break
		}
		if ctx.Err() != nil {
			for _, s := range streams {
				if s.reason == "" {
					s.reason = FinishCancelled
				}
			}
			break
		}
		if len(streams) == 2 && streams[0].reason == "" && streams[1].reason == "" {
			// Agreement and KL compare the distributions both streams see
			// before sampling this step; the second stream is the reference.
			a, b := streams[0], streams[1]
			agree := tensor.Argmax(a.logits) == tensor.Argmax(b.logits)
			if agree {
				a.agree++
				b.agree++
			}
			kl := KL(b.logits, a.logits)
			for _, s := range streams {
				s.stepKL, s.stepAgree, s.compared = kl, agree, true
			}
			a.klSum += kl
			b.klSum += kl
			a.steps++
			b.steps++
		}
		for _, s := range streams {
			if s.reason != "" {
				continue
			}
			var err error
			id := s.sampler.Sample(s.logits, s.sess.history)
			lp, top := s.sampler.LogSoftmax(s.logits, id, s.top)
			s.top = top
			if len(s.tokens) == 0 {
				s.first = time.Since(start)
			}
			s.tokens = append(s.tokens, id)
			piece := ""
			if !e.Tok.IsEOG(id) {
				piece = s.dec.Add(id)
			}
			s.text.WriteString(piece)
			sink.Token(s.name, Token{Index: step, ID: id, Text: piece, Logprob: lp, Top: top,
				KL: s.stepKL, Agree: s.stepAgree, Compared: s.compared})
			s.compared = false
			switch {
			case e.Tok.IsEOG(id):
				s.reason = FinishStop
			case hasStop(s, req.Stop, piece):
				s.reason = FinishStop
			case len(s.tokens) >= maxNew:
				s.reason = FinishLength
			}
			if s.reason != "" {
				continue
			}
			var obs model.AttentionObserver
			if shadow != nil && s == streams[1] && shadow.live(streams[0], streams[1]) {
				obs = shadow
				shadow.begin()
			}
			s.logits, err = s.sess.DecodeObserved(ctx, id, obs)
			switch {
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
				s.reason = FinishCancelled
				continue
			case errors.Is(err, ErrContextFull):
				s.reason = FinishLength
				continue
			case err != nil:
				return nil, err
			}
			occ := s.occupancy(step)
			if shadow != nil && s == streams[0] {
				shadow.mark(occ.Evicted)
			}
			if obs != nil {
				streams[0].attnSum += shadow.end()
				streams[0].attnSteps++
			}
			sink.Occupancy(s.name, occ)
		}
	}

	results := make([]Result, len(streams))
	for i, s := range streams {
		s.text.WriteString(s.dec.Flush())
		text := s.text.String()
		for _, stop := range req.Stop {
			if j := strings.Index(text, stop); stop != "" && j >= 0 {
				text = text[:j]
			}
		}
		decodeDur := time.Since(s.start)
		st := Stats{
			PromptN:     len(prompt),
			PredictedN:  len(s.tokens),
			PrefillTokS: float64(len(prompt)) / prefill.Seconds(),
			TTFTms:      float64(s.first.Microseconds()) / 1000,
			KVBytes:     s.sess.cache.Bytes(),
			KVBytesFull: s.sess.cache.FullBytes(),
			PrunedRatio: s.sess.cache.PrunedRatio(),
			ProfileMs:   float64(s.sess.ProfileTime.Microseconds()) / 1000,
		}
		if n := len(s.tokens) - 1; n > 0 {
			st.DecodeTokS = float64(n) / decodeDur.Seconds()
		}
		if s.attnSteps > 0 {
			st.AttnLoss = s.attnSum / float64(s.attnSteps)
		}
		if s.steps > 0 {
			st.Agreement = float64(s.agree) / float64(s.steps)
			st.KL = s.klSum / float64(s.steps)
		}
		sink.Done(s.name, s.reason, st)
		results[i] = Result{Stream: s.name, PromptTokens: prompt, Tokens: s.tokens, Text: text,
			FinishReason: s.reason, Stats: st, Profile: s.sess.Profile}
	}
	return results, nil
}

// hasStop reports whether a stop sequence has appeared. Only the text that
// the newest piece can have completed is searched, so a long output does not
// make every step rescan everything before it.
func hasStop(s *stream, stops []string, piece string) bool {
	text := s.text.String()
	for _, stop := range stops {
		if stop == "" {
			continue
		}
		from := max(0, len(text)-len(piece)-len(stop)+1)
		if strings.Contains(text[from:], stop) {
			return true
		}
	}
	return false
}

func (s *stream) occupancy(step int) Occupancy {
	c := s.sess.cache
	cfg := c.Config()
	s.kept = c.KeptAll(s.kept)
	if s.evicted == nil {
		s.evicted = make([][]int32, cfg.Layers*cfg.KVHeads)
	}
	for l := 0; l < cfg.Layers; l++ {
		for h := 0; h < cfg.KVHeads; h++ {
			s.evicted[l*cfg.KVHeads+h] = append(s.evicted[l*cfg.KVHeads+h][:0], c.TakeEvicted(l, h)...)
		}
	}
	return Occupancy{Index: step, Kept: s.kept, Evicted: s.evicted, KVBytes: c.Bytes(),
		KVBytesFull: c.FullBytes(), PrunedRatio: c.PrunedRatio()}
}

// KL is KL(p ‖ q) for the softmax distributions of two logit vectors.
func KL(pLogits, qLogits []float32) float64 {
	lp, lq := logNorm(pLogits), logNorm(qLogits)
	var kl float64
	for i := range pLogits {
		a := float64(pLogits[i]) - lp
		b := float64(qLogits[i]) - lq
		kl += math.Exp(a) * (a - b)
	}
	return math.Max(kl, 0)
}

func logNorm(x []float32) float64 {
	mx := float64(x[tensor.Argmax(x)])
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// lossShadow measures, during a full-cache stream's decode step, how much of
// its attention falls on entries the compressed stream did not attend to at
// the same step (the spec's attention loss). It is the model's attention
// observer for the shadow's forward pass; heads report concurrently, each
// into its own slot.
type lossShadow struct {
	comp    *kvcache.Cache // the compressed stream's
	full    *kvcache.Cache // the shadow's
	kvHeads int
	// stamp[h][pos] == step marks the positions head h of the compressed
	// stream attended over at this step.
	stamp [][]int32
	step  int32
	loss  []float64 // per head, this step
}

func newLossShadow(comp, full *kvcache.Cache, ctxLen int) *lossShadow {
	cfg := comp.Config()
	n := cfg.Layers * cfg.KVHeads
	l := &lossShadow{comp: comp, full: full, kvHeads: cfg.KVHeads, stamp: make([][]int32, n), loss: make([]float64, n)}
	for i := range l.stamp {
		l.stamp[i] = make([]int32, ctxLen)
	}
	return l
}

// live reports whether the two streams still share their history: after
// they diverge, their attention is over different sequences.
func (l *lossShadow) live(comp, full *stream) bool {
	if len(comp.tokens) != len(full.tokens) || comp.reason != "" {
		return false
	}
	for i := range comp.tokens {
		if comp.tokens[i] != full.tokens[i] {
			return false
		}
	}
	return true
}

// mark records what the compressed stream attended over at this step: what
// it keeps now plus what it evicted after attending.
func (l *lossShadow) mark(evicted [][]int32) {
	l.step++
	cfg := l.comp.Config()
	for layer := 0; layer < cfg.Layers; layer++ {
		for kh := 0; kh < cfg.KVHeads; kh++ {
			h := layer*cfg.KVHeads + kh
			st := l.stamp[h]
			for i := 0; i < l.comp.Kept(layer, kh); i++ {
				st[l.comp.Pos(layer, kh, i)] = l.step
			}
			for _, p := range evicted[h] {
				st[p] = l.step
			}
		}
	}
}

func (l *lossShadow) begin() { clear(l.loss) }

func (l *lossShadow) end() float64 {
	var sum float64
	for _, v := range l.loss {
		sum += v
	}
	return sum / float64(len(l.loss))
}

// Attention implements model.AttentionObserver for the full stream.
func (l *lossShadow) Attention(_, layer, kvHead, _ int, probs []float32, groups, limit int) {
	h := layer*l.kvHeads + kvHead
	st := l.stamp[h]
	var kept float64
	for j := 0; j < limit; j++ {
		var a float64
		for g := 0; g < groups; g++ {
			a += float64(probs[g*limit+j])
		}
		if st[l.full.Pos(layer, kvHead, j)] == l.step {
			kept += a / float64(groups)
		}
	}
	l.loss[h] = math.Max(0, 1-kept)
}
