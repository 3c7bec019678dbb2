package server

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
)

func TestWSCompareStreams(t *testing.T) {
	_, ts := newTestServer(t, Config{Parallel: 2})
	c := dialWS(t, ts, nil)
	hello, ok := readFrame(t, c).(*shared.Hello)
	if !ok || hello.Protocol != shared.Protocol || hello.Model.NLayers != 5 || hello.Model.NKVHeads != 4 {
		t.Fatalf("first frame: %#v", hello)
	}
	writeFrame(t, c, shared.Generate{ID: "r1", Prompt: "Once upon a time", MaxTokens: 60,
		Temperature: shared.Ptr(0.0), Compare: true, TopKAlternatives: 3})

	tokens := map[string][]int{}
	seen := map[string]int{}
	stats := map[string]*shared.Stats{}
	done := map[string]string{}
	for len(done) < 2 {
		f := readFrame(t, c)
		seen[f.FrameType()]++
		switch f := f.(type) {
		case *shared.Token:
			if f.Index != len(tokens[f.Stream]) {
				t.Fatalf("%s token index %d, want %d", f.Stream, f.Index, len(tokens[f.Stream]))
			}
			tokens[f.Stream] = append(tokens[f.Stream], f.Token)
			if len(f.Top) != 3 {
				t.Fatalf("token carries %d alternatives, want 3", len(f.Top))
			}
		case *shared.Profile:
			if f.Stream != shared.ModeFastGen || len(f.Heads) != 20 || len(f.PromptTokens) != 5 {
				t.Fatalf("profile: stream %q, %d heads, %d prompt tokens", f.Stream, len(f.Heads), len(f.PromptTokens))
			}
			for _, h := range f.Heads {
				if shared.PolicyIndex(h.Policy) < 0 {
					t.Fatalf("unknown policy %q", h.Policy)
				}
			}
		case *shared.Occupancy:
			if len(f.Kept) != 20 || f.KVBytesFull == 0 {
				t.Fatalf("occupancy: %d heads, full bytes %d", len(f.Kept), f.KVBytesFull)
			}
		case *shared.Stats:
			stats[f.Stream] = f
		case *shared.Done:
			done[f.Stream] = f.FinishReason
		case *shared.Error:
			t.Fatalf("error frame: %s: %s", f.Code, f.Message)
		}
	}
	for _, typ := range []string{shared.TypeProgress, shared.TypeProfile, shared.TypeToken, shared.TypeOccupancy, shared.TypeStats, shared.TypeDone} {
		if seen[typ] == 0 {
			t.Errorf("no %s frame", typ)
		}
	}
	if !slices.Equal(tokens["full"], onceUponGreedy) {
		t.Errorf("full stream tokens\n got %v\nwant %v", tokens["full"], onceUponGreedy)
	}
	if len(tokens["fastgen"]) != 60 {
		t.Errorf("fastgen stream: %d tokens", len(tokens["fastgen"]))
	}
	for _, st := range []string{"fastgen", "full"} {
		if s := stats[st]; s == nil || s.Agreement == nil || s.KL == nil || s.GeneratedTokens != 60 {
			t.Errorf("%s stats: %+v", st, s)
		}
		if done[st] != shared.FinishLength {
			t.Errorf("%s finished %q", st, done[st])
		}
	}
	// The connection stays usable.
	writeFrame(t, c, shared.Ping{})
	if _, ok := readFrame(t, c).(*shared.Pong); !ok {
		t.Fatal("no pong after the run")
	}
}

// rawMsgpack builds frames the shared encoder refuses to produce.
func rawMsgpack(kv ...any) []byte {
	// fixmap of string keys to strings or ints, enough for malformed frames.
	b := []byte{0x80 | byte(len(kv)/2)}
	for _, v := range kv {
		switch v := v.(type) {
		case string:
			b = append(b, 0xa0|byte(len(v)))
			b = append(b, v...)
		case int:
			b = append(b, byte(v))
		}
	}
	return b
}

func TestWSBadFrames(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	other := dialWS(t, ts, nil)
	readFrame(t, other) // hello
	cases := []struct {
		name  string
		typ   websocket.MessageType
		data  []byte
		close websocket.StatusCode // 0: an error frame, connection stays open
	}{
		{"not msgpack", websocket.MessageBinary, []byte("hello there"), 0},
		{"json text", websocket.MessageText, []byte(`{"type":"ping"}`), 0},
		{"unknown type", websocket.MessageBinary, rawMsgpack("type", "launch"), 0},
		{"server frame", websocket.MessageBinary, rawMsgpack("type", "hello"), 0},
		{"wrong field type", websocket.MessageBinary, rawMsgpack("type", "generate", "id", 7, "prompt", "x"), 0},
		{"missing id", websocket.MessageBinary, rawMsgpack("type", "generate", "prompt", "x"), 0},
		{"cancel unknown id", websocket.MessageBinary, rawMsgpack("type", "cancel", "id", "nope"), 0},
		{"oversized", websocket.MessageBinary, make([]byte, 2<<20), websocket.StatusMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, ts, nil)
			readFrame(t, c) // hello
			if err := c.Write(context.Background(), tc.typ, tc.data); err != nil {
				if tc.close != 0 {
					// The server closed the connection before the whole
					// oversized message was sent: that is the refusal.
					t.Logf("write ended early: %v", err)
					return
				}
				t.Fatal(err)
			}
			if tc.close != 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _, err := c.Read(ctx)
				if got := websocket.CloseStatus(err); got != tc.close {
					t.Fatalf("close status %v (%v), want %v", got, err, tc.close)
				}
				return
			}
			e, ok := readFrame(t, c).(*shared.Error)
			if !ok || e.Message == "" || e.Code == "" {
				t.Fatalf("want an error frame, got %#v", e)
			}
			writeFrame(t, c, shared.Ping{})
			if _, ok := readFrame(t, c).(*shared.Pong); !ok {
				t.Fatal("connection unusable after a bad frame")
			}
		})
	}
	// Other sessions are unaffected.
	writeFrame(t, other, shared.Generate{ID: "ok", Prompt: "Once upon a time", MaxTokens: 3, Temperature: shared.Ptr(0.0), KV: &shared.KV{Mode: "full"}})
	n := 0
	for {
		f := readFrame(t, other)
		if _, ok := f.(*shared.Token); ok {
			n++
		}
		if _, ok := f.(*shared.Done); ok {
			break
		}
	}
	if n != 3 {
		t.Fatalf("other session produced %d tokens", n)
	}
	_ = s
}

// TestWSCancelAndDisconnect checks that a cancel frame and a closed tab both
// stop generation promptly and give back the cache and the goroutines.
func TestWSCancelAndDisconnect(t *testing.T) {
	for _, how := range []string{"cancel", "disconnect"} {
		t.Run(how, func(t *testing.T) {
			s, ts := newTestServer(t, Config{Parallel: 2})
			e := s.Engine()
			runtime.GC()
			baseG := runtime.NumGoroutine()
			c := dialWS(t, ts, nil)
			readFrame(t, c)
			// No max_tokens: it would run to the end of the context.
			writeFrame(t, c, shared.Generate{ID: "long", Prompt: "Once upon a time", Temperature: shared.Ptr(0.0), Compare: true})
			for {
				if _, ok := readFrame(t, c).(*shared.Token); ok {
					break
				}
			}
			if e.KVPool.InUseBytes() == 0 && s.sessions.Load() == 0 {
				t.Skip("the run finished before it could be interrupted")
			}
			start := time.Now()
			if how == "cancel" {
				writeFrame(t, c, shared.Cancel{ID: "long"})
				var reasons []string
				var generated int
				for len(reasons) < 2 {
					switch f := readFrame(t, c).(type) {
					case *shared.Done:
						reasons = append(reasons, f.FinishReason)
					case *shared.Stats:
						generated = f.GeneratedTokens
					}
				}
				if reasons[0] != shared.FinishCancelled || reasons[1] != shared.FinishCancelled {
					t.Fatalf("finish reasons %v", reasons)
				}
				if generated >= 500 {
					t.Fatalf("cancel did not stop the run: %d tokens", generated)
				}
			} else {
				c.CloseNow()
			}
			waitFor(t, "the session to end", 10*time.Second, func() bool { return s.sessions.Load() == 0 })
			t.Logf("%s: session ended %v after the request", how, time.Since(start))
			if b := e.KVPool.InUseBytes(); b != 0 {
				t.Fatalf("KV pool still holds %d bytes in use", b)
			}
			c.CloseNow()
			ts.CloseClientConnections()
			settle(t, baseG)
		})
	}
}

func TestWSOrigin(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		origin  string
		ok      bool
	}{
		{"no origin (non-browser)", nil, "", true},
		{"same origin", nil, "SAME", true},
		{"foreign origin", nil, "http://evil.example", false},
		{"allowed foreign origin", []string{"evil.example"}, "http://evil.example", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ts := newTestServer(t, Config{AllowedOrigins: tc.allowed})
			h := http.Header{}
			if tc.origin == "SAME" {
				h.Set("Origin", ts.URL)
			} else if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{shared.Protocol}})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.CloseNow()
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("foreign origin accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("want 403, got %v (%v)", resp, err)
			}
		})
	}
}

func TestWSSubprotocolRequired(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	c := dialWS(t, ts, &websocket.DialOptions{Subprotocols: []string{"other"}})
	_, _, err := c.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("want a policy-violation close, got %v", err)
	}
}

// TestBusy fills the parallel slot and the queue, then checks that both
// APIs refuse the next request instead of queueing it.
func TestBusy(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 1, Queue: 1})
	rel1, err := s.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan func(), 1)
	go func() {
		rel, err := s.acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		queued <- rel
	}()
	waitFor(t, "the queue to fill", 10*time.Second, func() bool { return s.waiting.Load() == 1 })

	resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("HTTP status %d, want 429", resp.StatusCode)
	}
	c := dialWS(t, ts, nil)
	readFrame(t, c)
	writeFrame(t, c, shared.Generate{ID: "b", Prompt: "hi", MaxTokens: 1})
	if e, ok := readFrame(t, c).(*shared.Error); !ok || e.Code != shared.CodeBusy || e.ID != "b" {
		t.Fatalf("want a busy error frame, got %#v", e)
	}
	rel1()
	(<-queued)()
	// Freed: the same request now runs.
	writeFrame(t, c, shared.Generate{ID: "c", Prompt: "hi", MaxTokens: 1})
	for {
		f := readFrame(t, c)
		if e, ok := f.(*shared.Error); ok {
			t.Fatalf("error after release: %v", e.Message)
		}
		if _, ok := f.(*shared.Done); ok {
			break
		}
	}
}

// TestWSRunsPerConn: one connection holds at most MaxRunsPerConn runs,
// queued ones included; the next is refused at once while another
// connection is still admitted, and a finished run frees its place.
func TestWSRunsPerConn(t *testing.T) {
	s, ts := newTestServer(t, Config{Parallel: 1, Queue: 8, MaxRunsPerConn: 2})
	hold, err := s.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	gen := func(id string) shared.Generate {
		return shared.Generate{ID: id, Prompt: "hi", MaxTokens: 1, Temperature: shared.Ptr(0.0)}
	}
	c := dialWS(t, ts, nil)
	readFrame(t, c)
	writeFrame(t, c, gen("a"))
	writeFrame(t, c, gen("b"))
	waitFor(t, "two queued runs", 10*time.Second, func() bool { return s.waiting.Load() == 2 })
	writeFrame(t, c, gen("c"))
	if e, ok := readFrame(t, c).(*shared.Error); !ok || e.Code != shared.CodeBusy || e.ID != "c" || !strings.Contains(e.Message, "max-runs-per-conn") {
		t.Fatalf("third run on one connection: want a busy error frame naming the cap, got %#v", e)
	}
	other := dialWS(t, ts, nil)
	readFrame(t, other)
	writeFrame(t, other, gen("d"))
	waitFor(t, "the other connection's run to queue", 10*time.Second, func() bool { return s.waiting.Load() == 3 })

	writeFrame(t, c, shared.Cancel{ID: "a"})
	if d, ok := readFrame(t, c).(*shared.Done); !ok || d.ID != "a" || d.FinishReason != shared.FinishCancelled {
		t.Fatalf("want a's cancelled done, got %#v", d)
	}
	writeFrame(t, c, gen("e"))
	waitFor(t, "the freed place to be taken", 10*time.Second, func() bool { return s.waiting.Load() == 3 })
	hold()
	for _, conn := range []struct {
		c   *websocket.Conn
		ids []string
	}{{c, []string{"b", "e"}}, {other, []string{"d"}}} {
		done := map[string]bool{}
		for len(done) < len(conn.ids) {
			switch f := readFrame(t, conn.c).(type) {
			case *shared.Error:
				t.Fatalf("error frame: %#v", f)
			case *shared.Done:
				done[f.ID] = true
			}
		}
		for _, id := range conn.ids {
			if !done[id] {
				t.Errorf("run %q did not finish (finished: %v)", id, done)
			}
		}
	}
}

func TestWSLimits(t *testing.T) {
	long := strings.Repeat("Once upon a time ", 60)
	cases := []struct {
		name string
		cfg  Config
		g    shared.Generate
		code string
		want string
	}{
		{"max_tokens cap", Config{MaxTokensCap: 10}, shared.Generate{ID: "a", Prompt: "hi", MaxTokens: 11}, shared.CodeTooLong, "--max-tokens-cap"},
		{"prompt cap", Config{MaxPromptTokens: 8}, shared.Generate{ID: "a", Prompt: long}, shared.CodeTooLong, "--max-prompt-tokens"},
		{"context", Config{}, shared.Generate{ID: "a", Prompt: strings.Repeat(long, 3)}, shared.CodeTooLong, "context"},
		{"kv bytes", Config{MaxKVBytes: 1000}, shared.Generate{ID: "a", Prompt: "hi", MaxTokens: 50}, shared.CodeTooLong, "--max-kv-bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ts := newTestServer(t, tc.cfg)
			c := dialWS(t, ts, nil)
			readFrame(t, c)
			writeFrame(t, c, tc.g)
			e, ok := readFrame(t, c).(*shared.Error)
			if !ok || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %#v, want code %s mentioning %q", e, tc.code, tc.want)
			}
		})
	}
}

func TestWSSlowClientClosed(t *testing.T) {
	// A send queue of 4 frames cannot hold one run; a client that never reads
	// is disconnected with a policy violation and the engine moves on.
	s, ts := newTestServer(t, Config{SendQueue: 4})
	c := dialWS(t, ts, nil)
	// Flood: many requests while never reading. The writer drains into
	// the socket buffers for a while; eventually the queue overflows.
	for i := 0; i < 200; i++ {
		b, _ := shared.Encode(shared.Generate{ID: "s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Prompt: "Once upon a time", Compare: true, Temperature: shared.Ptr(0.0)})
		if err := c.Write(context.Background(), websocket.MessageBinary, b); err != nil {
			break
		}
		if s.metrics != nil && testutilCounter(s) > 0 {
			break
		}
	}
	waitFor(t, "the slow client to be dropped", 20*time.Second, func() bool { return testutilCounter(s) > 0 })
	waitFor(t, "its sessions to end", 5*time.Second, func() bool { return s.sessions.Load() == 0 })
	if b := s.Engine().KVPool.InUseBytes(); b != 0 {
		t.Fatalf("KV pool in use after the drop: %d", b)
	}
	var ce websocket.CloseError
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if err != nil {
			if errors.As(err, &ce) && ce.Code != websocket.StatusPolicyViolation {
				t.Fatalf("closed with %v", ce)
			}
			break
		}
	}
}

func TestShutdownCancelsAtDeadline(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	c := dialWS(t, ts, nil)
	readFrame(t, c)
	writeFrame(t, c, shared.Generate{ID: "long", Prompt: "Once upon a time", Temperature: shared.Ptr(0.0), Compare: true})
	for {
		if _, ok := readFrame(t, c).(*shared.Token); ok {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	err := s.Shutdown(ctx)
	if s.sessions.Load() != 0 || s.Engine().KVPool.InUseBytes() != 0 {
		t.Fatalf("after shutdown: %d sessions, %d KV bytes in use", s.sessions.Load(), s.Engine().KVPool.InUseBytes())
	}
	if err == nil {
		t.Log("the run finished inside the deadline")
	}
	// New work is refused.
	if got := doReq(s, "POST", "/v1/completions", `{"prompt":"a"}`); got != http.StatusServiceUnavailable {
		t.Fatalf("after shutdown: %d", got)
	}
}
