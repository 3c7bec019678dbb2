package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/hub"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/store"
)

func init() {
	register("generate", "generate text from a prompt, or chat on stdin", runGenerate)
}

// resolveModel accepts a file path or a name in the local model store.
func resolveModel(nameOrPath string) (string, error) { return store.Resolve(nameOrPath) }

// genJSON is the one JSON object `generate --json` prints last. Field names
// are fixed: other tools read them.
type genJSON struct {
	PromptTokens []int        `json:"prompt_tokens"`
	Tokens       []int        `json:"tokens"`
	Text         string       `json:"text"`
	FinishReason string       `json:"finish_reason"`
	Stats        genStats     `json:"stats"`
	Profile      *profileJSON `json:"profile,omitempty"`
}

type genStats struct {
	PromptN     int     `json:"prompt_n"`
	PredictedN  int     `json:"predicted_n"`
	PrefillTokS float64 `json:"prefill_tok_s"`
	DecodeTokS  float64 `json:"decode_tok_s"`
	KVBytes     int64   `json:"kv_bytes"`
	KVBytesFull int64   `json:"kv_bytes_full"`
	PrunedRatio float64 `json:"pruned_ratio"`
	ProfileMs   float64 `json:"profile_ms"`
}

type profileJSON struct {
	Heads []headJSON `json:"heads"`
}

type headJSON struct {
	Layer    int                `json:"layer"`
	KVHead   int                `json:"kv_head"`
	Policy   string             `json:"policy"`
	Recovery map[string]float64 `json:"recovery"`
	Mass     massJSON           `json:"mass"`
}

type massJSON struct {
	Special float64 `json:"special"`
	Punct   float64 `json:"punct"`
	Local   float64 `json:"local"`
	Other   float64 `json:"other"`
}

func toProfileJSON(p *fastgen.Profile) *profileJSON {
	if p == nil {
		return nil
	}
	out := &profileJSON{Heads: make([]headJSON, 0, len(p.Heads))}
	for _, h := range p.Heads {
		rec := make(map[string]float64, len(h.Recovery))
		for i, r := range h.Recovery {
			rec[p.Candidates[i].Name()] = r
		}
		out.Heads = append(out.Heads, headJSON{Layer: h.Layer, KVHead: h.KVHead, Policy: h.Policy.Name(), Recovery: rec,
			Mass: massJSON{h.Mass.Special, h.Mass.Punct, h.Mass.Local, h.Mass.Other}})
	}
	return out
}

// textSink streams generated text to stdout as it is decoded.
type textSink struct {
	engine.NopSink
	w io.Writer
}

func (t textSink) Token(_ string, tok engine.Token) { io.WriteString(t.w, tok.Text) }

func runGenerate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("generate", stderr)
	var mf modelFlags
	var kf kvFlags
	mf.register(fs)
	kf.register(fs, kvcache.ModeFull)
	prompt := fs.String("prompt", "", "prompt text")
	chat := fs.Bool("chat", false, "chat: each line on stdin is a user message, answered in turn")
	system := fs.String("system", "", "system message for --chat")
	maxTokens := fs.Int("max-tokens", 256, "most tokens to generate (0 = until EOS or the context is full)")
	temp := fs.Float64("temperature", 0, "sampling temperature (0 = greedy)")
	topK := fs.Int("top-k", 0, "sample among the k most likely tokens (0 = off)")
	topP := fs.Float64("top-p", 1, "nucleus sampling mass (1 = off)")
	minP := fs.Float64("min-p", 0, "drop tokens below this share of the best one's probability")
	rep := fs.Float64("repeat-penalty", 1, "repetition penalty over the last 64 tokens (1 = off)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	asJSON := fs.Bool("json", false, "print one JSON object with tokens and stats as the last line")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fastgen generate: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	if (*prompt == "") == !*chat {
		fmt.Fprintln(stderr, "fastgen generate: give exactly one of --prompt TEXT or --chat")
		return exitBadInput
	}
	kf.seed = *seed
	kv, err := kf.options()
	if err != nil {
		fmt.Fprintln(stderr, "fastgen generate:", err)
		return exitBadInput
	}
	req := engine.Request{
		Prompt: *prompt, MaxTokens: *maxTokens, KV: kv,
		Sampler: engine.SamplerConfig{Temperature: *temp, TopK: *topK, TopP: *topP, MinP: *minP, RepeatPenalty: *rep, Seed: *seed},
	}
	if err := req.Sampler.Validate(); err != nil {
		fmt.Fprintln(stderr, "fastgen generate:", err)
		return exitBadInput
	}
	if *maxTokens < 0 {
		fmt.Fprintln(stderr, "fastgen generate: --max-tokens must be ≥ 0")
		return exitBadInput
	}
	e, st := mf.load(stderr)
	if e == nil {
		return st
	}
	defer e.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Into a pipe or file, text is buffered: a write per token would cost
	// more than the token. A terminal sees every token as it comes.
	if f, ok := stdout.(*os.File); ok && !hub.IsTerminal(f) {
		bw := bufio.NewWriterSize(stdout, 64<<10)
		defer bw.Flush()
		stdout = bw
	}
	var sink engine.Sink = textSink{w: stdout}
	if *chat {
		return chatLoop(ctx, e, kv, *system, req, sink, os.Stdin, stdout, stderr, *asJSON)
	}
	res, err := e.Generate(ctx, req, sink)
	if err != nil {
		return reportGenErr(stderr, err)
	}
	fmt.Fprintln(stdout)
	if *asJSON {
		printGenJSON(stdout, res[0])
	}
	return exitOK
}

func reportGenErr(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "fastgen:", err)
	var bad *engine.BadRequestError
	if errors.As(err, &bad) || errors.Is(err, engine.ErrContextFull) {
		return exitBadInput
	}
	return exitFailure
}

func printGenJSON(w io.Writer, r engine.Result) {
	out := genJSON{
		PromptTokens: r.PromptTokens, Tokens: r.Tokens, Text: r.Text, FinishReason: r.FinishReason,
		Stats: genStats{
			PromptN: r.Stats.PromptN, PredictedN: r.Stats.PredictedN, PrefillTokS: r.Stats.PrefillTokS,
			DecodeTokS: r.Stats.DecodeTokS, KVBytes: r.Stats.KVBytes, KVBytesFull: r.Stats.KVBytesFull,
			PrunedRatio: r.Stats.PrunedRatio, ProfileMs: r.Stats.ProfileMs,
		},
		Profile: toProfileJSON(r.Profile),
	}
	if out.Tokens == nil {
		out.Tokens = []int{}
	}
	b, _ := json.Marshal(out)
	fmt.Fprintln(w, string(b))
}

func chatLoop(ctx context.Context, e *engine.Engine, kv engine.KVOptions, system string, req engine.Request, sink engine.Sink,
	in io.Reader, stdout, stderr io.Writer, asJSON bool) int {
	chat, err := e.NewChat(kv, system)
	if err != nil {
		return reportGenErr(stderr, err)
	}
	defer chat.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for {
		fmt.Fprint(stderr, "> ")
		if !sc.Scan() {
			fmt.Fprintln(stderr)
			return exitOK
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		res, err := chat.Send(ctx, line, req, sink)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintln(stderr, "fastgen:", err)
			continue
		}
		fmt.Fprintln(stdout)
		if asJSON {
			printGenJSON(stdout, res)
		}
	}
}
