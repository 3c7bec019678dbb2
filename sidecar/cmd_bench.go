package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
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
	Kernels     string  `json:"kernels"` // the CPU kernel set measured (avx2, avx512vnni, generic)
	KV          string  `json:"kv"`
	CacheType   string  `json:"cache_type"`
	Context     int     `json:"context"`
	NoMmap      bool    `json:"no_mmap,omitempty"`
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
	// Decode after the prompt also reads every kept K/V row each token: at
	// 512–640 context that is ~20% of 110M's Q8_0 weight bytes. KVReadBytes
	// is the mean per decoded token; RooflineKVPct counts it in the bytes
	// that must move, so it is that decode's true memory roofline.
	KVReadBytes   int64   `json:"kv_read_bytes_per_token"`
	RooflineKVPct float64 `json:"roofline_kv_pct"`
	// With --kv full: --decode tokens from an empty context, as llama-bench's
	// tg test (the condition of llama.cpp's published decode rates), and its
	// share of the weight roofline.
	TGTokS        float64 `json:"tg_tok_s,omitempty"`
	TGRooflinePct float64 `json:"tg_roofline_pct,omitempty"`
	PrunedRatio   float64 `json:"pruned_ratio"`
	KVBytes       int64   `json:"kv_bytes"`
	KVBytesFull   int64   `json:"kv_bytes_full"`
	ProfileMs     float64 `json:"profile_ms"`
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
	// With --vs-llamacpp: llama.cpp's llama-bench on the same file, threads,
	// prompt, decode length and K/V type, run right after these runs (the
	// fastest sample of each test), its tg's share of the same roofline,
	// and fastgen's rates over llama.cpp's.
	LlamaCppBuild         string  `json:"llamacpp_build,omitempty"`
	LlamaCppPrefillTokS   float64 `json:"llamacpp_prefill_tok_s,omitempty"`
	LlamaCppDecodeTokS    float64 `json:"llamacpp_decode_tok_s,omitempty"`
	LlamaCppTGTokS        float64 `json:"llamacpp_tg_tok_s,omitempty"`
	LlamaCppTGRooflinePct float64 `json:"llamacpp_tg_roofline_pct,omitempty"`
	VsLlamaCppPrefill     float64 `json:"vs_llamacpp_prefill,omitempty"`
	VsLlamaCppDecode      float64 `json:"vs_llamacpp_decode,omitempty"`
	VsLlamaCppTG          float64 `json:"vs_llamacpp_tg,omitempty"`
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", stderr)
	shapes := fs.String("shape", "110M", "comma-separated shapes: 15M, 110M, 1.1B")
	dtypes := fs.String("dtype", "f16", "comma-separated weight types: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k")
	threads := fs.Int("threads", 0, "compute threads (0 = all cores)")
	promptN := fs.Int("prompt", 512, "prompt tokens for prefill")
	decodeN := fs.Int("decode", 128, "tokens to decode")
	reps := fs.Int("reps", 3, "measured runs after a warm-up; the fastest prefill and the fastest decode are reported")
	kvMode := fs.String("kv", "full", "cache mode: full, fastgen, or a baseline (local, h2o, ...) with --budget")
	threshold := fs.Float64("threshold", 0.98, "FastGen threshold T with --kv fastgen")
	// llama.cpp caches K/V in f16 by default; so does bench, so that decode
	// reads comparable KV bytes beside the weights.
	cacheType := fs.String("cache-type", kvcache.DefaultDType.String(), "KV cache element type: f16 or f32")
	kvBlock := fs.Int("kv-block", kvcache.DefaultBlockEntries, "entries per KV cache block")
	budget := fs.String("budget", "", "kept budget of a baseline cache: a ratio or a token count")
	asJSON := fs.Bool("json", false, "one JSON object per run")
	cacheDir := fs.String("cache-dir", "", "where synthetic models are kept (default: the user cache dir)")
	vsFlops := fs.Bool("vs-flops", false, "also measure the FMA peak and report prefill's share of it")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	noMmap := fs.Bool("no-mmap", false, noMmapHelp)
	llamaBench := fs.String("vs-llamacpp", "", "path of llama.cpp's llama-bench: also run it on each model, same threads and sizes, and report both (task llamacpp builds one)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if *llamaBench != "" {
		bin, err := exec.LookPath(*llamaBench)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen bench: --vs-llamacpp:", err)
			return exitBadInput
		}
		*llamaBench = bin
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
	if *promptN < 1 || *decodeN < 1 || *reps < 1 {
		fmt.Fprintln(stderr, "fastgen bench: --prompt, --decode and --reps must be ≥ 1")
		return exitBadInput
	}
	if *threads < 0 || *kvBlock < 1 {
		fmt.Fprintln(stderr, "fastgen bench: --threads must be ≥ 0 (0 = all cores) and --kv-block ≥ 1")
		return exitBadInput
	}
	ct, err := kvcache.ParseDType(*cacheType)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen bench:", err)
		return exitBadInput
	}
	// Every name is checked before anything is measured, so a typo fails
	// in a second, not after the runs before it; a shape and type that
	// cannot go together are skipped, so a cross product still runs the
	// rest.
	type run struct {
		shape model.Shape
		dt    tensor.DType
	}
	var runs []run
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
			if err := shape.Storable(dt); err != nil {
				fmt.Fprintf(stderr, "fastgen bench: skipping %s %s: %v\n", shape.Name, dt, err)
				continue
			}
			runs = append(runs, run{shape, dt})
		}
	}
	if len(runs) == 0 {
		fmt.Fprintln(stderr, "fastgen bench: no shape and type given can be benchmarked")
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
			fmt.Fprintf(stdout, "FMA peak: %.1f GFLOP/s (independent FMAs on registers)\n", peak)
		}
		fmt.Fprintf(stdout, "%-6s %-6s %12s %12s %10s %9s %9s %9s %10s %9s\n", "shape", "dtype", "prefill t/s", "decode t/s", "GB/s", "roofline", "same-min", "+kv", "tg t/s", "tg roof")
	}
	for _, rn := range runs {
		shape, dt := rn.shape, rn.dt
		r, err := benchOne(dir, shape, dt, *promptN, *decodeN, *reps, *noMmap, *vsFlops, kv, engine.Options{Threads: *threads, CacheDType: ct, BlockEntries: *kvBlock}, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen bench:", err)
			return exitFailure
		}
		if *llamaBench != "" {
			// Our engine is closed by now: llama.cpp gets the cores and the
			// page cache to itself.
			lc, err := runLlamaBench(context.Background(), *llamaBench, model.SynthesizedPath(dir, shape, dt), r.Threads, *promptN, *decodeN, *reps, ct.String(), *noMmap)
			if err != nil {
				fmt.Fprintln(stderr, "fastgen bench:", err)
				return exitFailure
			}
			r.setLlamaCpp(lc)
		}
		// The higher of the start-up and the same-minute bandwidth: the
		// roofline is what the memory can do, not what it did under load.
		r.BandwidthGBs = max(bw, r.BandwidthNowGBs)
		r.RooflinePct = 100 * r.DecodeGBs / r.BandwidthGBs
		r.RooflineNowPct = 100 * r.DecodeGBs / r.BandwidthNowGBs
		// A rate's share of the roofline when each token reads these bytes.
		pct := func(tokS float64, bytes int64) float64 { return 100 * tokS * float64(bytes) / 1e9 / r.BandwidthGBs }
		r.RooflineKVPct = pct(r.DecodeTokS, r.WeightBytes+r.KVReadBytes)
		r.TGRooflinePct = pct(r.TGTokS, r.WeightBytes)
		r.LlamaCppTGRooflinePct = pct(r.LlamaCppTGTokS, r.WeightBytes)
		if peak > 0 {
			// The higher of the start-up and the after-run peak, as
			// for the bandwidth.
			r.PrefillGFLOPs = r.PrefillTokS * prefillFLOPs(shape, *promptN) / float64(*promptN) / 1e9
			r.PeakGFLOPs = max(peak, r.PeakGFLOPs)
			r.PrefillPeakPct = 100 * r.PrefillGFLOPs / r.PeakGFLOPs
		}
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintf(stdout, "%-6s %-6s %12.1f %12.1f %10.1f %8.1f%% %8.1f%% %8.1f%% %10.1f %8.1f%%  kv %s pruned %.1f%% profile %.2f%%", r.Shape, r.DType, r.PrefillTokS,
				r.DecodeTokS, r.DecodeGBs, r.RooflinePct, r.RooflineNowPct, r.RooflineKVPct, r.TGTokS, r.TGRooflinePct, r.KV, 100*r.PrunedRatio, r.ProfilePct)
			if peak > 0 {
				fmt.Fprintf(stdout, "  prefill %.1f GFLOP/s = %.1f%% of peak", r.PrefillGFLOPs, r.PrefillPeakPct)
			}
			fmt.Fprintln(stdout)
			if r.LlamaCppBuild != "" {
				fmt.Fprintf(stdout, "%-6s %-6s %12.1f %12.1f %10s %9s %9s %9s %10.1f %8.1f%%  llama.cpp %s: fastgen ×%.2f prefill, ×%.2f decode, ×%.2f tg\n", "", "llama", r.LlamaCppPrefillTokS,
					r.LlamaCppDecodeTokS, "", "", "", "", r.LlamaCppTGTokS, r.LlamaCppTGRooflinePct, r.LlamaCppBuild, r.VsLlamaCppPrefill, r.VsLlamaCppDecode, r.VsLlamaCppTG)
			}
		}
	}
	return exitOK
}

func benchOne(dir string, shape model.Shape, dt tensor.DType, promptN, decodeN, reps int, noMmap, vsFlops bool, kv engine.KVOptions, eo engine.Options, stderr io.Writer) (benchJSON, error) {
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
	e, err := engine.Load(path, model.LoadOptions{Ctx: ctxLen, NoMmap: noMmap}, eo)
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
	// One run: the prompt's prefill, then decodeN greedy tokens.
	type runTimes struct {
		prefill, decode, prefillCPU, decodeCPU time.Duration
		keptMean                               int64
		s                                      *engine.Session
	}
	run := func() (runTimes, error) {
		var t runTimes
		s, err := e.NewSession(kv)
		if err != nil {
			return t, err
		}
		t.s = s
		t0, c0 := time.Now(), processCPU()
		logits, err := s.Prefill(ctx, prompt, false)
		if err != nil {
			return t, err
		}
		t.prefill = time.Since(t0)
		t1, c1 := time.Now(), processCPU()
		t.prefillCPU = c1 - c0
		kept0 := keptEntries(s)
		if err := greedy(ctx, s, logits, decodeN); err != nil {
			return t, err
		}
		t.decodeCPU, t.decode = processCPU()-c1, time.Since(t1)
		t.keptMean = (kept0 + keptEntries(s)) / 2
		return t, nil
	}
	// llama-bench's tg: decodeN tokens from an empty context.
	tgRun := func() (time.Duration, error) {
		s, err := e.NewSession(kv)
		if err != nil {
			return 0, err
		}
		defer s.Close()
		t0 := time.Now()
		logits, err := s.Decode(ctx, 1)
		if err == nil {
			err = greedy(ctx, s, logits, decodeN-1)
		}
		return time.Since(t0), err
	}
	// One warm-up run pages the weights in and sizes every buffer. Then the
	// fastest prefill and the fastest decode of reps runs are kept, each on
	// its own, as the bandwidth is the best of its passes: on a shared
	// machine a slow run measures the neighbours, and they need not slow
	// both halves of a run. The session of the fastest whole run stays
	// open for the cache's statistics.
	warm, err := run()
	if warm.s != nil {
		warm.s.Close()
	}
	if err != nil {
		return benchJSON{}, err
	}
	var best runTimes
	var fastPrefill, fastDecode struct{ wall, cpu time.Duration }
	var tg time.Duration
	for range reps {
		t, err := run()
		if err != nil {
			if t.s != nil {
				t.s.Close()
			}
			return benchJSON{}, err
		}
		if fastPrefill.wall == 0 || t.prefill < fastPrefill.wall {
			fastPrefill.wall, fastPrefill.cpu = t.prefill, t.prefillCPU
		}
		if fastDecode.wall == 0 || t.decode < fastDecode.wall {
			fastDecode.wall, fastDecode.cpu = t.decode, t.decodeCPU
		}
		if best.s == nil || t.prefill+t.decode < best.prefill+best.decode {
			if best.s != nil {
				best.s.Close()
			}
			best = t
		} else {
			t.s.Close()
		}
		if kv.Mode == kvcache.ModeFull {
			d, err := tgRun()
			if err != nil {
				best.s.Close()
				return benchJSON{}, err
			}
			if tg == 0 || d < tg {
				tg = d
			}
		}
	}
	s, prefill, decode := best.s, fastPrefill.wall, fastDecode.wall
	// Bandwidth (and with --vs-flops the FMA peak) measured right after
	// the runs: on a shared machine both move by minutes, and a roofline
	// taken while a neighbour held the cores reads too low.
	bp := tensor.NewPool(eo.Threads)
	bwNow := tensor.MeasureBandwidth(bp, 256<<20, 3)
	var peakNow float64
	if vsFlops {
		peakNow = tensor.MeasureFLOPS(bp, 5)
	}
	bp.Close()
	debug.FreeOSMemory()
	defer s.Close()
	wb := e.Model.WeightBytes()
	r := benchJSON{
		BandwidthNowGBs: bwNow,
		PeakGFLOPs:      peakNow,
		Shape:           shape.Name, DType: dt.String(), Threads: e.Threads(), Kernels: tensor.KernelName(), KV: kv.Mode, CacheType: eo.CacheDType.String(), Context: promptN + decodeN, NoMmap: noMmap,
		PrefillTokS:    float64(promptN) / prefill.Seconds(),
		DecodeTokS:     float64(decodeN) / decode.Seconds(),
		PrefillTokCPUs: perSecond(promptN, fastPrefill.cpu),
		DecodeTokCPUs:  perSecond(decodeN, fastDecode.cpu),
		WeightBytes:    wb,
		PrunedRatio:    s.Cache().PrunedRatio(), KVBytes: s.Cache().Bytes(), KVBytesFull: s.Cache().FullBytes(),
		ProfileMs:   float64(s.ProfileTime.Microseconds()) / 1000,
		KVReadBytes: best.keptMean * 2 * int64(e.Model.Config.HeadDim) * int64(eo.CacheDType.Size()),
	}
	if tg > 0 {
		r.TGTokS = float64(decodeN) / tg.Seconds()
	}
	r.ProfilePct = 100 * s.ProfileTime.Seconds() / (best.prefill + best.decode).Seconds()
	r.DecodeGBs = r.DecodeTokS * float64(wb) / 1e9
	r.RSSBytes = residentBytes()
	return r, nil
}

// setLlamaCpp records llama-bench's rates and fastgen's over them.
func (r *benchJSON) setLlamaCpp(lc llamaCppRates) {
	r.LlamaCppBuild = lc.Build
	r.LlamaCppPrefillTokS, r.LlamaCppDecodeTokS, r.LlamaCppTGTokS = lc.Prefill, lc.Decode, lc.TG
	r.VsLlamaCppPrefill = r.PrefillTokS / lc.Prefill
	r.VsLlamaCppDecode = r.DecodeTokS / lc.Decode
	r.VsLlamaCppTG = r.TGTokS / lc.TG
}

// greedy decodes n tokens, each the argmax of the previous logits.
func greedy(ctx context.Context, s *engine.Session, logits []float32, n int) error {
	for range n {
		var err error
		if logits, err = s.Decode(ctx, tensor.Argmax(logits)); err != nil {
			return err
		}
	}
	return nil
}

// keptEntries is the number of K/V rows decode reads each token: every
// head's kept entries.
func keptEntries(s *engine.Session) int64 {
	var n int64
	for _, k := range s.Cache().KeptAll(nil) {
		n += int64(k)
	}
	return n
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
