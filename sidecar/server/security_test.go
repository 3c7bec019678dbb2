package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
)

// TestAPIKeyEveryRoute: with --api-key, every route (UI pages and assets
// included) refuses a missing or wrong key however it is passed, and
// /health stays open.
func TestAPIKeyEveryRoute(t *testing.T) {
	e := testEngine(t)
	s := New(Config{APIKey: "s3cret", Logger: quietLogger()}) // with the web UI
	s.SetEngine(e, "stories260K")
	ts := httptest.NewServer(s)
	defer ts.Close()
	routes := []struct{ method, path, body string }{
		{"GET", "/", ""}, {"GET", "/compare", ""}, {"GET", "/classroom", ""}, {"GET", "/static/app.wasm", ""},
		{"GET", "/static/wasm_exec.js", ""}, {"GET", "/no/such/page", ""},
		{"GET", "/metrics", ""}, {"GET", "/v1/models", ""}, {"GET", "/props", ""}, {"GET", "/v1/ws", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],"max_tokens":1}`},
		{"POST", "/v1/completions", `{"prompt":"a","max_tokens":1}`},
		{"POST", "/tokenize", `{"content":"a"}`}, {"POST", "/detokenize", `{"tokens":[1]}`},
	}
	for _, rt := range routes {
		for _, how := range []string{"none", "bearer-wrong", "query-wrong", "cookie-wrong", "basic", "bearer-prefix"} {
			req, _ := http.NewRequest(rt.method, ts.URL+rt.path, strings.NewReader(rt.body))
			switch how {
			case "bearer-wrong":
				req.Header.Set("Authorization", "Bearer s3cre")
			case "query-wrong":
				req.URL.RawQuery = "api_key=s3cretX"
			case "cookie-wrong":
				req.AddCookie(&http.Cookie{Name: apiKeyCookie, Value: "nope"})
			case "basic":
				req.SetBasicAuth("s3cret", "s3cret")
			case "bearer-prefix":
				req.Header.Set("Authorization", "s3cret")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "invalid_api_key") {
				t.Errorf("%s %s with %s key: %d %.80s", rt.method, rt.path, how, resp.StatusCode, b)
			}
		}
	}
	// The WebSocket with a wrong key in each of its three places.
	for _, d := range []struct {
		url string
		o   websocketDial
	}{
		{wsURL(ts), websocketDial{header: "Bearer wrong"}},
		{wsURL(ts), websocketDial{proto: keySubprotocol + "wrong"}},
		{wsURL(ts) + "?api_key=wrong", websocketDial{}},
	} {
		if err := d.o.dial(d.url); err == nil {
			t.Errorf("ws with a wrong key accepted: %+v %s", d.o, d.url)
		}
	}
	resp, err := http.Get(ts.URL + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/health: %v %v", resp, err)
	}
	resp.Body.Close()
	// The right key opens the UI, and a page opened with ?api_key= sets the
	// cookie its assets then use.
	req, _ := http.NewRequest("GET", ts.URL+"/static/wasm_exec.js", nil)
	req.AddCookie(&http.Cookie{Name: apiKeyCookie, Value: "s3cret"})
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("asset with the key cookie: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestNoFileEscapes: the UI is served from the embedded assets only, so no
// path — dot segments, encoded or doubled slashes — reaches the file system.
func TestNoFileEscapes(t *testing.T) {
	e := testEngine(t)
	s := New(Config{Logger: quietLogger()})
	s.SetEngine(e, "stories260K")
	ts := httptest.NewServer(s)
	defer ts.Close()
	paths := []string{
		"/static/../../../../etc/passwd", "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/go.mod",
		"//etc/passwd", "/static//etc/passwd", "/../go.mod", "/static/../server.go", "/static/..\\..\\go.mod",
		"/static/%00", "/static/app.wasm/../../../go.mod", "/v1/../../etc/passwd", "/static/./../../sidecar/server/server.go",
	}
	for _, p := range paths {
		// A raw request line, so no client cleans the path first.
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: %v", p, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		conn.Close()
		body := string(b)
		if strings.Contains(body, "root:") || strings.Contains(body, "module github.com") || strings.Contains(body, "package server") {
			t.Errorf("%s: served a file from disk (%d)", p, resp.StatusCode)
		}
		t.Logf("%s → %d", p, resp.StatusCode)
	}
}

// TestModelNeverFromRequest: a request's "model" is echoed but never opened;
// every request is served by the configured model.
func TestModelNeverFromRequest(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	text := func(model string) string {
		b, _ := json.Marshal(map[string]any{"model": model, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
		resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Model   string `json:"model"`
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
			t.Fatalf("model %q: %d %v", model, resp.StatusCode, err)
		}
		return out.Choices[0].Text
	}
	want := text("stories260K")
	for _, m := range []string{"/etc/passwd", "../../../../etc/shadow", "/work/shared/models/stories260K.bin", "file:///etc/passwd", "http://127.0.0.1:1/x.gguf", strings.Repeat("a", 10000)} {
		if got := text(m); got != want {
			t.Errorf("model %.40q changed the output: %q vs %q", m, got, want)
		}
	}
	// /v1/models names only the configured model.
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"stories260K"`) || strings.Contains(string(b), "passwd") {
		t.Fatalf("/v1/models: %s", b)
	}
}

// TestHeaderAndBodyLimits: oversized headers (Go's 1 MiB default, which
// fastgen serve keeps) and bodies are refused without harming the server.
func TestHeaderAndBodyLimits(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxBodyBytes: 64 << 10})
	req, _ := http.NewRequest("GET", ts.URL+"/health", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2<<20))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("2 MiB header: %d", resp.StatusCode)
		}
	}
	for _, path := range []string{"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"} {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(`{"prompt":"`+strings.Repeat("a", 100<<10)+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: 100 KiB body over a 64 KiB limit: %d %s", path, resp.StatusCode, b)
		}
	}
	resp, err := http.Get(ts.URL + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server unhealthy after the limits: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestWSControlRateLimit: ping and cancel floods are limited per
// connection; the first frame over the limit gets a rate_limited error
// frame, later ones are dropped, the connection recovers as the bucket
// refills, and a flood that does not stop closes it with 1008.
func TestWSControlRateLimit(t *testing.T) {
	// A slow refill (one token per 500 ms), so a CI machine that stalls
	// while the flood is read cannot refill the bucket mid-flood.
	_, ts := newTestServer(t, Config{ControlRate: 2, ControlBurst: 10, MaxControlDrops: 50})
	c := dialWS(t, ts, nil)
	readFrame(t, c)
	for range 30 {
		writeFrame(t, c, shared.Ping{})
	}
	pongs, limited := 0, 0
	for pongs+limited < 11 {
		switch f := readFrame(t, c).(type) {
		case *shared.Pong:
			pongs++
		case *shared.Error:
			if f.Code != CodeRateLimited || !strings.Contains(f.Message, "per second") {
				t.Fatalf("error frame %#v", f)
			}
			limited++
		}
	}
	if limited != 1 || pongs < 10 {
		t.Fatalf("%d pongs, %d rate_limited errors", pongs, limited)
	}
	// Nothing else is queued: the other frames were dropped silently.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, _, err := c.Read(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("extra frame or close after the flood: %v", err)
	}
	// The connection is still open (the read deadline above closes it in
	// coder/websocket, so use a fresh one): after a pause the bucket refills.
	c2 := dialWS(t, ts, nil)
	readFrame(t, c2)
	for range 12 {
		writeFrame(t, c2, shared.Cancel{ID: "x"})
	}
	notFound := 0
	for notFound < 10 {
		if e, ok := readFrame(t, c2).(*shared.Error); ok && e.Code == shared.CodeNotFound {
			notFound++
		}
	}
	time.Sleep(600 * time.Millisecond)
	writeFrame(t, c2, shared.Ping{})
	for {
		if _, ok := readFrame(t, c2).(*shared.Pong); ok {
			break
		}
	}
	// Generate frames are not control frames: admission bounds them.
	writeFrame(t, c2, shared.Generate{ID: "g", Prompt: "Once", MaxTokens: 2, Temperature: shared.Ptr(0.0)})
	for {
		if _, ok := readFrame(t, c2).(*shared.Done); ok {
			break
		}
	}
	// A flood that never stops ends the connection.
	c3 := dialWS(t, ts, nil)
	readFrame(t, c3)
	b, _ := shared.Encode(shared.Ping{})
	for range 200 {
		if c3.Write(context.Background(), websocket.MessageBinary, b) != nil {
			break
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c3.Read(ctx)
		cancel()
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Fatalf("flood ended with %v, want 1008", err)
			}
			break
		}
	}
}

// TestCORS: pages on an allowed origin (and the server's own) may call the
// HTTP API, preflight included and answered before auth; a page anywhere
// else is refused outright, not merely hidden the answer; clients that
// send no Origin are unaffected.
func TestCORS(t *testing.T) {
	_, ts := newTestServer(t, Config{APIKey: "k3y", AllowedOrigins: []string{"*.example.org"}})
	self := ts.URL
	const body = `{"prompt":"Once","max_tokens":1,"temperature":0}`
	for _, c := range []struct {
		name, method, origin, key string
		status                    int
		allowOrigin               string // the Access-Control-Allow-Origin expected ("" = none)
	}{
		{"preflight, allowed", "OPTIONS", "https://app.example.org", "", 204, "https://app.example.org"},
		{"preflight, foreign", "OPTIONS", "https://evil.test", "", 403, ""},
		{"post, allowed", "POST", "https://app.example.org", "k3y", 200, "https://app.example.org"},
		{"post, allowed, no key", "POST", "https://app.example.org", "", 401, "https://app.example.org"},
		{"post, same origin", "POST", self, "k3y", 200, self},
		{"post, foreign", "POST", "https://evil.test", "k3y", 403, ""},
		{"post, malformed origin", "POST", "null", "k3y", 403, ""},
		{"post, no origin", "POST", "", "k3y", 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, ts.URL+"/v1/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			if c.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			if c.key != "" {
				req.Header.Set("Authorization", "Bearer "+c.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, c.allowOrigin)
			}
			if c.status == 204 && !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Errorf("preflight allows headers %q", resp.Header.Get("Access-Control-Allow-Headers"))
			}
			if c.status == 403 && !strings.Contains(string(b), "--allowed-origins") {
				t.Errorf("refusal does not say how to allow the page: %s", b)
			}
		})
	}
}
