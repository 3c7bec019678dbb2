package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fastgen/fastgen/sidecar/eval"
	"github.com/fastgen/fastgen/sidecar/hub"
	"github.com/fastgen/fastgen/sidecar/kvcache"
)

func init() {
	register("eval", "measure FastGen against a full cache and matched baselines over a prompt set", runEval)
}

func runEval(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("eval", stderr)
	var mf modelFlags
	var kf kvFlags
	mf.register(fs)
	kf.register(fs, kvcache.ModeFastGen)
	prompts := fs.String("prompts", "testdata/eval/prompts.jsonl", "prompts: text (one per line, \\n escapes) or JSONL {\"prompt\",\"continuation\"}")
	conts := fs.String("continuations", "", "reference continuations, one per line (default: the full cache's own greedy output)")
	ths := fs.String("thresholds", "0.80,0.85,0.90,0.93,0.95,0.98,0.99", "FastGen thresholds T, comma-separated")
	bases := fs.String("baselines", strings.Join(eval.DefaultBaselines, ","), "baselines matched to each FastGen point (empty = none)")
	maxTokens := fs.Int("max-tokens", 128, "continuation length: reference and free-running output")
	out := fs.String("out", "", "folder for the table, CSV, JSON and plots (default: print the table only)")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of the Markdown table")
	ablations := fs.Bool("ablations", false, "also run FastGen without each component and in the order special,frequent,local,punct")
	workers := fs.Int("workers", 0, "prompts evaluated at once (0 = one per core)")
	shared := fs.Bool("shared-engine", false, "interleave workers on one multi-threaded engine instead of one single-threaded engine each")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastgen eval: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	kv, err := kf.options()
	if err != nil {
		fmt.Fprintln(stderr, "fastgen eval:", err)
		return exitBadInput
	}
	opt := eval.Options{MaxTokens: *maxTokens, FastGen: kv.FastGen, Ablations: *ablations, Workers: *workers, SharedEngine: *shared}
	for _, s := range splitList(*ths) {
		t, err := strconv.ParseFloat(s, 64)
		if err != nil || t <= 0 || t > 1 {
			fmt.Fprintf(stderr, "fastgen eval: bad threshold %q: want a number in (0,1]\n", s)
			return exitBadInput
		}
		opt.Thresholds = append(opt.Thresholds, t)
	}
	opt.Baselines = splitList(*bases)
	if len(opt.Thresholds) == 0 || *maxTokens < 2 || *workers < 0 {
		fmt.Fprintln(stderr, "fastgen eval: need at least one threshold, --max-tokens ≥ 2 and --workers ≥ 0")
		return exitBadInput
	}
	ps, err := eval.LoadPrompts(*prompts)
	if errors.Is(err, os.ErrNotExist) && !flagSet(fs, "prompts") {
		// The default is the repository's own prompt set, a relative path.
		err = fmt.Errorf("%w (the default prompt set is read relative to the repository root: run from there or pass --prompts FILE)", err)
	}
	if err == nil && *conts != "" {
		err = eval.LoadContinuations(*conts, ps)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fastgen eval:", err)
		return exitBadInput
	}
	e, st := mf.load(stderr)
	if e == nil {
		return st
	}
	defer e.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bar := newEvalBar(stderr)
	opt.Progress = bar.update
	res, err := eval.Run(ctx, e, ps, opt)
	bar.finish()
	if err != nil {
		return reportGenErr(stderr, err)
	}
	if *out != "" {
		if err := eval.WriteAll(*out, res); err != nil {
			fmt.Fprintln(stderr, "fastgen eval:", err)
			return exitFailure
		}
		fmt.Fprintf(stderr, "fastgen eval: wrote %s to %s\n", strings.Join(eval.Files, ", "), *out)
	}
	if *asJSON {
		err = eval.WriteJSON(stdout, res)
	} else {
		err = eval.WriteMarkdown(stdout, res)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fastgen eval:", err)
		return exitFailure
	}
	return exitOK
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// evalBar is a one-line progress bar over (prompt, method, point) units,
// redrawn at most ten times a second. It stays silent when stderr is not a
// terminal so logs and pipes do not fill with redraws.
type evalBar struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
	drawn bool
}

func newEvalBar(w io.Writer) *evalBar {
	f, ok := w.(*os.File)
	return &evalBar{w: w, on: ok && hub.IsTerminal(f), start: time.Now()}
}

func (b *evalBar) update(done, total int) {
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if done < total && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	const width = 30
	fill := width * done / max(total, 1)
	eta := "--"
	if done > 0 {
		el := now.Sub(b.start)
		eta = (time.Duration(float64(el) * float64(total-done) / float64(done))).Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d  ETA %s   ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total, eta)
	b.drawn = true
}

func (b *evalBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
