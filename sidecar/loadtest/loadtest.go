// Package loadtest drives a running `fastgen serve` with many concurrent
// clients — fastgen.v1 WebSocket sessions (msgpack frames from shared/),
// OpenAI SSE streams and WebSocket compare runs — using randomised prompts,
// lengths, cancellations and disconnects, and reports what happened and
// whether the server returned to idle afterwards (read from /metrics).
//
// It only ever targets loopback addresses, and every loop is bounded in
// count and in time.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of client in Config.Mix.
const (
	KindWS      = "ws"      // one fastgen.v1 generate on a WebSocket
	KindSSE     = "sse"     // an OpenAI chat or completions SSE stream
	KindCompare = "compare" // a WebSocket compare run (two streams)
)

// Config is one load run.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080; its host
	// must be a loopback address.
	URL string
	// Sessions run at once (each a loop of requests).
	Sessions int
	// Duration is how long new requests are started; requests in flight
	// then finish (bounded by RequestTimeout).
	Duration time.Duration
	// Mix is the kinds of client, drawn uniformly per request (default all).
	Mix []string
	// APIKey is sent as a Bearer token when set.
	APIKey string
	// Seed makes the random choices reproducible (0: random).
	Seed uint64
	// MaxTokens bounds the random max_tokens of a request (default 64).
	MaxTokens int
	// CancelRate and DisconnectRate are the shares of requests the client
	// cancels or abandons mid-stream (defaults 0.15 and 0.1; negative = 0).
	CancelRate, DisconnectRate float64
	// MaxRequests bounds the whole run (default 1,000,000).
	MaxRequests int64
	// RequestTimeout bounds one request (default 2m); a request that runs
	// past it is an error.
	RequestTimeout time.Duration
	// IdleTimeout bounds the wait for the server to return to idle after
	// the run (default 30s).
	IdleTimeout time.Duration
	// HeapSettle is how long to wait after idle for the server to complete
	// a garbage collection before reading heap_after (default 0: read at
	// once). The Go runtime forces one at least every 2 minutes.
	HeapSettle time.Duration
	// Warmup runs the same load for this long before the "before"
	// readings, so pools, connections and metric series exist on both
	// sides of the comparison (default 0: none).
	Warmup time.Duration
	// Logf, when set, receives progress lines and error samples.
	Logf func(format string, args ...any)
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// ServerStats are read from the server's /metrics before and after the run.
type ServerStats struct {
	GoroutinesBefore     int64 `json:"goroutines_before"`
	GoroutinesAfter      int64 `json:"goroutines_after"`
	HeapBefore           int64 `json:"heap_before"`
	HeapAfter            int64 `json:"heap_after"`
	KVPoolBytesAfter     int64 `json:"kv_pool_bytes_after"`
	KVPoolInUseAfter     int64 `json:"kv_pool_in_use_bytes_after"`
	SessionsActiveAfter  int64 `json:"sessions_active_after"`
	IdleAfterMS          int64 `json:"idle_after_ms"`
	HeapBeforeGC         bool  `json:"heap_before_gc"`
	HeapAfterGC          bool  `json:"heap_after_gc"`
	WSConnectionsAfter   int64 `json:"websocket_connections_after"`
	KVPoolBytesBefore    int64 `json:"kv_pool_bytes_before"`
	KVPoolInUseBefore    int64 `json:"kv_pool_in_use_bytes_before"`
	SessionsActiveBefore int64 `json:"sessions_active_before"`
}

// Result is the run's summary; the JSON names are a stable interface.
type Result struct {
	Requests   int64       `json:"requests"`
	Completed  int64       `json:"completed"`
	Refused    int64       `json:"refused"`
	Errors     int64       `json:"errors"`
	Cancelled  int64       `json:"cancelled"`
	TTFTms     Percentiles `json:"ttft_ms"`
	DecodeTokS float64     `json:"decode_tok_s"`
	Server     ServerStats `json:"server"`

	Sessions  int              `json:"sessions"`
	DurationS float64          `json:"duration_s"`
	Tokens    int64            `json:"tokens"`
	ByKind    map[string]int64 `json:"by_kind"`
	// ErrorSamples are the first few errors, to say what went wrong.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// outcome of one request.
type outcome int

const (
	completed outcome = iota
	refused
	cancelled
	failed
)

// reqResult is one request's outcome and measurements.
type reqResult struct {
	out    outcome
	ttft   time.Duration // 0: no token arrived
	tokens int
	err    error
}

// CheckLoopback refuses any target that is not a loopback address: the load
// generator is a test tool, never a way to flood someone else's server.
func CheckLoopback(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("loadtest: bad --url %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("loadtest: --url must be http://HOST:PORT, got %q", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("loadtest: refusing to target %q: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed", host)
	}
	return u, nil
}

func (c *Config) defaults() error {
	if c.Sessions <= 0 {
		c.Sessions = 1
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if len(c.Mix) == 0 {
		c.Mix = []string{KindWS, KindSSE, KindCompare}
	}
	for _, k := range c.Mix {
		if k != KindWS && k != KindSSE && k != KindCompare {
			return fmt.Errorf("loadtest: unknown kind %q in --mix (ws, sse, compare)", k)
		}
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = 64
	}
	if c.CancelRate == 0 {
		c.CancelRate = 0.15
	}
	if c.DisconnectRate == 0 {
		c.DisconnectRate = 0.1
	}
	c.CancelRate, c.DisconnectRate = max(c.CancelRate, 0), max(c.DisconnectRate, 0)
	if c.MaxRequests <= 0 {
		c.MaxRequests = 1_000_000
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// Run drives the server for cfg.Duration and reports. It fails only when
// the run could not happen (bad config, server unreachable); request errors
// are counted in the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	base, err := CheckLoopback(cfg.URL)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Sessions, IdleConnTimeout: 5 * time.Second}}
	defer hc.CloseIdleConnections()
	// Scrapes use their own connection each time, so the server's
	// goroutine count never includes an idle keep-alive of ours.
	mc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	r := &runner{cfg: cfg, base: base, hc: hc, mc: mc, byKind: map[string]int64{}}

	before, err := r.scrape(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadtest: reading %s/metrics before the run: %w", strings.TrimSuffix(cfg.URL, "/"), err)
	}
	if cfg.Warmup > 0 {
		w := &runner{cfg: cfg, base: base, hc: hc, mc: mc, byKind: map[string]int64{}}
		w.drive(ctx, time.Now().Add(cfg.Warmup))
		cfg.Logf("loadtest: warm-up: %d requests, %d errors", w.requests, w.errors)
		if before, err = r.waitIdle(ctx, before); err != nil {
			return nil, err
		}
	}
	heapBeforeGC := false
	if cfg.HeapSettle > 0 {
		if m, ok := r.afterGC(ctx, before); ok {
			before, heapBeforeGC = m, true
		}
	}
	res := &Result{Sessions: cfg.Sessions}
	res.Server.HeapBeforeGC = heapBeforeGC
	res.Server.GoroutinesBefore = int64(before["go_goroutines"])
	res.Server.HeapBefore = int64(before["go_memstats_heap_alloc_bytes"])
	res.Server.KVPoolBytesBefore = int64(before["fastgen_kv_pool_bytes"])
	res.Server.KVPoolInUseBefore = int64(before["fastgen_kv_pool_in_use_bytes"])
	res.Server.SessionsActiveBefore = int64(before["fastgen_sessions_active"])

	start := time.Now()
	r.drive(ctx, start.Add(cfg.Duration))
	elapsed := time.Since(start)
	hc.CloseIdleConnections()

	r.mu.Lock()
	res.Requests, res.Completed, res.Refused, res.Cancelled, res.Errors = r.requests, r.completed, r.refused, r.cancelled, r.errors
	res.Tokens, res.ErrorSamples, res.ByKind = r.tokens, r.samples, r.byKind
	ttfts := slices.Clone(r.ttfts)
	r.mu.Unlock()
	res.DurationS = elapsed.Seconds()
	res.TTFTms = percentiles(ttfts)
	if elapsed > 0 {
		res.DecodeTokS = float64(res.Tokens) / elapsed.Seconds()
	}

	// Back to idle: no sessions, no KV blocks in use, no more goroutines
	// than before.
	idleStart := time.Now()
	after, err := r.waitIdle(ctx, before)
	if err != nil {
		return res, err
	}
	res.Server.IdleAfterMS = time.Since(idleStart).Milliseconds()
	res.Server.GoroutinesAfter = int64(after["go_goroutines"])
	res.Server.KVPoolBytesAfter = int64(after["fastgen_kv_pool_bytes"])
	res.Server.KVPoolInUseAfter = int64(after["fastgen_kv_pool_in_use_bytes"])
	res.Server.SessionsActiveAfter = int64(after["fastgen_sessions_active"])
	res.Server.WSConnectionsAfter = int64(after["fastgen_websocket_connections"])
	res.Server.HeapAfter = int64(after["go_memstats_heap_alloc_bytes"])
	if cfg.HeapSettle > 0 {
		if m, ok := r.afterGC(ctx, after); ok {
			res.Server.HeapAfter = int64(m["go_memstats_heap_alloc_bytes"])
			res.Server.HeapAfterGC = true
		}
	}
	return res, nil
}

// drive runs the sessions until deadline (each request then finishes,
// bounded by RequestTimeout), logging progress every 10 s.
func (r *runner) drive(ctx context.Context, deadline time.Time) {
	start := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, deadline.Add(r.cfg.RequestTimeout))
	defer cancel()
	var wg sync.WaitGroup
	for i := range r.cfg.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.session(runCtx, i, deadline)
		}()
	}
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			r.hc.CloseIdleConnections()
			return
		case <-progress.C:
			r.mu.Lock()
			r.cfg.Logf("loadtest: %s: %d requests, %d completed, %d refused, %d cancelled, %d errors",
				time.Since(start).Round(time.Second), r.requests, r.completed, r.refused, r.cancelled, r.errors)
			r.mu.Unlock()
		}
	}
}

// waitIdle polls /metrics until no session is active, no KV block is in
// use and the goroutines are back to base's count, or IdleTimeout passes.
func (r *runner) waitIdle(ctx context.Context, base map[string]float64) (map[string]float64, error) {
	start := time.Now()
	for {
		m, err := r.scrape(ctx)
		if err == nil && m["fastgen_sessions_active"] == 0 && m["fastgen_kv_pool_in_use_bytes"] == 0 &&
			m["go_goroutines"] <= base["go_goroutines"] {
			return m, nil
		}
		if time.Since(start) > r.cfg.IdleTimeout || ctx.Err() != nil {
			if err != nil {
				return nil, fmt.Errorf("loadtest: reading /metrics: %w", err)
			}
			r.cfg.Logf("loadtest: the server was not idle %s after the run", r.cfg.IdleTimeout)
			return m, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// afterGC waits up to HeapSettle for the server to complete a garbage
// collection after prev was read (heap_alloc counts garbage until then) and
// returns the first reading after it.
func (r *runner) afterGC(ctx context.Context, prev map[string]float64) (map[string]float64, bool) {
	gcs := prev["go_gc_duration_seconds_count"]
	start := time.Now()
	for time.Since(start) < r.cfg.HeapSettle && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		m, err := r.scrape(ctx)
		if err == nil && m["go_gc_duration_seconds_count"] > gcs {
			return m, true
		}
	}
	return nil, false
}

// runner holds a run's shared state.
type runner struct {
	cfg  Config
	base *url.URL
	hc   *http.Client // requests
	mc   *http.Client // /metrics
	seq  atomic.Int64 // requests started

	mu                                              sync.Mutex
	requests, completed, refused, cancelled, errors int64
	tokens                                          int64
	ttfts                                           []float64
	samples                                         []string
	byKind                                          map[string]int64
}

func (r *runner) record(kind string, rr reqResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.byKind[kind]++
	r.tokens += int64(rr.tokens)
	if rr.ttft > 0 {
		r.ttfts = append(r.ttfts, float64(rr.ttft.Microseconds())/1000)
	}
	switch rr.out {
	case completed:
		r.completed++
	case refused:
		r.refused++
	case cancelled:
		r.cancelled++
	default:
		r.errors++
		if len(r.samples) < 10 {
			r.samples = append(r.samples, fmt.Sprintf("%s: %v", kind, rr.err))
			r.cfg.Logf("loadtest: error: %s: %v", kind, rr.err)
		}
	}
}

// plan is one request's random shape.
type plan struct {
	kind       string
	id         string
	prompt     string
	chat       bool
	maxTokens  int
	cancelAt   int // cancel after this many tokens (-1: never)
	disconnect bool
	seed       int64
	temp       float64
}

var words = strings.Fields(`once upon a time there was a little girl named lily she loved to play
outside in the park with her big red ball one day a dog came and they were friends tom the cat
sun happy sad tree bird fish water boat jumped ran saw said mom dad home cake`)

func (r *runner) plan(rng *rand.Rand, session int) plan {
	p := plan{kind: r.cfg.Mix[rng.IntN(len(r.cfg.Mix))], cancelAt: -1, seed: rng.Int64(),
		maxTokens: 1 + rng.IntN(r.cfg.MaxTokens), chat: rng.IntN(2) == 0}
	p.id = fmt.Sprintf("s%d-%d", session, r.seq.Add(1))
	n := 1 + rng.IntN(24)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[rng.IntN(len(words))]
	}
	p.prompt = strings.Join(ws, " ")
	if rng.IntN(4) == 0 {
		p.temp = 0.3 + rng.Float64()
	}
	switch x := rng.Float64(); {
	case x < r.cfg.CancelRate:
		p.cancelAt = rng.IntN(p.maxTokens)
	case x < r.cfg.CancelRate+r.cfg.DisconnectRate:
		p.cancelAt, p.disconnect = rng.IntN(p.maxTokens), true
	}
	return p
}

// session runs requests back to back until the deadline, the request
// bound or ctx.
func (r *runner) session(ctx context.Context, i int, deadline time.Time) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	ws := &wsClient{r: r}
	defer ws.close()
	for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
		if r.seq.Load() >= r.cfg.MaxRequests {
			return
		}
		p := r.plan(rng, i)
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		var rr reqResult
		if p.kind == KindSSE {
			rr = r.sse(rctx, p)
		} else {
			rr = ws.generate(rctx, p)
		}
		cancel()
		if rr.out == failed && ctx.Err() != nil {
			return // the run itself was stopped
		}
		r.record(p.kind, rr)
		if rr.out == refused {
			// Busy: back off a little, as a polite client would.
			sleep(ctx, time.Duration(20+rng.IntN(200))*time.Millisecond)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *runner) endpoint(path string) string {
	u := *r.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}

func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	at := func(q float64) float64 {
		i := int(q*float64(len(v)-1) + 0.5)
		return v[min(i, len(v)-1)]
	}
	return Percentiles{P50: at(0.50), P99: at(0.99)}
}

// errf makes a failed result.
func errf(format string, args ...any) reqResult {
	return reqResult{out: failed, err: fmt.Errorf(format, args...)}
}

var errStop = errors.New("stop")
