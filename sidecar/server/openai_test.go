package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/tokenizer"
)

// greedy is the engine's own greedy output for a request, with a full
// cache: the reference every API must reproduce.
func greedy(t *testing.T, e *engine.Engine, req engine.Request) engine.Result {
	t.Helper()
	req.KV = engine.KVOptions{Mode: kvcache.ModeFull}
	res, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestOpenAISDK(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 2, APIKey: "sk-test"})
	e := s.Engine()
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := context.Background()

	wantComp := greedy(t, e, engine.Request{Prompt: "Once upon a time", MaxTokens: 60})
	if got := wantComp.Tokens; len(got) != 60 || got[0] != onceUponGreedy[0] || got[59] != onceUponGreedy[59] {
		t.Fatalf("engine greedy output differs from the README's: %v", got)
	}
	msgs := []tokenizer.Message{{Role: "user", Content: "Once upon a time"}}
	wantChat := greedy(t, e, engine.Request{Messages: msgs, MaxTokens: 60})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil || len(page.Data) != 1 || page.Data[0].ID != "stories260K" {
			t.Fatalf("models: %v %+v", err, page)
		}
	})
	chatParams := openai.ChatCompletionNewParams{Model: "stories260K", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Once upon a time")},
		MaxTokens: openai.Int(60), Temperature: openai.Float(0)}
	t.Run("chat", func(t *testing.T) {
		r, err := client.Chat.Completions.New(ctx, chatParams)
		if err != nil {
			t.Fatal(err)
		}
		if r.Choices[0].Message.Content != wantChat.Text || r.Choices[0].FinishReason != "length" || r.Usage.CompletionTokens != 60 {
			t.Fatalf("chat: %q (%s, %d tokens), want %q", r.Choices[0].Message.Content, r.Choices[0].FinishReason, r.Usage.CompletionTokens, wantChat.Text)
		}
	})
	t.Run("chat stream", func(t *testing.T) {
		p := chatParams
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		st := client.Chat.Completions.NewStreaming(ctx, p)
		var b strings.Builder
		var finish string
		var usage int64
		for st.Next() {
			ch := st.Current()
			if len(ch.Choices) > 0 {
				b.WriteString(ch.Choices[0].Delta.Content)
				if ch.Choices[0].FinishReason != "" {
					finish = ch.Choices[0].FinishReason
				}
			}
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage.CompletionTokens
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if b.String() != wantChat.Text || finish != "length" || usage != 60 {
			t.Fatalf("stream: %q finish %q usage %d, want %q", b.String(), finish, usage, wantChat.Text)
		}
	})
	compParams := openai.CompletionNewParams{Model: "stories260K", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(60), Temperature: openai.Float(0)}
	t.Run("completion", func(t *testing.T) {
		p := compParams
		p.Logprobs = openai.Int(2)
		r, err := client.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Choices[0].Text != wantComp.Text {
			t.Fatalf("completion %q, want %q", r.Choices[0].Text, wantComp.Text)
		}
		if n := len(r.Choices[0].Logprobs.Tokens); n != 60 {
			t.Fatalf("%d logprob tokens", n)
		}
	})
	t.Run("completion stream", func(t *testing.T) {
		st := client.Completions.NewStreaming(ctx, compParams)
		var b strings.Builder
		for st.Next() {
			if ch := st.Current(); len(ch.Choices) > 0 {
				b.WriteString(ch.Choices[0].Text)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if b.String() != wantComp.Text {
			t.Fatalf("stream %q, want %q", b.String(), wantComp.Text)
		}
	})
	t.Run("stop", func(t *testing.T) {
		p := compParams
		p.Stop = openai.CompletionNewParamsStopUnion{OfString: openai.String("Lily")}
		want := wantComp.Text[:strings.Index(wantComp.Text, "Lily")]
		r, err := client.Completions.New(ctx, p)
		if err != nil || r.Choices[0].Text != want || r.Choices[0].FinishReason != "stop" {
			t.Fatalf("stop: %v %q (%s), want %q", err, r.Choices[0].Text, r.Choices[0].FinishReason, want)
		}
		st := client.Completions.NewStreaming(ctx, p)
		var b strings.Builder
		for st.Next() {
			if ch := st.Current(); len(ch.Choices) > 0 {
				b.WriteString(ch.Choices[0].Text)
			}
		}
		if b.String() != want {
			t.Fatalf("streamed with stop: %q, want %q", b.String(), want)
		}
	})
}

func post(t *testing.T, url, key, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp, out
}

func TestOpenAIErrorsAndExtensions(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxTokensCap: 100, MaxBodyBytes: 4096})
	cases := []struct {
		name   string
		path   string
		body   string
		status int
		param  string
	}{
		{"bad json", "/v1/chat/completions", `{"messages":`, 400, ""},
		{"wrong type", "/v1/chat/completions", `{"messages":"hi"}`, 400, "messages"},
		{"no messages", "/v1/chat/completions", `{"model":"x"}`, 400, "messages"},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"tool","content":"x"}]}`, 400, "messages[0].role"},
		{"temperature", "/v1/completions", `{"prompt":"a","temperature":3}`, 400, "temperature"},
		{"n", "/v1/completions", `{"prompt":"a","n":2}`, 400, "n"},
		{"cap", "/v1/completions", `{"prompt":"a","max_tokens":101}`, 400, "max_tokens"},
		{"kv mode", "/v1/completions", `{"prompt":"a","kv_compression":{"mode":"zip"}}`, 400, "kv_compression"},
		{"kv budget", "/v1/completions", `{"prompt":"a","kv_compression":{"mode":"h2o","budget":2}}`, 400, "kv_compression"},
		{"kv local ratio", "/v1/completions", `{"prompt":"a","kv_compression":{"local_ratio":-1}}`, 400, "kv_compression"},
		{"too large", "/v1/completions", `{"prompt":"` + strings.Repeat("a", 5000) + `"}`, 413, ""},
		{"unknown fields ignored", "/v1/completions", `{"prompt":"a","max_tokens":2,"frobnicate":{"x":1},"user":"u"}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := post(t, ts.URL+tc.path, "", tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tc.status, out)
			}
			if tc.status == 200 {
				return
			}
			e, _ := out["error"].(map[string]any)
			if e == nil || e["message"] == "" || e["type"] == nil {
				t.Fatalf("not an OpenAI error: %v", out)
			}
			if p, _ := e["param"].(string); p != tc.param {
				t.Fatalf("param %q, want %q", p, tc.param)
			}
		})
	}
	t.Run("fastgen block only when asked", func(t *testing.T) {
		_, plain := post(t, ts.URL+"/v1/completions", "", `{"prompt":"Once upon a time","max_tokens":5,"temperature":0}`)
		if _, ok := plain["fastgen"]; ok {
			t.Fatal("fastgen block without kv_compression")
		}
		_, fg := post(t, ts.URL+"/v1/completions", "", `{"prompt":"Once upon a time","max_tokens":5,"temperature":0,"kv_compression":{"mode":"fastgen","threshold":0.95}}`)
		b, ok := fg["fastgen"].(map[string]any)
		if !ok || b["mode"] != "fastgen" || b["threshold"] != 0.95 || b["kv_bytes_full"] == 0.0 {
			t.Fatalf("fastgen block: %v", fg["fastgen"])
		}
	})
	t.Run("sse headers", func(t *testing.T) {
		resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"Once","max_tokens":3,"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Accel-Buffering") != "no" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("headers %v", resp.Header)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
			t.Fatalf("no [DONE]: %q", b)
		}
	})
}

func TestHTTPDisconnectCancels(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	runtime.GC()
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(`{"prompt":"Once upon a time","stream":true,"temperature":0}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ { // first token's event
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "the session to end", 10*time.Second, func() bool { return s.sessions.Load() == 0 })
	if b := s.Engine().KVPool.InUseBytes(); b != 0 {
		t.Fatalf("KV pool in use: %d", b)
	}
	ts.CloseClientConnections()
	settle(t, base)
}

func TestAuthAndOps(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "k3y"})
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/models", ""},
		{"GET", "/metrics", ""},
		{"GET", "/props", ""},
		{"POST", "/tokenize", `{"content":"Once upon a time"}`},
		{"POST", "/detokenize", `{"tokens":[403,407]}`},
		{"POST", "/v1/completions", `{"prompt":"Once","max_tokens":1}`},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"Once"}],"max_tokens":1}`},
		{"GET", "/v1/ws", ""},
		{"GET", "/", ""},
	}
	for _, rt := range routes {
		for _, key := range []string{"", "wrong", "k3y"} {
			req, _ := http.NewRequest(rt.method, ts.URL+rt.path, strings.NewReader(rt.body))
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			denied := resp.StatusCode == http.StatusUnauthorized
			if denied != (key != "k3y") {
				t.Errorf("%s %s key %q: status %d %s", rt.method, rt.path, key, resp.StatusCode, b)
			}
		}
	}
	resp, err := http.Get(ts.URL + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/health without a key: %v %v", err, resp)
	}
	resp.Body.Close()

	// The WebSocket takes the key as a header, a subprotocol or a query.
	for name, opt := range map[string]struct {
		url string
		o   *websocketDial
	}{
		"header":      {wsURL(ts), &websocketDial{header: "Bearer k3y"}},
		"subprotocol": {wsURL(ts), &websocketDial{proto: keySubprotocol + "k3y"}},
		"query":       {wsURL(ts) + "?api_key=k3y", &websocketDial{}},
	} {
		if err := opt.o.dial(opt.url); err != nil {
			t.Errorf("ws key by %s: %v", name, err)
		}
	}
	if err := (&websocketDial{}).dial(wsURL(ts)); err == nil {
		t.Error("ws without a key accepted")
	}

	// llama.cpp shapes.
	_, tok := post(t, ts.URL+"/tokenize", "k3y", `{"content":"Once upon a time"}`)
	if got, _ := json.Marshal(tok["tokens"]); string(got) != "[403,407,261,378]" {
		t.Errorf("tokenize: %s", got)
	}
	_, det := post(t, ts.URL+"/detokenize", "k3y", `{"tokens":[403,407,261,378]}`)
	if det["content"] != " Once upon a time" && det["content"] != "Once upon a time" {
		t.Errorf("detokenize: %v", det)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer k3y")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "fastgen_kv_pool_bytes", "fastgen_kv_pool_in_use_bytes",
		"fastgen_queue_depth", "fastgen_sessions_active", "fastgen_ttft_seconds", "fastgen_heads_total", "fastgen_requests_total",
		`fastgen_build_info{goversion="go1.`} {
		if !strings.Contains(string(b), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestHealthWhileLoading(t *testing.T) {
	e := testEngine(t)
	s := New(Config{DisableWeb: true, Logger: quietLogger()})
	cases := []struct {
		path   string
		method string
		before int
	}{
		{"/health", "GET", 503},
		{"/v1/completions", "POST", 503},
		{"/v1/models", "GET", 503},
	}
	for _, tc := range cases {
		rec := doReq(s, tc.method, tc.path, `{"prompt":"a","max_tokens":1}`)
		if rec != tc.before {
			t.Errorf("%s while loading: %d, want %d", tc.path, rec, tc.before)
		}
	}
	s.SetEngine(e, "stories260K")
	if got := doReq(s, "GET", "/health", ""); got != 200 {
		t.Fatalf("/health when ready: %d", got)
	}
}
