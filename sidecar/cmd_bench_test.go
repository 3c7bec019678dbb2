package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestBenchBadInput: names and numbers bench cannot use are refused with
// status 2 before anything is measured or synthesized (each case would
// otherwise spend seconds on the bandwidth pass), and the cache dir stays
// empty.
func TestBenchBadInput(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown shape", []string{"--shape", "110M,7B"}, `unknown shape "7B"`},
		{"unknown dtype", []string{"--dtype", "f16,q3_k"}, "q3_k"},
		{"unknown cache type", []string{"--cache-type", "q8"}, "q8"},
		{"no run possible", []string{"--shape", "15M", "--dtype", "q4_k,q6_k"}, "no shape and type given can be benchmarked"},
		{"zero prompt", []string{"--prompt", "0"}, "--prompt, --decode and --reps must be ≥ 1"},
		{"negative threads", []string{"--threads", "-1"}, "--threads must be ≥ 0"},
		{"zero kv block", []string{"--kv-block", "0"}, "--kv-block ≥ 1"},
		{"bad threshold", []string{"--kv", "fastgen", "--threshold", "1.5"}, "threshold"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var out, errb bytes.Buffer
			st := runBench(append(c.args, "--cache-dir", dir, "--json"), &out, &errb)
			if st != exitBadInput {
				t.Fatalf("exit %d, want %d; stderr: %s", st, exitBadInput, errb.String())
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Errorf("stderr %q does not say %q", errb.String(), c.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Errorf("cache dir holds %v (%v), want nothing", ents, err)
			}
		})
	}
}

// TestBenchSkipsUnstorable: each combination of a cross product that
// cannot be built is named with the reason (the runs of the others are too
// heavy for a unit test).
func TestBenchSkipsUnstorable(t *testing.T) {
	var out, errb bytes.Buffer
	st := runBench([]string{"--shape", "15M", "--dtype", "q4_k,q6_k", "--cache-dir", t.TempDir()}, &out, &errb)
	for _, dt := range []string{"q4_k", "q6_k"} {
		if !strings.Contains(errb.String(), "skipping 15M "+dt+": shape 15M cannot be stored as "+dt) {
			t.Errorf("stderr %q does not explain skipping %s", errb.String(), dt)
		}
	}
	if st != exitBadInput {
		t.Errorf("exit %d, want %d", st, exitBadInput)
	}
}
