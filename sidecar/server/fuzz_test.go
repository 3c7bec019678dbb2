package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/model"
)

// FuzzOpenAIRequest feeds arbitrary bytes through the real request path of
// both OpenAI routes up to admission: the bounded body read and JSON decode
// (readJSON), field validation (toEngine) and, when the test model is
// available, tokenization and the caps (prepare). It must never panic, and
// every refusal must be a 4xx reqError with a message.
func FuzzOpenAIRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"x","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}`,
		`{"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"logprobs":true,"top_logprobs":3,"stop":["\n","."]}`,
		`{"prompt":"Once","max_tokens":1000000000,"temperature":2,"top_p":0.5,"seed":-1,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":["a"],"logprobs":5,"n":1,"kv_compression":{"mode":"h2o","budget":0.3,"threshold":0.9,"local_ratio":0.1,"frequent_ratio":0.1}}`,
		`{"prompt":[1,2,3]}`,
		`{"prompt":"\xff\xfe invalid utf8 \xc3("}`,
		`{"model":"/etc/passwd","prompt":"a"}`,
		`{"messages":[{"role":"tool","content":5}]}`,
		`{"max_tokens":"ten"}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		`{"temperature":NaN}`,
		``,
		`null`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	// The engine is optional: without the model the fuzzer still covers
	// decoding and validation.
	var e *engine.Engine
	if dir := os.Getenv("FASTGEN_TEST_MODELS"); dir != "" {
		var err error
		e, err = engine.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, engine.Options{})
		if err != nil {
			f.Fatal(err)
		}
	}
	s := New(Config{MaxBodyBytes: 64 << 10, MaxPromptTokens: 256, MaxTokensCap: 128, MaxKVBytes: 1 << 20,
		DisableWeb: true, Logger: quietLogger()})
	f.Fuzz(func(t *testing.T, body []byte, chat bool) {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		var o oaRequest
		check := func(stage string, re *reqError) {
			if re.Status < 400 || re.Status >= 500 || re.Msg == "" || re.Code == "" {
				t.Fatalf("%s: refusal %+v is not a clear 4xx", stage, re)
			}
			writeReqError(w, re)
		}
		if re := s.readJSON(w, r, &o); re != nil {
			check("readJSON", re)
			return
		}
		req, _, re := s.toEngine(&o, chat)
		if re != nil {
			check("toEngine", re)
			return
		}
		if req.MaxTokens < 0 {
			t.Fatalf("accepted max_tokens %d", req.MaxTokens)
		}
		if e == nil {
			return
		}
		n, re := s.prepare(e, &req)
		if re != nil {
			check("prepare", re)
			return
		}
		if n >= e.Model.Config.Ctx || n > s.cfg.MaxPromptTokens || req.MaxTokens > s.cfg.MaxTokensCap || req.MaxTokens <= 0 {
			t.Fatalf("prepare accepted prompt %d tokens, max_tokens %d", n, req.MaxTokens)
		}
	})
}
