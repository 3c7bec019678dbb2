package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/model"
)

// onceUponGreedy are the 60 greedy ids after "Once upon a time" from
// /work/shared/models/README.md (llama2.c run.c, verified).
var onceUponGreedy = []int{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432,
	358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310}

var (
	engOnce sync.Once
	eng     *engine.Engine
	engErr  error
)

// testEngine loads stories260K once for the package; tests share it as the
// server's sessions do.
func testEngine(t testing.TB) *engine.Engine {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is not set: set it to the folder holding stories260K.gguf (e.g. /work/shared/models) to run the end-to-end server tests")
	}
	engOnce.Do(func() {
		eng, engErr = engine.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, engine.Options{})
	})
	if engErr != nil {
		t.Fatalf("load stories260K: %v", engErr)
	}
	return eng
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestServer runs a ready server on a real loopback listener.
func newTestServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	e := testEngine(t)
	cfg.DisableWeb = true
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s := New(cfg)
	s.SetEngine(e, "stories260K")
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func wsURL(ts *httptest.Server) string { return "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws" }

func dialWS(t testing.TB, ts *httptest.Server, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	if opts.Subprotocols == nil {
		opts.Subprotocols = []string{shared.Protocol}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(ts), opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(shared.MaxServerFrameBytes)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func writeFrame(t testing.TB, c *websocket.Conn, f shared.Frame) {
	t.Helper()
	b, err := shared.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		t.Fatalf("write %s: %v", f.FrameType(), err)
	}
}

func readFrame(t testing.TB, c *websocket.Conn) shared.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	f, err := shared.Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return f
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until the goroutine count is back at (or below) base: the
// HTTP server's idle connections and client transports take a moment.
func settle(t testing.TB, base int) {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testutilCounter is how many slow clients the server has dropped.
func testutilCounter(s *Server) float64 {
	var m dto.Metric
	s.metrics.slowClients.Write(&m)
	return m.GetCounter().GetValue()
}

// websocketDial dials /v1/ws with an Authorization header or an extra
// subprotocol, as browsers and scripts pass the API key.
type websocketDial struct{ header, proto string }

func (d *websocketDial) dial(url string) error {
	h := http.Header{}
	if d.header != "" {
		h.Set("Authorization", d.header)
	}
	protos := []string{shared.Protocol}
	if d.proto != "" {
		protos = append(protos, d.proto)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: protos})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	_, _, err = c.Read(ctx) // hello
	return err
}

func doReq(h http.Handler, method, path, body string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code
}
