package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
)

// longPrompt is about 480 tokens of stories260K's 512: prefill is as long
// as it gets while leaving room to generate.
var longPrompt = strings.Repeat("Once upon a time ", 118)

// idle waits until no session runs and the KV pool holds nothing in use.
func idle(t *testing.T, s *Server, d time.Duration) {
	t.Helper()
	e := s.Engine()
	waitFor(t, "sessions to end and the KV pool to empty", d, func() bool {
		return s.sessions.Load() == 0 && e.KVPool.InUseBytes() == 0
	})
}

// TestWSFaultsDuringRun interrupts runs at each stage — queued/prefill,
// decode, and a compare run — by cancel frame and by disconnect. Each
// interrupted run must stop (far short of its max_tokens), end with
// "cancelled" when the connection survives, and give back its slot, its KV
// blocks and its goroutines promptly (the time is logged; the limit is
// generous because CI machines stall).
func TestWSFaultsDuringRun(t *testing.T) {
	for _, stage := range []string{"prefill", "decode", "compare"} {
		for _, how := range []string{"cancel", "disconnect"} {
			t.Run(stage+"/"+how, func(t *testing.T) {
				s, ts := newTestServer(t, Config{Parallel: 2})
				runtime.GC()
				baseG := runtime.NumGoroutine()
				c := dialWS(t, ts, nil)
				readFrame(t, c) // hello
				g := shared.Generate{ID: "r", Prompt: "Once upon a time", Temperature: shared.Ptr(0.0), KV: &shared.KV{Mode: "fastgen"}}
				if stage == "prefill" {
					g.Prompt = longPrompt
				}
				g.Compare = stage == "compare"
				writeFrame(t, c, g)
				// Interrupt at the first progress frame of prefill, or
				// after the first token (of both streams when comparing).
				seen := map[string]bool{}
				for stop := false; !stop; {
					switch f := readFrame(t, c).(type) {
					case *shared.Progress:
						stop = stage == "prefill"
					case *shared.Token:
						seen[f.Stream] = true
						stop = len(seen) == len(g.Streams())
					case *shared.Done, *shared.Error:
						t.Fatalf("run ended before it could be interrupted: %#v", f)
					}
				}
				start := time.Now()
				if how == "disconnect" {
					c.CloseNow()
				} else {
					writeFrame(t, c, shared.Cancel{ID: "r"})
					dones, tokens := 0, 0
					for dones < len(g.Streams()) {
						switch f := readFrame(t, c).(type) {
						case *shared.Token:
							tokens++
						case *shared.Done:
							dones++
							if f.FinishReason != shared.FinishCancelled {
								t.Fatalf("finish reason %q", f.FinishReason)
							}
						case *shared.Error:
							t.Fatalf("error frame: %#v", f)
						}
					}
					// Tokens already queued or in flight when the cancel
					// lands still arrive (hundreds at stories260K's speed);
					// what proves the stop is that every stream ends
					// "cancelled" long before its room of ~500 tokens.
					t.Logf("%d tokens arrived after the cancel", tokens)
					// The connection is still usable.
					writeFrame(t, c, shared.Ping{})
					if _, ok := readFrame(t, c).(*shared.Pong); !ok {
						t.Fatal("no pong after a cancel")
					}
				}
				idle(t, s, 10*time.Second)
				t.Logf("idle %v after the %s", time.Since(start), how)
				c.CloseNow()
				ts.CloseClientConnections()
				settle(t, baseG)
			})
		}
	}
}

// TestSlowConsumerDoesNotSlowOthers: a client that stops reading is cut
// off when its send queue fills, while another client's run completes at
// about its usual speed.
func TestSlowConsumerDoesNotSlowOthers(t *testing.T) {
	// Small socket buffers, so a client that stops reading fills the send
	// queue in a few thousand frames instead of megabytes later. The queue
	// holds the reading client's whole run (400 frames): a reader slower
	// than the model may fall that far behind and still keep up.
	s := New(Config{Parallel: 6, Queue: -1, MaxRunsPerConn: 4, SendQueue: 1024, DisableWeb: true, Logger: quietLogger()})
	s.SetEngine(testEngine(t), "stories260K")
	ts := httptest.NewUnstartedServer(s)
	ts.Listener = smallBufListener{ts.Listener}
	ts.Start()
	defer ts.Close()
	run := func() time.Duration {
		c := dialWS(t, ts, nil)
		readFrame(t, c)
		start := time.Now()
		writeFrame(t, c, shared.Generate{ID: "fast", Prompt: "Once upon a time", MaxTokens: 200, Temperature: shared.Ptr(0.0), KV: &shared.KV{Mode: "full"}})
		n := 0
		for {
			f := readFrame(t, c)
			if _, ok := f.(*shared.Token); ok {
				n++
			}
			if e, ok := f.(*shared.Error); ok {
				t.Fatalf("fast client refused: %s: %s", e.Code, e.Message)
			}
			if d, ok := f.(*shared.Done); ok {
				if d.FinishReason != shared.FinishLength || n != 200 {
					t.Fatalf("fast client: %q after %d tokens", d.FinishReason, n)
				}
				break
			}
		}
		c.CloseNow()
		return time.Since(start)
	}
	alone := run()

	slow := dialWS(t, ts, nil)
	readFrame(t, slow)
	// The stalled client never reads again, but keeps sending compare runs
	// until the server cuts it off. The per-connection cap holds it to four
	// of the six slots, whatever the timing, so the other client always
	// finds room; its refusals fill its send queue sooner.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < 10_000 && testutilCounter(s) == 0; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			b, _ := shared.Encode(shared.Generate{ID: fmt.Sprint("slow", i), Prompt: "Once upon a time", Compare: true, Temperature: shared.Ptr(0.0)})
			if slow.Write(context.Background(), websocket.MessageBinary, b) != nil {
				return
			}
		}
	}()
	waitFor(t, "the stalled client's runs", 5*time.Second, func() bool { return s.sessions.Load() >= 3 })
	shared := run()
	t.Logf("fast client: %v alone, %v beside a stalled client", alone, shared)
	if shared > 10*alone+2*time.Second {
		t.Fatalf("a stalled client slowed another from %v to %v", alone, shared)
	}
	waitFor(t, "the stalled client to be cut off", 30*time.Second, func() bool { return testutilCounter(s) > 0 })
	idle(t, s, 5*time.Second)
}

type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// rawMsgpackDeep is a generate frame whose messages field nests arrays n
// deep.
func rawMsgpackDeep(n int) []byte {
	b := rawMsgpack("type", "generate", "id", "deep")
	b[0]++ // one more map entry
	b = append(b, 0xa8)
	b = append(b, "messages"...)
	for range n {
		b = append(b, 0x91) // fixarray of 1
	}
	return append(b, 0xc0)
}

// TestWSMalformedInput: each bad message gets an error frame (or, when too
// big, a 1009 close); the connection stays usable where it is not closed.
func TestWSMalformedInput(t *testing.T) {
	_, ts := newTestServer(t, Config{MaxTokensCap: 300})
	hugeArray := append(rawMsgpack("type", "generate", "id", "h"), 0xa8)
	hugeArray[0]++
	hugeArray = append(append(hugeArray, "messages"...), 0xdd, 0xff, 0xff, 0xff, 0xff)
	cases := []struct {
		name string
		data []byte
		code string // "" = any error code; "ok" = the run completes
	}{
		{"empty", nil, shared.CodeBadRequest},
		{"garbage", []byte{0xc1, 0xff, 0x00, 0x13}, shared.CodeBadRequest},
		{"truncated map", rawMsgpack("type", "generate", "id", "x")[:7], shared.CodeBadRequest},
		{"deeply nested", rawMsgpackDeep(100_000), shared.CodeBadRequest},
		{"huge array header", hugeArray, shared.CodeBadRequest},
		{"type is a number", rawMsgpack("type", 3), shared.CodeBadRequest},
		{"max_tokens 1e9", mustEncode(t, shared.Generate{ID: "m", Prompt: "hi", MaxTokens: 1_000_000_000}), shared.CodeTooLong},
		{"prompt longer than the context", mustEncode(t, shared.Generate{ID: "p", Prompt: strings.Repeat(longPrompt, 2)}), shared.CodeTooLong},
		{"chat longer than the context", mustEncode(t, shared.Generate{ID: "c", Messages: []shared.Message{
			{Role: "user", Content: longPrompt}, {Role: "assistant", Content: "ok"}, {Role: "user", Content: longPrompt}}}), shared.CodeTooLong},
		{"invalid UTF-8 prompt", mustEncode(t, shared.Generate{ID: "u", Prompt: "Once \xff\xfe upon \xc3(", MaxTokens: 3}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, ts, nil)
			readFrame(t, c)
			if err := c.Write(context.Background(), websocket.MessageBinary, tc.data); err != nil {
				t.Fatal(err)
			}
			f := readFrame(t, c)
			if tc.code == "" {
				// Either refused clearly, or run: the tokenizer takes any bytes.
				if e, ok := f.(*shared.Error); ok {
					if e.Code != shared.CodeBadRequest || e.Message == "" {
						t.Fatalf("unclear refusal %#v", e)
					}
				} else {
					for {
						if d, ok := f.(*shared.Done); ok {
							t.Logf("ran: %s", d.FinishReason)
							break
						}
						if e, ok := f.(*shared.Error); ok {
							t.Fatalf("error during the run: %#v", e)
						}
						f = readFrame(t, c)
					}
				}
			} else {
				e, ok := f.(*shared.Error)
				if !ok || e.Code != tc.code || e.Message == "" {
					t.Fatalf("got %#v, want an error frame with code %s", f, tc.code)
				}
				t.Logf("%s: %s", e.Code, e.Message)
			}
			writeFrame(t, c, shared.Ping{})
			if _, ok := readFrame(t, c).(*shared.Pong); !ok {
				t.Fatal("connection unusable after malformed input")
			}
		})
	}
}

func mustEncode(t *testing.T, f shared.Frame) []byte {
	t.Helper()
	b, err := shared.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHTTPMalformedInput: the OpenAI routes answer every bad body with a
// 4xx OpenAI error and keep serving.
func TestHTTPMalformedInput(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	chat := "/v1/chat/completions"
	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"not json", chat, "\x82\xa4type\xa4ping", 400, "bad_request"},
		{"wrong field type", chat, `{"messages":"hi"}`, 400, "bad_request"},
		{"deeply nested", chat, strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000), 400, "bad_request"},
		{"body over 1 MiB", chat, `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 2<<20) + `"}]}`, 413, "request_too_large"},
		{"prompt longer than the context", "/v1/completions", `{"prompt":"` + strings.Repeat(longPrompt, 2) + `"}`, 400, "context_length_exceeded"},
		{"chat longer than the context", chat, `{"messages":[{"role":"user","content":"` + longPrompt + `"},{"role":"assistant","content":"ok"},{"role":"user","content":"` + longPrompt + `"}]}`, 400, "context_length_exceeded"},
		{"negative max_tokens", "/v1/completions", `{"prompt":"a","max_tokens":-1}`, 400, "bad_request"},
		{"max_tokens overflows int", "/v1/completions", `{"prompt":"a","max_tokens":1e30}`, 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(ts.URL+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error apiError `json:"error"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Fatalf("status %d, %+v (%v); want %d %s", resp.StatusCode, body.Error, err, tc.status, tc.code)
			}
		})
	}
	// Accepted oddities: invalid UTF-8 (JSON decoding makes it U+FFFD) and
	// max_tokens far beyond the context, which stops at the context's end.
	for _, body := range []string{`{"prompt":"Once ` + "\xff\xfe" + ` upon","max_tokens":2,"temperature":0}`, `{"prompt":"Once upon a time","max_tokens":1000000000,"temperature":0}`} {
		resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage oaUsage `json:"usage"`
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		err = json.Unmarshal(raw, &out)
		if err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 || out.Usage.TotalTokens > 512 {
			t.Fatalf("%q: %d %s %v", body, resp.StatusCode, raw, err)
		}
		t.Logf("%.40q: finish %s, %d tokens in all", body, out.Choices[0].FinishReason, out.Usage.TotalTokens)
	}
}

// TestContextOverflowLongChat grows a chat turn by turn, as a client that
// resends the whole history does: turns are answered until the history no
// longer fits, which is then refused with context_length_exceeded and a
// message naming the sizes — never a crash, never a silent truncation.
func TestContextOverflowLongChat(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	msgs := []map[string]string{}
	for turn := 0; turn < 50; turn++ {
		msgs = append(msgs, map[string]string{"role": "user", "content": "Tell me more about the little dog and the ball in the park."})
		b, _ := json.Marshal(map[string]any{"messages": msgs, "max_tokens": 40, "temperature": 0})
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest {
			var e struct {
				Error apiError `json:"error"`
			}
			json.Unmarshal(raw, &e)
			if e.Error.Code != "context_length_exceeded" || !strings.Contains(e.Error.Message, "context") {
				t.Fatalf("turn %d: %s", turn, raw)
			}
			t.Logf("turn %d refused: %s", turn, e.Error.Message)
			return
		}
		var out struct {
			Choices []struct {
				Message      struct{ Content string } `json:"message"`
				FinishReason string                   `json:"finish_reason"`
			} `json:"choices"`
			Usage oaUsage `json:"usage"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("turn %d: %d %s", turn, resp.StatusCode, raw)
		}
		if out.Usage.TotalTokens > 512 {
			t.Fatalf("turn %d used %d tokens of a 512 context", turn, out.Usage.TotalTokens)
		}
		msgs = append(msgs, map[string]string{"role": "assistant", "content": out.Choices[0].Message.Content})
	}
	t.Fatal("50 turns never overflowed a 512-token context")
}

// TestShutdownDrains: on Shutdown, running and queued sessions finish
// normally inside the deadline while new work is refused with 503
// shutting_down; their last frames reach the client before the connection
// is closed with 1001 going away.
func TestShutdownDrains(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 1, MaxRunsPerConn: 8})
	c := dialWS(t, ts, nil)
	readFrame(t, c)
	const runs = 8
	for i := range runs {
		writeFrame(t, c, shared.Generate{ID: fmt.Sprint("d", i), Prompt: "Once upon a time", MaxTokens: 300, Temperature: shared.Ptr(0.0), KV: &shared.KV{Mode: "full"}})
	}
	tokens := map[string]int{}
	for {
		if f, ok := readFrame(t, c).(*shared.Token); ok {
			tokens[f.ID]++
			break
		}
	}
	// All admitted (running or queued) before the drain begins; a generate
	// that reaches admission after it is refused ("shutting down").
	waitFor(t, "every run admitted", 5*time.Second, func() bool { return s.sessions.Load() == runs })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	waitFor(t, "draining", 10*time.Second, s.draining.Load)
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "shutting_down") {
		t.Fatalf("new request while draining: %d %s", resp.StatusCode, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{Subprotocols: []string{shared.Protocol}}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("new WebSocket while draining: %v %v", resp, err)
	}
	finished := 0
	for finished < runs {
		switch f := readFrame(t, c).(type) {
		case *shared.Token:
			tokens[f.ID]++
		case *shared.Done:
			if f.FinishReason != shared.FinishLength || tokens[f.ID] != 300 {
				t.Fatalf("drained run %s ended %q after %d tokens", f.ID, f.FinishReason, tokens[f.ID])
			}
			finished++
		case *shared.Error:
			t.Fatalf("error during the drain: %#v", f)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s.Engine().KVPool.InUseBytes() != 0 {
		t.Fatal("KV blocks in use after the drain")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after the drain: %v, want a 1001 close", err)
	}
}
