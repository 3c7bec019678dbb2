package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testdata/llama-bench.jsonl is real `llama-bench -o jsonl` output (build
// de3ff81, synthetic 15M F32, 2 threads): pp64 and tg16 from an empty
// context, then tg16 at depth 64.
const llamaBenchGolden = "testdata/llama-bench.jsonl"

func TestParseLlamaBench(t *testing.T) {
	f, err := os.Open(llamaBenchGolden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests, err := parseLlamaBench(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(tests) != 3 {
		t.Fatalf("%d tests, want 3", len(tests))
	}
	for _, c := range []struct {
		prompt, gen, depth int
		want               float64
	}{
		{64, 0, 0, 6234.91}, // the faster of 6144.13 and 6234.91
		{0, 16, 0, 505.725},
		{0, 16, 64, 421.139},
	} {
		got, ok := pickLlamaBench(tests, c.prompt, c.gen, c.depth)
		if !ok || got != c.want {
			t.Errorf("pp%d tg%d @d%d = %v, %v; want %v", c.prompt, c.gen, c.depth, got, ok, c.want)
		}
	}
	if _, ok := pickLlamaBench(tests, 512, 0, 0); ok {
		t.Error("found a test that was not run")
	}
	// The same sizes under other settings (flash attention off and on):
	// the fastest of all counts.
	other := tests[2]
	other.SamplesTS = []float64{430.5, 400}
	if got, _ := pickLlamaBench(append(tests, other), 0, 16, 64); got != 430.5 {
		t.Errorf("two tg16 @d64 tests give %v, want the faster 430.5", got)
	}
}

func TestParseLlamaBenchBad(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"table instead of jsonl", "| model | size |\n", "line 1 is not a jsonl test"},
		{"no samples", `{"n_prompt": 64, "samples_ts": []}`, "line 1 has no positive samples_ts"},
		{"zero samples", "\n" + `{"n_prompt": 64, "samples_ts": [0]}`, "line 2 has no positive samples_ts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseLlamaBench(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

func TestLlamaBenchArgs(t *testing.T) {
	got := llamaBenchArgs("m.gguf", 2, 512, 128, 3, "f16", false)
	want := [][]string{
		{"-m", "m.gguf", "-t", "2", "-r", "3", "-ctk", "f16", "-ctv", "f16", "-fa", "0,1", "-o", "jsonl", "-p", "512", "-n", "128"},
		{"-m", "m.gguf", "-t", "2", "-r", "3", "-ctk", "f16", "-ctv", "f16", "-fa", "0,1", "-o", "jsonl", "-p", "0", "-n", "128", "-d", "512"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("args %q, want %q", got, want)
	}
	if got := llamaBenchArgs("m.gguf", 2, 512, 128, 3, "f16", true); !slices.Contains(got[1], "none") {
		t.Errorf("--no-mmap not passed on: %q", got[1])
	}
}

// fakeLlamaBench writes an executable script standing in for llama-bench.
func fakeLlamaBench(t *testing.T, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in llama-bench is a shell script")
	}
	p := filepath.Join(t.TempDir(), "llama-bench")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunLlamaBench(t *testing.T) {
	golden, err := filepath.Abs(llamaBenchGolden)
	if err != nil {
		t.Fatal(err)
	}
	ok := fakeLlamaBench(t, "cat "+golden)
	r, err := runLlamaBench(context.Background(), ok, "m.gguf", 2, 64, 16, 2, "f16", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := (llamaCppRates{Build: "de3ff81", Prefill: 6234.91, TG: 505.725, Decode: 421.139}); r != want {
		t.Errorf("rates %+v, want %+v", r, want)
	}

	for _, c := range []struct {
		name, body      string
		threads, prompt int
		cacheType, want string
	}{
		{"fails", "echo 'main: error: failed to load model' >&2; exit 1", 2, 64, "f16", "failed to load model"},
		{"other sizes", "cat " + golden, 2, 512, "f16", "did not report every test"},
		{"other threads", "cat " + golden, 4, 64, "f16", "ran 2 threads with f16 K/V, asked for 4"},
		{"other K/V type", "cat " + golden, 2, 64, "f32", "asked for 2 and f32"},
		{"no output", "exit 0", 2, 64, "f16", "did not report every test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runLlamaBench(context.Background(), fakeLlamaBench(t, c.body), "m.gguf", c.threads, c.prompt, 16, 2, c.cacheType, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestBenchRefusesMissingLlamaBench: a --vs-llamacpp path that is not an
// executable is refused before anything is measured.
func TestBenchRefusesMissingLlamaBench(t *testing.T) {
	dir := t.TempDir()
	var out, errb strings.Builder
	st := runBench([]string{"--shape", "15M", "--dtype", "f32", "--cache-dir", dir, "--vs-llamacpp", filepath.Join(dir, "no-such-llama-bench")}, &out, &errb)
	if st != exitBadInput || !strings.Contains(errb.String(), "--vs-llamacpp") {
		t.Errorf("exit %d, stderr %q; want %d naming --vs-llamacpp", st, errb.String(), exitBadInput)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("cache dir holds %v, want nothing", ents)
	}
}
