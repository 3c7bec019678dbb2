package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/version"
)

// metrics live in a registry per Server (not the global one) so tests and
// embedders can run several servers in one process.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	ttft        prometheus.Histogram
	decode      prometheus.Histogram
	queue       prometheus.Gauge
	active      prometheus.Gauge
	conns       prometheus.Gauge
	loaded      prometheus.Gauge
	kvBytes     *prometheus.CounterVec
	heads       *prometheus.CounterVec
	badFrames   prometheus.Counter
	slowClients prometheus.Counter
	wireBytes   prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	// The load tester watches goroutines and heap to catch leaks.
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fastgen_requests_total",
		Help: "Requests by API and outcome (ok, cancelled, busy, bad_request, too_long, unauthorized, refused, internal)."}, []string{"api", "outcome"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fastgen_tokens_total",
		Help: "Prompt and generated tokens, summed over streams."}, []string{"kind"})
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fastgen_ttft_seconds",
		Help: "Time from admission to a stream's first token.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})
	m.decode = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fastgen_decode_seconds_per_token",
		Help: "Mean decode time per token of each finished stream.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	m.queue = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fastgen_queue_depth", Help: "Requests waiting for a parallel slot."})
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fastgen_sessions_active", Help: "Sessions holding a parallel slot."})
	m.conns = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fastgen_websocket_connections", Help: "Open fastgen.v1 WebSocket connections."})
	m.loaded = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fastgen_model_loaded", Help: "1 once the model is loaded."})
	m.kvBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fastgen_kv_bytes_total",
		Help: "KV cache bytes at the end of each finished stream: cache=compressed is what was kept, cache=full what a full cache would hold."}, []string{"cache"})
	m.heads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fastgen_heads_total",
		Help: "Heads assigned each policy by FastGen profiling."}, []string{"policy"})
	m.badFrames = prometheus.NewCounter(prometheus.CounterOpts{Name: "fastgen_ws_bad_frames_total", Help: "Client frames refused as malformed."})
	m.slowClients = prometheus.NewCounter(prometheus.CounterOpts{Name: "fastgen_ws_slow_client_closes_total", Help: "Connections closed because the send buffer filled."})
	m.wireBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "fastgen_ws_sent_bytes_total", Help: "Encoded frame bytes queued to WebSocket clients."})
	for _, c := range []prometheus.Collector{m.requests, m.tokens, m.ttft, m.decode, m.queue, m.active, m.conns, m.loaded,
		m.kvBytes, m.heads, m.badFrames, m.slowClients, m.wireBytes} {
		f(c)
	}
	pool := func(get func(*kvcache.Pool) int64) func() float64 {
		return func() float64 {
			if e := s.Engine(); e != nil {
				return float64(get(e.KVPool))
			}
			return 0
		}
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastgen_kv_pool_bytes",
		Help: "Memory held by the KV block pool, in use or free."}, pool((*kvcache.Pool).Bytes)))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastgen_kv_pool_in_use_bytes",
		Help: "Memory of KV blocks held by live sessions."}, pool((*kvcache.Pool).InUseBytes)))
	// The usual build-info gauge: constant 1, the build in its labels, so a
	// dashboard can tell which build served what.
	v := version.Get()
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fastgen_build_info",
		Help:        "The running build (constant 1): commit, modified tree, Go version.",
		ConstLabels: prometheus.Labels{"revision": v.Revision, "modified": fmt.Sprint(v.Modified), "goversion": v.Go}},
		func() float64 { return 1 }))
	// Pre-create label values so dashboards see zeros, not gaps.
	for _, p := range fastgen.PolicyNames {
		m.heads.WithLabelValues(p)
	}
	for _, k := range []string{"full", "compressed"} {
		m.kvBytes.WithLabelValues(k)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) observeProfile(p *fastgen.Profile) {
	if p == nil {
		return
	}
	for _, h := range p.Heads {
		m.heads.WithLabelValues(h.Policy.Name()).Inc()
	}
}

// observeStats records a finished stream. Prompt tokens are counted per
// stream: compare mode prefills once but reports the prompt on both.
func (m *metrics) observeStats(stream string, st engine.Stats) {
	m.tokens.WithLabelValues("prompt").Add(float64(st.PromptN))
	if st.PredictedN > 0 {
		m.ttft.Observe(st.TTFTms / 1000)
	}
	if st.DecodeTokS > 0 {
		m.decode.Observe(1 / st.DecodeTokS)
	}
	m.kvBytes.WithLabelValues("compressed").Add(float64(st.KVBytes))
	m.kvBytes.WithLabelValues("full").Add(float64(st.KVBytesFull))
}

// routeLabel names a route for metrics without unbounded label values.
func routeLabel(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v1/ws":
		return "ws"
	case p == "/v1/chat/completions":
		return "chat"
	case p == "/v1/completions":
		return "completions"
	case strings.HasPrefix(p, "/v1/"):
		return "v1"
	}
	return "other"
}
