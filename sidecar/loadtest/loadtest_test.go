package loadtest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/server"
)

func TestCheckLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.1.2.3:80/"} {
		if _, err := CheckLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1:1", "http://0.0.0.0:8080", "ws://127.0.0.1:1", "http://127.0.0.1.nip.io:80", "::"} {
		if _, err := CheckLoopback(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	if _, err := Run(context.Background(), Config{URL: "http://192.0.2.1:80", Duration: time.Second}); err == nil {
		t.Fatal("Run accepted a non-loopback target")
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader("# HELP go_goroutines x\ngo_goroutines 12\nfastgen_kv_pool_bytes 4.096e+03\nfastgen_requests_total{api=\"ws\"} 3\n"))
	if err != nil || m["go_goroutines"] != 12 || m["fastgen_kv_pool_bytes"] != 4096 || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
}

// TestLoadtestInProcess runs a few seconds of every client kind against an
// in-process server with fewer slots than sessions, so requests complete,
// get cancelled, disconnect and are refused as busy; none may fail, and the
// server must return to idle.
func TestLoadtestInProcess(t *testing.T) {
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is not set: set it to the folder holding stories260K.gguf")
	}
	e, err := engine.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(server.Config{Parallel: 2, Queue: 1, APIKey: "k", DisableWeb: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetEngine(e, "stories260K")
	ts := httptest.NewServer(s)
	defer ts.Close()
	res, err := Run(context.Background(), Config{URL: ts.URL, APIKey: "k", Sessions: 6, Duration: 3 * time.Second,
		MaxTokens: 48, Seed: 1, CancelRate: 0.25, DisconnectRate: 0.25, IdleTimeout: 10 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.Errors != 0 {
		t.Fatalf("%d errors: %v", res.Errors, res.ErrorSamples)
	}
	if res.Requests == 0 || res.Completed == 0 || res.Cancelled == 0 || res.Refused == 0 {
		t.Fatalf("the run did not exercise every outcome: %+v", *res)
	}
	if res.Requests != res.Completed+res.Cancelled+res.Refused {
		t.Fatalf("outcomes do not add up: %+v", *res)
	}
	for _, k := range []string{KindWS, KindSSE, KindCompare} {
		if res.ByKind[k] == 0 {
			t.Errorf("no %s requests", k)
		}
	}
	sv := res.Server
	if sv.GoroutinesAfter > sv.GoroutinesBefore {
		// Client and server share this process, so the stacks say which
		// side kept a goroutine.
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Log(b.String())
	}
	if sv.KVPoolInUseAfter != 0 || sv.SessionsActiveAfter != 0 || sv.GoroutinesAfter > sv.GoroutinesBefore || sv.WSConnectionsAfter != 0 {
		t.Fatalf("server not idle after the run: %+v", sv)
	}
	if res.TTFTms.P50 <= 0 || res.TTFTms.P99 < res.TTFTms.P50 || res.DecodeTokS <= 0 {
		t.Fatalf("measurements: %+v", *res)
	}
}
