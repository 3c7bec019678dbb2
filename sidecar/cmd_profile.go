package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
)

func init() {
	register("profile", "show the policy FastGen picks for every head, and where attention goes", runProfile)
}

// policyGlyph is a one-letter name per policy for the text grid.
var policyGlyph = map[string]string{
	"special": "S", "special+punct": "P", "special+punct+frequent": "F", "special+punct+frequent+local": "L", "full": "#",
}

func runProfile(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("profile", stderr)
	var mf modelFlags
	var kf kvFlags
	mf.register(fs)
	kf.register(fs, kvcache.ModeFastGen)
	prompt := fs.String("prompt", "", "prompt text")
	promptFile := fs.String("prompt-file", "", "read the prompt from a file")
	asJSON := fs.Bool("json", false, "print the profile as JSON")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if (*prompt == "") == (*promptFile == "") {
		fmt.Fprintln(stderr, "fastgen profile: give exactly one of --prompt TEXT or --prompt-file F")
		return exitBadInput
	}
	text := *prompt
	if *promptFile != "" {
		b, err := os.ReadFile(*promptFile)
		if err != nil {
			fmt.Fprintln(stderr, "fastgen profile:", err)
			return exitBadInput
		}
		text = string(b)
	}
	kf.mode = kvcache.ModeFastGen
	kv, err := kf.options()
	if err != nil {
		fmt.Fprintln(stderr, "fastgen profile:", err)
		return exitBadInput
	}
	e, st := mf.load(stderr)
	if e == nil {
		return st
	}
	defer e.Close()
	req := engine.Request{Prompt: text}
	tokens, err := e.Tokenize(&req)
	if err != nil {
		return reportGenErr(stderr, err)
	}
	s, err := e.NewSession(kv)
	if err != nil {
		return reportGenErr(stderr, err)
	}
	defer s.Close()
	if len(tokens) >= e.Model.Config.Ctx {
		fmt.Fprintf(stderr, "fastgen profile: prompt is %d tokens; the context length is %d (raise it with --ctx)\n", len(tokens), e.Model.Config.Ctx)
		return exitBadInput
	}
	if _, err := s.Prefill(context.Background(), tokens, false); err != nil {
		return reportGenErr(stderr, err)
	}
	p := s.Profile
	c := s.Cache()
	if *asJSON {
		out := struct {
			Profile     *profileJSON `json:"profile"`
			PromptN     int          `json:"prompt_n"`
			PrunedRatio float64      `json:"pruned_ratio"`
			KVBytes     int64        `json:"kv_bytes"`
			KVBytesFull int64        `json:"kv_bytes_full"`
			ProfileMs   float64      `json:"profile_ms"`
		}{toProfileJSON(p), len(tokens), c.PrunedRatio(), c.Bytes(), c.FullBytes(), float64(s.ProfileTime.Microseconds()) / 1000}
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	printProfile(stdout, e, p, len(tokens), c, s)
	return exitOK
}

func printProfile(w io.Writer, e *engine.Engine, p *fastgen.Profile, n int, c *kvcache.Cache, s *engine.Session) {
	cfg := e.Model.Config
	fmt.Fprintf(w, "prompt: %d tokens; threshold T = %.3g; %d layers × %d KV heads\n\n", n, p.Threshold, cfg.Layers, cfg.KVHeads)
	fmt.Fprintln(w, "Policy per head (the paper's Fig. 3):  S special  P +punct  F +frequent  L +local  # full")
	fmt.Fprint(w, "layer ")
	for h := 0; h < cfg.KVHeads; h++ {
		fmt.Fprintf(w, "%3d", h)
	}
	fmt.Fprintln(w)
	counts := map[string]int{}
	for l := 0; l < cfg.Layers; l++ {
		fmt.Fprintf(w, "%5d ", l)
		for h := 0; h < cfg.KVHeads; h++ {
			name := p.Heads[l*cfg.KVHeads+h].Policy.Name()
			counts[name]++
			g := policyGlyph[name]
			if g == "" {
				g = "?"
			}
			fmt.Fprintf(w, "%3s", g)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, name := range fastgen.PolicyNames {
		fmt.Fprintf(w, "  %-30s %4d heads\n", name, counts[name])
	}
	fmt.Fprintln(w, "\nAttention mass by category (the paper's Fig. 4), mean over prompt rows:")
	fmt.Fprintf(w, "%5s %4s %-30s %8s %8s %8s %8s  %s\n", "layer", "head", "policy", "special", "punct", "local", "other", "kept")
	for _, h := range p.Heads {
		fmt.Fprintf(w, "%5d %4d %-30s %8.3f %8.3f %8.3f %8.3f  %d/%d\n", h.Layer, h.KVHead, h.Policy.Name(),
			h.Mass.Special, h.Mass.Punct, h.Mass.Local, h.Mass.Other, c.Kept(h.Layer, h.KVHead), n)
	}
	fmt.Fprintf(w, "\npruned ratio %.1f%%; KV bytes %d of %d full (%.1f%%); profiling %.2f ms\n",
		100*c.PrunedRatio(), c.Bytes(), c.FullBytes(), 100*float64(c.Bytes())/float64(max(1, c.FullBytes())),
		float64(s.ProfileTime.Microseconds())/1000)
}
