package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

func init() {
	register("bench", "measure prefill and decode speed on random-weight models of real shapes", runBench)
}

// benchJSON is one run's line of `bench --json`. Field names are fixed.
type benchJSON struct {
	Shape       string  `json:"shape"`
	DType       string  `json:"dtype"`
	Threads     int     `json:"threads"`
	KV          string  `json:"kv"`
	CacheType   string  `json:"cache_type"`
	Context     int     `json:"context"`
	PrefillTokS float64 `json:"prefill_tok_s"`
	DecodeTokS  float64 `json:"decode_tok_s"`
	// Tokens per second of process CPU time (user+system, all threads): on
	// a machine shared with other jobs this ignores time spent waiting for
	// a core, so before/after comparisons hold across minutes.
	PrefillTokCPUs float64 `json:"prefill_tok_cpu_s,omitempty"`
	DecodeTokCPUs  float64 `json:"decode_tok_cpu_s,omitempty"`
	WeightBytes    int64   `json:"weight_bytes_per_token"`
	DecodeGBs      float64 `json:"decode_gbs"`
	BandwidthGBs   float64 `json:"bandwidth_gbs"`
	RooflinePct    float64 `json:"roofline_pct"`
	// The same, against bandwidth measured right after decoding (a shared
	// machine's roofline moves by minutes).
	BandwidthNowGBs float64 `json:"bandwidth_now_gbs"`
	RooflineNowPct  float64 `json:"roofline_now_pct"`
	PrunedRatio     float64 `json:"pruned_ratio"`
	KVBytes         int64   `json:"kv_bytes"`
	KVBytesFull     int64   `json:"kv_bytes_full"`
	ProfileMs       float64 `json:"profile_ms"`
	// ProfilePct is profiling's share of the whole generation time.
	ProfilePct float64 `json:"profile_pct"`
	// With --vs-flops: prefill's arithmetic rate and its share of the FMA
	// peak MeasureFLOPS finds on the same threads.
	PrefillGFLOPs  float64 `json:"prefill_gflops,omitempty"`
	PeakGFLOPs     float64 `json:"peak_gflops,omitempty"`
	PrefillPeakPct float64 `json:"prefill_peak_pct,omitempty"`
	// RSSBytes is the process's resident set after the runs (Linux): the
	// mmapped weight pages touched, the KV cache and the working buffers.
	RSSBytes int64 `json:"rss_bytes,omitempty"`
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", stderr)
	shapes := fs.String("shape", "110M", "comma-separated shapes: 15M, 110M, 1.1B")
	dtypes := fs.String("dtype", "f16", "comma-separated weight types: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k")
	threads := fs.Int("threads", 0, "compute threads (0 = all cores)")
	promptN := fs.Int("prompt", 512, "prompt tokens for prefill")
	decodeN := fs.Int("decode", 128, "tokens to decode")
	kvMode := fs.String("kv", "full", "cache mode: full, fastgen, or a baseline (local, h2o, ...) with --budget")
	threshold := fs.Float64("threshold", 0.98, "FastGen threshold T with --kv fastgen")
	// llama.cpp caches K/V in f16 by default; so does bench, so that decode
	// reads comparable KV bytes beside the weights.
	cacheType := fs.String("cache-type", "f16", "KV cache element type: f16 or f32")
	kvBlock := fs.Int("kv-block", kvcache.DefaultBlockEntries, "entries per KV cache block")
	budget := fs.String("budget", "", "kept budget of a baseline cache: a ratio or a token count")
	asJSON := fs.Bool("json", false, "one JSON object per run")
	cacheDir := fs.String("cache-dir", "", "where synthetic models are kept (default: the user cache dir)")
	vsFlops := fs.Bool("vs-flops", false, "also measure the FMA peak and report prefill's share of it")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	kv := engine.KVOptions{Mode: *kvMode}
	if *budget != "" {
		b, err := kvcache.ParseBudget(*budget)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen bench:", err)
			return exitBadInput
		}
		kv.Budget = b
	}
	if kv.Mode == kvcache.ModeFastGen {
		kv = engine.DefaultKV()
		kv.FastGen.Threshold = *threshold
	}
	if err := kv.Validate(); err != nil {
		fmt.Fprintln(stderr, "fastgen bench:", err)
		return exitBadInput
	}
	if *promptN < 1 || *decodeN < 1 {
		fmt.Fprintln(stderr, "fastgen bench: --prompt and --decode must be ≥ 1")
		return exitBadInput
	}
	dir := *cacheDir
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			fmt.Fprintln(stderr, "fastgen bench:", err)
			return exitFailure
		}
		dir = filepath.Join(d, "fastgen", "bench")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen bench:", err)
			return exitFailure
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "fastgen bench:", err)
			return exitFailure
		}
		defer pprof.StopCPUProfile()
	}
	pool := tensor.NewPool(*threads)
	bw := tensor.MeasureBandwidth(pool, 1<<30, 5)
	var peak float64
	if *vsFlops {
		peak = tensor.MeasureFLOPS(pool, 5)
	}
	nThreads := pool.Threads()
	pool.Close()
	if !*asJSON {
		fmt.Fprintf(stdout, "read bandwidth: %.1f GB/s on %d threads (%s)\n", bw, nThreads, tensor.KernelName())
		if peak > 0 {
			fmt.Fprintf(stdout, "FMA peak: %.1f GFLOP/s (MatMul micro-kernel, L1-resident)\n", peak)
		}
		fmt.Fprintf(stdout, "%-6s %-6s %12s %12s %10s %9s %9s\n", "shape", "dtype", "prefill t/s", "decode t/s", "GB/s", "roofline", "same-min")
	}
	for _, sn := range strings.Split(*shapes, ",") {
		shape, ok := model.Shapes[strings.TrimSpace(sn)]
		if !ok {
			fmt.Fprintf(stderr, "fastgen bench: unknown shape %q (want 15M, 110M or 1.1B)\n", sn)
			return exitBadInput
		}
		for _, dn := range strings.Split(*dtypes, ",") {
			dt, err := tensor.ParseDType(strings.TrimSpace(dn))
			if err != nil {
				fmt.Fprintln(stderr, "fastgen bench:", err)
				return exitBadInput
			}
			ct, err := kvcache.ParseDType(*cacheType)
			if err != nil {
				fmt.Fprintln(stderr, "fastgen bench:", err)
				return exitBadInput
			}
			r, err := benchOne(dir, shape, dt, *promptN, *decodeN, kv, engine.Options{Threads: *threads, CacheDType: ct, BlockEntries: *kvBlock}, stderr)
			if err != nil {
				fmt.Fprintln(stderr, "fastgen bench:", err)
				return exitFailure
			}
			// The higher of the start-up and the same-minute bandwidth: the
			// roofline is what the memory can do, not what it did under load.
			r.BandwidthGBs = max(bw, r.BandwidthNowGBs)
			r.RooflinePct = 100 * r.DecodeGBs / r.BandwidthGBs
			r.RooflineNowPct = 100 * r.DecodeGBs / r.BandwidthNowGBs
			if peak > 0 {
				r.PrefillGFLOPs = r.PrefillTokS * prefillFLOPs(shape, *promptN) / float64(*promptN) / 1e9
				r.PeakGFLOPs = peak
				r.PrefillPeakPct = 100 * r.PrefillGFLOPs / peak
			}
			if *asJSON {
				b, _ := json.Marshal(r)
				fmt.Fprintln(stdout, string(b))
			} else {
				fmt.Fprintf(stdout, "%-6s %-6s %12.1f %12.1f %10.1f %8.1f%% %8.1f%%  kv %s pruned %.1f%% profile %.2f%%", r.Shape, r.DType, r.PrefillTokS,
					r.DecodeTokS, r.DecodeGBs, r.RooflinePct, r.RooflineNowPct, r.KV, 100*r.PrunedRatio, r.ProfilePct)
				if peak > 0 {
					fmt.Fprintf(stdout, "  prefill %.1f GFLOP/s = %.1f%% of peak", r.PrefillGFLOPs, r.PrefillPeakPct)
				}
				fmt.Fprintln(stdout)
			}
		}
	}
	return exitOK
}

func benchOne(dir string, shape model.Shape, dt tensor.DType, promptN, decodeN int, kv engine.KVOptions, eo engine.Options, stderr io.Writer) (benchJSON, error) {
	path := model.SynthesizedPath(dir, shape, dt)
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stderr, "synthesizing %s %s model at %s ...\n", shape.Name, dt, path)
		if err := model.Synthesize(path, shape, dt, 1); err != nil {
			return benchJSON{}, err
		}
	}
	// Give back the bandwidth buffers and earlier runs' memory so that the
	// RSS reported below is this model's own.
	debug.FreeOSMemory()
	ctxLen := promptN + decodeN + 1
	e, err := engine.Load(path, model.LoadOptions{Ctx: ctxLen}, eo)
	if err != nil {
		return benchJSON{}, err
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	prompt := make([]int, promptN)
	prompt[0] = 1
	for i := 1; i < promptN; i++ {
		prompt[i] = 259 + rng.IntN(shape.Vocab-259)
	}
	ctx := context.Background()
	var prefillCPU, decodeCPU time.Duration
	run := func() (time.Duration, time.Duration, *engine.Session, error) {
		s, err := e.NewSession(kv)
		if err != nil {
			return 0, 0, nil, err
		}
		t0, c0 := time.Now(), processCPU()
		logits, err := s.Prefill(ctx, prompt, false)
		if err != nil {
			return 0, 0, s, err
		}
		prefill := time.Since(t0)
		t1, c1 := time.Now(), processCPU()
		prefillCPU = c1 - c0
		for i := 0; i < decodeN; i++ {
			next := 0
			for j, v := range logits {
				if v > logits[next] {
					next = j
				}
			}
			if logits, err = s.Decode(ctx, next); err != nil {
				return 0, 0, s, err
			}
		}
		decodeCPU = processCPU() - c1
		return prefill, time.Since(t1), s, nil
	}
	// One warm-up run pages the weights in and sizes every buffer.
	if _, _, s, err := run(); err != nil {
		return benchJSON{}, err
	} else {
		s.Close()
	}
	prefill, decode, s, err := run()
	if err != nil {
		return benchJSON{}, err
	}
	// Bandwidth measured right after decoding: on a shared machine the
	// roofline moves by minutes, so compare with one from the same moment.
	bp := tensor.NewPool(eo.Threads)
	bwNow := tensor.MeasureBandwidth(bp, 256<<20, 3)
	bp.Close()
	debug.FreeOSMemory()
	defer s.Close()
	wb := e.Model.WeightBytes()
	r := benchJSON{
		BandwidthNowGBs: bwNow,
		Shape:           shape.Name, DType: dt.String(), Threads: e.Threads(), KV: kv.Mode, CacheType: eo.CacheDType.String(), Context: promptN + decodeN,
		PrefillTokS:    float64(promptN) / prefill.Seconds(),
		DecodeTokS:     float64(decodeN) / decode.Seconds(),
		PrefillTokCPUs: perSecond(promptN, prefillCPU),
		DecodeTokCPUs:  perSecond(decodeN, decodeCPU),
		WeightBytes:    wb,
		PrunedRatio:    s.Cache().PrunedRatio(), KVBytes: s.Cache().Bytes(), KVBytesFull: s.Cache().FullBytes(),
		ProfileMs: float64(s.ProfileTime.Microseconds()) / 1000,
	}
	r.ProfilePct = 100 * s.ProfileTime.Seconds() / (prefill + decode).Seconds()
	r.DecodeGBs = r.DecodeTokS * float64(wb) / 1e9
	r.RSSBytes = residentBytes()
	return r, nil
}

// prefillFLOPs counts the arithmetic of an n-token prefill: two flops per
// weight per token in every layer's matrices, the last token's logits, and
// attention's QKᵀ and PV over the causal triangle.
func prefillFLOPs(s model.Shape, n int) float64 {
	hd := s.Dim / s.Heads
	kvd := hd * s.KVHeads
	perLayer := float64(2*s.Dim*s.Dim + 2*s.Dim*kvd + 3*s.Dim*s.Hidden)
	attn := 4 * float64(s.Dim) * float64(n) * float64(n+1) / 2
	return float64(s.Layers)*(2*float64(n)*perLayer+attn) + 2*float64(s.Dim)*float64(s.Vocab)
}

// residentBytes reads VmRSS from /proc/self/status (0 where there is none).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
