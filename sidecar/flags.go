package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
)

// modelFlags are the flags every command that loads a model shares.
type modelFlags struct {
	path, tokenizer, cacheType string
	ctx, threads, blockEntries int
	device                     string
	noMmap                     bool
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.path, "model", os.Getenv("FASTGEN_MODEL"), "model file: GGUF or llama2.c checkpoint (default $FASTGEN_MODEL)")
	fs.StringVar(&m.tokenizer, "tokenizer", "", "llama2.c tokenizer.bin (default: beside a .bin checkpoint)")
	fs.IntVar(&m.ctx, "ctx", 0, "context length (0 = the model file's)")
	fs.IntVar(&m.threads, "threads", runtime.NumCPU(), "compute threads")
	fs.StringVar(&m.cacheType, "cache-type", kvcache.DefaultDType.String(), "KV cache element type: f16 (half the memory, llama.cpp's default) or f32 (float32 throughout, as the reference runs)")
	fs.IntVar(&m.blockEntries, "kv-block", kvcache.DefaultBlockEntries, "entries per KV cache block")
	fs.StringVar(&m.device, "device", "cpu", deviceHelp)
	fs.BoolVar(&m.noMmap, "no-mmap", false, noMmapHelp)
}

const noMmapHelp = "copy the model into memory with 2 MB pages instead of mapping the file: faster decode where the mapping gets only 4 KB pages, slower load, memory not shared"

// load opens the engine, or prints why not and returns the exit status.
func (m *modelFlags) load(stderr io.Writer) (*engine.Engine, int) {
	if m.path == "" {
		fmt.Fprintln(stderr, "fastgen: no model: pass --model PATH (a .gguf file or a llama2.c .bin) or set FASTGEN_MODEL")
		return nil, exitBadInput
	}
	path, err := resolveModel(m.path)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen:", err)
		return nil, exitBadInput
	}
	dt, err := kvcache.ParseDType(m.cacheType)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen:", err)
		return nil, exitBadInput
	}
	if m.ctx < 0 || m.threads < 1 || m.blockEntries < 1 {
		fmt.Fprintln(stderr, "fastgen: --ctx must be ≥ 0, --threads and --kv-block ≥ 1")
		return nil, exitBadInput
	}
	backend, err := newBackend(m.device)
	if err != nil {
		fmt.Fprintln(stderr, "fastgen:", err)
		return nil, exitBadInput
	}
	e, err := engine.Load(path, model.LoadOptions{Tokenizer: m.tokenizer, Ctx: m.ctx, NoMmap: m.noMmap},
		engine.Options{Backend: backend, Threads: m.threads, CacheDType: dt, BlockEntries: m.blockEntries})
	if err != nil {
		fmt.Fprintln(stderr, "fastgen:", err)
		if model.IsBadModel(err) || errors.Is(err, os.ErrNotExist) {
			return nil, exitBadInput
		}
		return nil, exitFailure
	}
	return e, exitOK
}

// kvFlags choose the cache mode and FastGen's options.
type kvFlags struct {
	mode, budget, order, gqa, score string
	threshold, rLocal, rFreq        float64
	recoveryRows                    int
	seed                            uint64
}

func (k *kvFlags) register(fs *flag.FlagSet, defMode string) {
	d := fastgen.Defaults()
	fs.StringVar(&k.mode, "kv", defMode, "KV cache: full, fastgen, local, frequent, h2o, streaming or random")
	fs.Float64Var(&k.threshold, "threshold", d.Threshold, "FastGen recovery threshold T")
	fs.StringVar(&k.budget, "budget", "", "baseline kept budget: a ratio in (0,1] or a token count")
	fs.Float64Var(&k.rLocal, "r-local", d.RLocal, "FastGen local window as a share of the prompt (r_l)")
	fs.Float64Var(&k.rFreq, "r-freq", d.RFreq, "FastGen frequent budget as a share of the length (r_f)")
	fs.StringVar(&k.order, "order", "special,punct,frequent,local", "FastGen candidate order (drop or reorder components for ablations)")
	fs.IntVar(&k.recoveryRows, "recovery-rows", 0, "recovery over the last N prompt rows (0 = all)")
	fs.StringVar(&k.gqa, "gqa", "mean", "GQA aggregation of a KV head's query heads: mean or min")
	fs.StringVar(&k.score, "score", "cumulative", "frequency score: cumulative or mean")
}

func (k *kvFlags) options() (engine.KVOptions, error) {
	opt := fastgen.Defaults()
	opt.Threshold, opt.RLocal, opt.RFreq, opt.RecoveryRows = k.threshold, k.rLocal, k.rFreq, k.recoveryRows
	var err error
	if opt.Order, err = fastgen.ParseOrder(k.order); err != nil {
		return engine.KVOptions{}, err
	}
	if opt.GQA, err = fastgen.ParseAggregation(k.gqa); err != nil {
		return engine.KVOptions{}, err
	}
	if opt.Score, err = kvcache.ParseScoreMode(k.score); err != nil {
		return engine.KVOptions{}, err
	}
	kv := engine.KVOptions{Mode: k.mode, FastGen: opt, Seed: k.seed}
	if k.budget != "" {
		if kv.Budget, err = kvcache.ParseBudget(k.budget); err != nil {
			return engine.KVOptions{}, err
		}
	}
	return kv, kv.Validate()
}
