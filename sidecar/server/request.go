package server

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
)

// reqError is a refused or failed request, carrying both its HTTP status and
// its wire error code so every API reports the same problem the same way.
type reqError struct {
	Status int
	Code   string // shared.Code*
	Param  string
	Msg    string
}

func (e *reqError) Error() string { return e.Msg }

func badRequest(param, format string, args ...any) *reqError {
	return &reqError{Status: 400, Code: shared.CodeBadRequest, Param: param, Msg: fmt.Sprintf(format, args...)}
}

func tooLong(param, format string, args ...any) *reqError {
	return &reqError{Status: 400, Code: shared.CodeTooLong, Param: param, Msg: fmt.Sprintf(format, args...)}
}

// prepare checks a request against the server's caps before it takes a
// slot, so a refused request costs no queue time. It fills in the default
// max_tokens and returns the prompt length.
func (s *Server) prepare(e *engine.Engine, req *engine.Request) (int, *reqError) {
	if err := req.Sampler.Validate(); err != nil {
		return 0, badRequest("", "%v", err)
	}
	if err := req.KV.Validate(); err != nil {
		return 0, badRequest("kv_compression", "%v", err)
	}
	if req.Compare != nil {
		if err := req.Compare.Validate(); err != nil {
			return 0, badRequest("compare_with", "%v", err)
		}
	}
	if req.MaxTokens < 0 {
		return 0, badRequest("max_tokens", "max_tokens must be ≥ 0")
	}
	if c := s.cfg.MaxTokensCap; c > 0 {
		if req.MaxTokens > c {
			return 0, tooLong("max_tokens", "max_tokens is %d; this server allows at most %d per request (--max-tokens-cap)", req.MaxTokens, c)
		}
		if req.MaxTokens == 0 {
			req.MaxTokens = c
		}
	}
	prompt, err := e.Tokenize(req)
	if err != nil {
		return 0, badRequest("prompt", "%v", err)
	}
	n := len(prompt)
	ctxLen := e.Model.Config.Ctx
	if c := s.cfg.MaxPromptTokens; c > 0 && n > c {
		return 0, tooLong("prompt", "the prompt is %d tokens; this server accepts at most %d (--max-prompt-tokens)", n, c)
	}
	if n >= ctxLen {
		return 0, tooLong("prompt", "the prompt is %d tokens; the model's context is %d, leaving no room to generate", n, ctxLen)
	}
	req.MaxPromptTokens = s.cfg.MaxPromptTokens
	if c := s.cfg.MaxKVBytes; c > 0 {
		need := s.kvBytesBound(e, n, req)
		if need > c {
			return 0, tooLong("max_tokens", "this request may need up to %d bytes of KV cache (%d prompt + %d new tokens, %d stream(s), uncompressed); the cap is %d bytes (--max-kv-bytes): lower max_tokens or shorten the prompt",
				need, n, maxNew(req.MaxTokens, n, ctxLen), streams(req), c)
		}
	}
	return n, nil
}

func maxNew(maxTokens, prompt, ctxLen int) int {
	if maxTokens == 0 || maxTokens > ctxLen-prompt {
		return ctxLen - prompt
	}
	return maxTokens
}

func streams(req *engine.Request) int {
	if req.Compare != nil {
		return 2
	}
	return 1
}

// kvBytesBound is the cache a request holds if nothing is evicted: the cap
// must hold whatever the profiler decides, so it is checked against the
// worst case, rounded up to whole blocks per head.
func (s *Server) kvBytesBound(e *engine.Engine, prompt int, req *engine.Request) int64 {
	c := e.Model.Config
	t := prompt + maxNew(req.MaxTokens, prompt, c.Ctx)
	be := e.KVPool.BlockEntries()
	blocks := int64(math.Ceil(float64(t) / float64(be)))
	return blocks * e.KVPool.BlockBytes() * int64(c.Layers*c.KVHeads) * int64(streams(req))
}

// classify maps an error from admission or the engine to a reqError.
func classify(err error) *reqError {
	var re *reqError
	var bad *engine.BadRequestError
	switch {
	case errors.As(err, &re):
		return re
	case errors.Is(err, errBusy):
		return &reqError{Status: 429, Code: shared.CodeBusy, Msg: err.Error()}
	case errors.Is(err, errDraining):
		return &reqError{Status: 503, Code: shared.CodeBusy, Msg: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &reqError{Status: 499, Code: shared.CodeCancelled, Msg: "the request was cancelled"}
	case errors.Is(err, engine.ErrContextFull):
		return &reqError{Status: 400, Code: shared.CodeTooLong, Param: "prompt", Msg: err.Error()}
	case errors.As(err, &bad):
		return &reqError{Status: 400, Code: shared.CodeBadRequest, Msg: bad.Msg}
	}
	return &reqError{Status: 500, Code: shared.CodeInternal, Msg: err.Error()}
}
