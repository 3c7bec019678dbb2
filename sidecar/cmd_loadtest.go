package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fastgen/fastgen/sidecar/loadtest"
)

func init() {
	register("loadtest", "drive a running server (loopback only) with concurrent WebSocket and SSE clients and report", runLoadtest)
}

func runLoadtest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("loadtest", stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "the server's base URL; only loopback hosts are accepted")
	sessions := fs.Int("sessions", 8, "concurrent client sessions")
	duration := fs.Duration("duration", 30*time.Second, "how long to start new requests")
	mix := fs.String("mix", "ws,sse,compare", "comma-separated client kinds drawn per request: ws, sse, compare")
	apiKey := fs.String("api-key", os.Getenv("FASTGEN_API_KEY"), "the server's API key (default $FASTGEN_API_KEY)")
	maxTokens := fs.Int("max-tokens", 64, "upper bound of the random max_tokens")
	cancelRate := fs.Float64("cancel-rate", 0.15, "share of requests cancelled mid-stream")
	disconnectRate := fs.Float64("disconnect-rate", 0.1, "share of requests abandoned by closing the connection")
	maxRequests := fs.Int64("max-requests", 1_000_000, "stop after this many requests in all")
	seed := fs.Uint64("seed", 0, "random seed (0: random)")
	settle := fs.Duration("heap-settle", 150*time.Second, "after the run, wait up to this long for a GC before reading heap_after (0: read at once)")
	warmup := fs.Duration("warmup", 10*time.Second, "run the same load this long before the \"before\" readings (0: none)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastgen loadtest: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	if *sessions < 1 || *sessions > 10_000 || *duration <= 0 || *duration > 24*time.Hour || *warmup < 0 || *warmup > time.Hour {
		fmt.Fprintln(stderr, "fastgen loadtest: --sessions must be in [1, 10000] and --duration in (0, 24h]")
		return exitBadInput
	}
	if _, err := loadtest.CheckLoopback(*url); err != nil {
		fmt.Fprintln(stderr, "fastgen", err)
		return exitBadInput
	}
	neg := func(v float64) float64 { // 0 on the command line means none
		if v == 0 {
			return -1
		}
		return v
	}
	cfg := loadtest.Config{URL: *url, Sessions: *sessions, Duration: *duration, APIKey: *apiKey, Seed: *seed,
		MaxTokens: *maxTokens, CancelRate: neg(*cancelRate), DisconnectRate: neg(*disconnectRate),
		MaxRequests: *maxRequests, HeapSettle: *settle, Warmup: *warmup,
		Logf: func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }}
	for _, k := range strings.Split(*mix, ",") {
		if k = strings.TrimSpace(k); k != "" {
			cfg.Mix = append(cfg.Mix, k)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen", err)
		if res == nil {
			return exitFailure
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		s := res.Server
		fmt.Fprintf(stdout, "requests %d: completed %d, cancelled %d, refused (busy) %d, errors %d\n",
			res.Requests, res.Completed, res.Cancelled, res.Refused, res.Errors)
		fmt.Fprintf(stdout, "ttft p50 %.1f ms, p99 %.1f ms; %.1f tok/s over %.0f s (%d tokens)\n",
			res.TTFTms.P50, res.TTFTms.P99, res.DecodeTokS, res.DurationS, res.Tokens)
		fmt.Fprintf(stdout, "server: goroutines %d → %d, heap %d → %d, KV pool %d bytes (in use %d), idle after %d ms\n",
			s.GoroutinesBefore, s.GoroutinesAfter, s.HeapBefore, s.HeapAfter, s.KVPoolBytesAfter, s.KVPoolInUseAfter, s.IdleAfterMS)
		for _, e := range res.ErrorSamples {
			fmt.Fprintln(stdout, "error:", e)
		}
	}
	if res.Errors > 0 || err != nil {
		return exitFailure
	}
	return exitOK
}
