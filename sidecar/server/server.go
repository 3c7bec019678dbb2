// Package server is fastgen's network face: the fastgen.v1 WebSocket stream
// (msgpack frames from shared/) that drives the browser UI, an
// OpenAI-compatible HTTP API for ordinary clients, llama.cpp-style
// operational routes, Prometheus metrics and the embedded web pages.
//
// The server starts before the model is loaded so /health can answer 503
// while loading; SetEngine makes it ready. Admission is one place for every
// API: --parallel sessions decode at once (their forward passes interleave
// token by token on the engine's compute mutex), a bounded queue waits
// behind them, and anything beyond is refused (429 or an error frame with
// code "busy") instead of piling up unbounded work.
package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/web"
)

// Config are the server's settings. Zero values take the defaults noted.
type Config struct {
	// Parallel sessions decode at once (default 1).
	Parallel int
	// Queue requests may wait for a slot beyond Parallel (default 16;
	// negative = no queue).
	Queue int
	// MaxRunsPerConn caps the runs, running or queued, one WebSocket
	// connection may hold at once (default 4), so a single client cannot
	// take every slot and the whole queue from the others.
	MaxRunsPerConn int
	// APIKey, when set, is required on every route but /health.
	APIKey string
	// AllowedOrigins are extra Origin host patterns (path.Match syntax, as
	// coder/websocket's OriginPatterns) whose pages may open the WebSocket
	// and call the HTTP API (CORS); the same origin is always allowed, and
	// a browser request from any other page is refused with 403.
	AllowedOrigins []string
	// MaxPromptTokens, MaxTokensCap and MaxKVBytes cap one request
	// (0 = only the model's context length limits them).
	MaxPromptTokens int
	MaxTokensCap    int
	MaxKVBytes      int64
	// MaxBodyBytes limits HTTP request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxFrameBytes limits one WebSocket message (default 1 MiB).
	MaxFrameBytes int64
	// SendQueue is how many frames may wait for a slow WebSocket client
	// before its connection is closed with a policy violation (default 4096).
	SendQueue int
	// ControlRate and ControlBurst are a per-connection token bucket on the
	// frames that cost the server a reply but no admission: ping, cancel,
	// text and undecodable messages (default 50/s, burst 100). The first
	// frame over the limit gets an error frame with code "rate_limited";
	// after MaxControlDrops dropped frames the connection is closed with
	// 1008 policy violation (default 1000).
	ControlRate     float64
	ControlBurst    int
	MaxControlDrops int
	// WriteTimeout bounds one write to a client (default 30s).
	WriteTimeout time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// DisableWeb leaves the UI pages unmounted (tests, API-only use).
	DisableWeb bool
}

func (c *Config) defaults() {
	if c.Parallel <= 0 {
		c.Parallel = 1
	}
	if c.Queue == 0 {
		c.Queue = 16
	}
	if c.Queue < 0 {
		c.Queue = 0
	}
	if c.MaxRunsPerConn <= 0 {
		c.MaxRunsPerConn = 4
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 1 << 20
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 4096
	}
	if c.ControlRate <= 0 {
		c.ControlRate = 50
	}
	if c.ControlBurst <= 0 {
		c.ControlBurst = 100
	}
	if c.MaxControlDrops <= 0 {
		c.MaxControlDrops = 1000
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is the HTTP handler of `fastgen serve`.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     http.Handler
	metrics *metrics

	eng       atomic.Pointer[engine.Engine]
	modelName atomic.Pointer[string]
	created   int64

	// slots holds one token per running session; admitted counts running
	// plus queued requests so the queue bound is exact.
	slots    chan struct{}
	admitted atomic.Int64
	waiting  atomic.Int64

	// base is cancelled when shutdown gives up waiting, which cancels every
	// session; sessions counts running work so shutdown can wait for it.
	base       context.Context
	cancelBase context.CancelFunc
	sessions   atomic.Int64
	draining   atomic.Bool
}

// New makes a server with no engine yet: /health answers 503 and the API
// routes refuse with 503 until SetEngine.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{cfg: cfg, log: cfg.Logger, created: time.Now().Unix(),
		slots: make(chan struct{}, cfg.Parallel)}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	s.routes()
	return s
}

// SetEngine makes the server ready with a loaded engine; name is the model
// id reported by /v1/models.
func (s *Server) SetEngine(e *engine.Engine, name string) {
	s.modelName.Store(&name)
	s.eng.Store(e)
	s.metrics.loaded.Set(1)
}

// Engine is the loaded engine, or nil while loading.
func (s *Server) Engine() *engine.Engine { return s.eng.Load() }

func (s *Server) model() string {
	if p := s.modelName.Load(); p != nil {
		return *p
	}
	return ""
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /health", s.handleHealth)
	m.Handle("GET /metrics", s.auth(s.metrics.handler()))
	m.Handle("GET /v1/ws", s.auth(http.HandlerFunc(s.handleWS)))
	m.Handle("GET /v1/models", s.auth(http.HandlerFunc(s.handleModels)))
	m.Handle("POST /v1/chat/completions", s.auth(s.ready(s.handleChat)))
	m.Handle("POST /v1/completions", s.auth(s.ready(s.handleCompletions)))
	m.Handle("GET /props", s.auth(s.ready(s.handleProps)))
	m.Handle("POST /tokenize", s.auth(s.ready(s.handleTokenize)))
	m.Handle("POST /detokenize", s.auth(s.ready(s.handleDetokenize)))
	if !s.cfg.DisableWeb {
		m.Handle("/", s.auth(web.Handler()))
	} else {
		m.Handle("/", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "not_found_error", "", "not_found", "no route "+r.Method+" "+r.URL.Path)
		})))
	}
	s.mux = s.cors(m)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.Engine() == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "loading model",
			"error": apiError{Message: "Loading model", Type: "unavailable_error", Code: "loading"}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ready refuses API calls while the model loads or the server drains.
func (s *Server) ready(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Engine() == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable_error", "", "loading", "the model is still loading; retry when GET /health answers 200")
			return
		}
		if s.draining.Load() {
			writeError(w, http.StatusServiceUnavailable, "unavailable_error", "", "shutting_down", "the server is shutting down")
			return
		}
		h(w, r)
	})
}

// apiKeyCookie lets a browser that opened a page with ?api_key= load the
// page's assets and open the WebSocket, which cannot carry a Bearer header.
const apiKeyCookie = "fastgen_api_key"

// keySubprotocol prefixes the WebSocket subprotocol that carries the key
// from browsers, which cannot set an Authorization header on a WebSocket.
const keySubprotocol = "fastgen.v1.key."

// auth enforces Config.APIKey: a Bearer token, ?api_key=, the
// fastgen.v1.key.<key> WebSocket subprotocol, or the cookie set when a page
// was opened with ?api_key=.
func (s *Server) auth(h http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			s.metrics.requests.WithLabelValues(routeLabel(r), "unauthorized").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="fastgen"`)
			writeError(w, http.StatusUnauthorized, "authentication_error", "", "invalid_api_key",
				"missing or wrong API key: send 'Authorization: Bearer <key>'")
			return
		}
		if q := r.URL.Query().Get("api_key"); q != "" && r.Method == http.MethodGet {
			http.SetCookie(w, &http.Cookie{Name: apiKeyCookie, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	ok := func(k string) bool { return subtle.ConstantTimeCompare([]byte(k), []byte(s.cfg.APIKey)) == 1 }
	if a := r.Header.Get("Authorization"); a != "" {
		if k, found := strings.CutPrefix(a, "Bearer "); found && ok(strings.TrimSpace(k)) {
			return true
		}
	}
	if k := r.URL.Query().Get("api_key"); k != "" && ok(k) {
		return true
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if k, found := strings.CutPrefix(strings.TrimSpace(p), keySubprotocol); found && ok(k) {
				return true
			}
		}
	}
	if c, err := r.Cookie(apiKeyCookie); err == nil && ok(c.Value) {
		return true
	}
	return false
}

// errBusy means the parallel slots and the queue are full.
var errBusy = errors.New("server busy: all parallel slots and the queue are full; retry later")

// errDraining means the server is shutting down.
var errDraining = errors.New("the server is shutting down")

// acquire admits one request: it waits in the queue for a slot or fails at
// once when slots and queue are full. release must be called iff err is nil.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	if s.draining.Load() {
		return nil, errDraining
	}
	if s.admitted.Add(1) > int64(s.cfg.Parallel+s.cfg.Queue) {
		s.admitted.Add(-1)
		return nil, errBusy
	}
	s.sessions.Add(1)
	s.metrics.queue.Set(float64(s.waiting.Add(1)))
	select {
	case s.slots <- struct{}{}:
		s.metrics.queue.Set(float64(s.waiting.Add(-1)))
	case <-ctx.Done():
		s.metrics.queue.Set(float64(s.waiting.Add(-1)))
		s.admitted.Add(-1)
		s.sessions.Add(-1)
		return nil, ctx.Err()
	}
	s.metrics.active.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			<-s.slots
			s.metrics.active.Dec()
			s.admitted.Add(-1)
			s.sessions.Add(-1)
		})
	}, nil
}

// sessionContext derives a session's context from a request's: it ends when
// the client goes away or when shutdown stops waiting.
func (s *Server) sessionContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// Shutdown stops admitting work, waits for running and queued sessions to
// finish until ctx ends, then cancels them and waits for them to free their
// caches. Call it beside http.Server.Shutdown, which does not wait for
// hijacked WebSocket connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// Polling keeps admission lock-free; a WaitGroup would forbid the Add
	// that a request racing with shutdown may still make.
	idle := func(deadline <-chan struct{}) bool {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for s.sessions.Load() > 0 {
			select {
			case <-deadline:
				return false
			case <-t.C:
			}
		}
		return true
	}
	if idle(ctx.Done()) {
		s.cancelBase()
		return nil
	}
	s.log.Warn("shutdown deadline reached; cancelling running sessions", "sessions", s.sessions.Load())
	s.cancelBase()
	// Cancelled sessions stop within one decode step.
	grace, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !idle(grace.Done()) {
		return errors.New("server: sessions did not stop after cancellation")
	}
	return ctx.Err()
}
