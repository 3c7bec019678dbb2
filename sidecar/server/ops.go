package server

import (
	"net/http"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/version"
)

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	e := s.Engine()
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable_error", "", "loading", "the model is still loading; retry when GET /health answers 200")
		return
	}
	c := e.Model.Config
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{map[string]any{
		"id": s.model(), "object": "model", "created": s.created, "owned_by": "fastgen",
		"meta": map[string]any{"n_ctx": c.Ctx, "n_ctx_train": c.TrainCtx, "n_vocab": c.Vocab, "n_layers": c.Layers,
			"n_heads": c.Heads, "n_kv_heads": c.KVHeads, "head_dim": c.HeadDim, "arch": c.Arch},
	}}})
}

// handleProps answers llama.cpp's GET /props shape, plus a fastgen block
// with the server's caps and cache modes.
func (s *Server) handleProps(w http.ResponseWriter, r *http.Request) {
	e := s.Engine()
	c := e.Model.Config
	nPredict := -1
	if s.cfg.MaxTokensCap > 0 {
		nPredict = s.cfg.MaxTokensCap
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"default_generation_settings": map[string]any{"n_ctx": c.Ctx,
			"params": map[string]any{"temperature": 1.0, "top_p": 1.0, "n_predict": nPredict, "seed": -1}},
		"total_slots":   s.cfg.Parallel,
		"model_path":    s.model(),
		"chat_template": e.Tok.Vocab().ChatTemplate,
		"bos_token":     e.Tok.Piece(e.Tok.BOS()),
		"eos_token":     e.Tok.Piece(e.Tok.EOS()),
		"build_info":    version.Get().String(),
		"modalities":    map[string]bool{"vision": false, "audio": false},
		"fastgen": map[string]any{"parallel": s.cfg.Parallel, "queue": s.cfg.Queue,
			"max_prompt_tokens": s.cfg.MaxPromptTokens, "max_tokens_cap": s.cfg.MaxTokensCap, "max_kv_bytes": s.cfg.MaxKVBytes,
			"kv_modes": kvcache.Modes, "threads": e.Threads()},
	})
}

// handleTokenize is llama.cpp's POST /tokenize: add_special defaults to
// false and parse_special to true, as there.
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Content      string `json:"content"`
		AddSpecial   bool   `json:"add_special"`
		ParseSpecial *bool  `json:"parse_special"`
		WithPieces   bool   `json:"with_pieces"`
	}
	if re := s.readJSON(w, r, &in); re != nil {
		writeReqError(w, re)
		return
	}
	e := s.Engine()
	parse := in.ParseSpecial == nil || *in.ParseSpecial
	ids := e.Tok.Encode(in.Content, in.AddSpecial, parse)
	if !in.WithPieces {
		if ids == nil {
			ids = []int{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": ids})
		return
	}
	type piece struct {
		ID    int    `json:"id"`
		Piece string `json:"piece"`
	}
	out := make([]piece, len(ids))
	for i, id := range ids {
		out[i] = piece{id, e.Tok.Piece(id)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Tokens []int `json:"tokens"`
	}
	if re := s.readJSON(w, r, &in); re != nil {
		writeReqError(w, re)
		return
	}
	e := s.Engine()
	n := e.Tok.Len()
	for i, id := range in.Tokens {
		if id < 0 || id >= n {
			writeReqError(w, badRequest("tokens", "tokens[%d] = %d is outside the vocabulary [0, %d)", i, id, n))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"content": e.Tok.Decode(in.Tokens)})
}
