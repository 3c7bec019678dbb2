package server

import (
	"context"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
)

// Frame encoding runs on the engine's goroutine between decode steps, so
// its cost adds to every token. Shapes: stories260K (5 layers × 4 KV heads)
// and a Llama-3.2-1B-sized grid (16 × 8).
func BenchmarkEncodeFrames(b *testing.B) {
	occ := func(heads, evictEvery int) shared.Occupancy {
		o := shared.Occupancy{ID: "req-1", Stream: "fastgen", Index: 42, Kept: make([]uint32, heads), KVBytes: 123456, KVBytesFull: 234567}
		for h := range heads {
			o.Kept[h] = uint32(100 + h)
			if h%evictEvery == 0 {
				o.Evicted = append(o.Evicted, shared.Eviction{Head: h, Positions: []uint32{uint32(h)}})
			}
		}
		return o
	}
	cases := []struct {
		name string
		f    shared.Frame
	}{
		{"token", shared.Token{ID: "req-1", Stream: "fastgen", Index: 42, Token: 432, Text: " Lily", Logprob: -0.25, Class: "normal"}},
		{"token+top3", shared.Token{ID: "req-1", Stream: "fastgen", Index: 42, Token: 432, Text: " Lily", Logprob: -0.25, Class: "normal",
			Top: []shared.Alternative{{Token: 432, Text: " Lily", Logprob: -0.25}, {Token: 286, Text: " the", Logprob: -2.5}, {Token: 261, Text: " a", Logprob: -3.1}}}},
		{"occupancy/20heads", occ(20, 4)},
		{"occupancy/128heads", occ(128, 4)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var n int
			b.ReportAllocs()
			for b.Loop() {
				out, err := shared.Encode(tc.f)
				if err != nil {
					b.Fatal(err)
				}
				n = len(out)
			}
			b.ReportMetric(float64(n), "B/frame")
		})
	}
}

// TestMeasureConcurrency reports TTFT and decode speed through the
// WebSocket against the engine called directly (what `fastgen generate`
// runs), for 1, 4 and 16 concurrent sessions, plus bytes on the wire per
// token. It only runs with FASTGEN_MEASURE=1: it is a measurement, not a
// check.
func TestMeasureConcurrency(t *testing.T) {
	if os.Getenv("FASTGEN_MEASURE") == "" {
		t.Skip("set FASTGEN_MEASURE=1 to measure")
	}
	e := testEngine(t)
	const maxTokens = 200
	req := engine.Request{Prompt: "Once upon a time", MaxTokens: maxTokens, KV: engine.DefaultKV()}
	for _, n := range []int{1, 4, 16} {
		direct := runConcurrent(n, func() (float64, float64) {
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			return res[0].Stats.TTFTms, res[0].Stats.DecodeTokS
		})
		_, ts := newTestServer(t, Config{Parallel: n, Queue: n})
		var mu sync.Mutex
		var bytes, tokens int
		ws := runConcurrent(n, func() (float64, float64) {
			c := dialWS(t, ts, nil)
			defer c.CloseNow()
			readFrame(t, c)
			start := time.Now()
			writeFrame(t, c, shared.Generate{ID: "m", Prompt: "Once upon a time", MaxTokens: maxTokens, Temperature: shared.Ptr(0.0)})
			var first, last time.Time
			nb, nt := 0, 0
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					t.Error(err)
					return 0, 0
				}
				nb += len(b)
				f, _ := shared.Decode(b)
				if _, ok := f.(*shared.Token); ok {
					last = time.Now()
					if nt == 0 {
						first = last
					}
					nt++
				}
				if _, ok := f.(*shared.Done); ok {
					break
				}
			}
			mu.Lock()
			bytes, tokens = bytes+nb, tokens+nt
			mu.Unlock()
			c.Close(websocket.StatusNormalClosure, "")
			return float64(first.Sub(start).Microseconds()) / 1000, float64(nt-1) / last.Sub(first).Seconds()
		})
		t.Logf("sessions=%2d  direct: TTFT p50 %6.2f ms, decode %7.0f tok/s/session (%7.0f total) | websocket: TTFT p50 %6.2f ms, decode %7.0f tok/s/session (%7.0f total), %.0f B/token on the wire",
			n, direct.ttft, direct.tokS, direct.tokS*float64(n), ws.ttft, ws.tokS, ws.tokS*float64(n), float64(bytes)/float64(tokens))
	}
}

type measured struct{ ttft, tokS float64 }

// runConcurrent starts n sessions at once and reports the median TTFT and
// the mean per-session decode rate.
func runConcurrent(n int, one func() (ttftMs, tokS float64)) measured {
	ttfts := make([]float64, n)
	rates := make([]float64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ttfts[i], rates[i] = one() })
	}
	wg.Wait()
	sort.Float64s(ttfts)
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return measured{ttft: ttfts[n/2], tokS: sum / float64(n)}
}
