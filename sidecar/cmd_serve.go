package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fastgen/fastgen/sidecar/server"
)

func init() {
	register("serve", "serve the web UI, the fastgen.v1 WebSocket and an OpenAI-compatible API", runServe)
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	var mf modelFlags
	mf.register(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (binding beyond loopback without --api-key prints a warning)")
	parallel := fs.Int("parallel", 4, "sessions decoding at once (their steps interleave on the compute pool)")
	queue := fs.Int("queue", 16, "requests that may wait for a slot; beyond it HTTP answers 429 and the WebSocket an error frame with code busy")
	perConn := fs.Int("max-runs-per-conn", 4, "runs, running or queued, one WebSocket connection may hold at once; more get an error frame with code busy")
	apiKey := fs.String("api-key", os.Getenv("FASTGEN_API_KEY"), "require this key on every route but /health (default $FASTGEN_API_KEY)")
	origins := fs.String("allowed-origins", "", "comma-separated Origin host patterns whose pages may open the WebSocket and call the HTTP API (CORS); the same origin is always allowed, other pages get 403")
	maxPrompt := fs.Int("max-prompt-tokens", 0, "refuse prompts longer than this (0 = the context length)")
	maxTokens := fs.Int("max-tokens-cap", 0, "refuse max_tokens above this; also the default when a request gives none (0 = the context length)")
	maxKV := fs.Int64("max-kv-bytes", 0, "refuse requests whose uncompressed KV cache could exceed this many bytes (0 = no cap)")
	grace := fs.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM, how long running sessions may finish before they are cancelled")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastgen serve: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	if mf.path == "" {
		path, err := defaultModel(context.Background(), stderr)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen serve:", err)
			return exitBadInput
		}
		mf.path = path
	}
	if *parallel < 1 || *perConn < 1 || *queue < 0 || *maxPrompt < 0 || *maxTokens < 0 || *maxKV < 0 {
		fmt.Fprintln(stderr, "fastgen serve: --parallel and --max-runs-per-conn must be ≥ 1; --queue and the caps ≥ 0")
		return exitBadInput
	}
	var lh slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		lh = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(lh)

	var allowed []string
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed = append(allowed, o)
		}
	}
	q := *queue
	if q == 0 {
		q = -1 // server.Config reads 0 as "default"; the flag's 0 means none
	}
	srv := server.New(server.Config{Parallel: *parallel, Queue: q, MaxRunsPerConn: *perConn, APIKey: *apiKey, AllowedOrigins: allowed,
		MaxPromptTokens: *maxPrompt, MaxTokensCap: *maxTokens, MaxKVBytes: *maxKV, Logger: log})

	// Listen before loading so /health can say 503 while the model loads.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen serve:", err)
		return exitFailure
	}
	if !isLoopback(ln.Addr()) && *apiKey == "" {
		fmt.Fprintf(stderr, "fastgen serve: WARNING: listening on %s, beyond loopback, without --api-key: anyone who can reach it can use it\n", ln.Addr())
	}
	// No ReadTimeout or WriteTimeout: they would cut WebSocket and SSE
	// streams; bodies are capped by size and writes by the server's own
	// per-write deadline. IdleTimeout closes keep-alive connections left
	// open between requests, which would otherwise hold a goroutine each.
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(lh, slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loaded := make(chan int, 1)
	go func() {
		start := time.Now()
		e, st := mf.load(stderr)
		if e == nil {
			loaded <- st
			return
		}
		srv.SetEngine(e, modelName(mf.path))
		log.Info("model loaded", "model", mf.path, "ms", time.Since(start).Milliseconds(), "threads", e.Threads())
		fmt.Fprintf(stdout, "fastgen: serving %s on %s\n", modelName(mf.path), serveURL(ln.Addr()))
		loaded <- -1
	}()

	status := exitOK
	select {
	case st := <-loaded:
		if st >= 0 {
			hs.Close()
			return st
		}
		select {
		case <-ctx.Done():
		case err := <-serveErr:
			fmt.Fprintln(stderr, "fastgen serve:", err)
			status = exitFailure
		}
	case <-ctx.Done():
	case err := <-serveErr:
		fmt.Fprintln(stderr, "fastgen serve:", err)
		return exitFailure
	}
	stop()
	log.Info("shutting down", "grace", grace.String())
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	// Stop accepting and let plain HTTP requests finish, while the server
	// drains WebSocket sessions (http.Server does not track hijacked ones).
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(sctx) }()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	if err := <-done; err != nil {
		log.Warn("sessions cancelled at the shutdown deadline", "err", err)
	}
	hs.Close()
	if e := srv.Engine(); e != nil {
		e.Close()
	}
	return status
}

func modelName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func serveURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(ta.Port)) + "/"
}
