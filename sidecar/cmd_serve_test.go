package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeFlagErrors(t *testing.T) {
	t.Setenv("FASTGEN_MODEL", "")
	// No model given means the default model: an empty store and an
	// unreachable hub must give the offline advice, never touch the network.
	t.Setenv("FASTGEN_MODELS", t.TempDir())
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no model, offline", []string{"serve"}, []string{"--model", "FASTGEN_MODEL", "fastgen pull " + DefaultModel, "cannot reach"}},
		{"bad parallel", []string{"serve", "--model", "x.gguf", "--parallel", "0"}, []string{"--parallel"}},
		{"bad runs per connection", []string{"serve", "--model", "x.gguf", "--max-runs-per-conn", "0"}, []string{"--max-runs-per-conn"}},
		{"stray argument", []string{"serve", "--model", "x.gguf", "extra"}, []string{"unexpected argument"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if st := dispatch(tc.args, &out, &errb); st != exitBadInput {
				t.Fatalf("exit %d, want %d; stderr %s", st, exitBadInput, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr %q lacks %q", errb.String(), w)
				}
			}
		})
	}
}

// TestDefaultModelFromStore: with no --model, serve's default comes from the
// local store when it is there, without asking the hub.
func TestDefaultModelFromStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FASTGEN_MODELS", dir)
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1")
	want := filepath.Join(dir, "ggml-org--models", "tinyllamas", "stories260K.gguf")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := defaultModel(context.Background(), io.Discard)
	if err != nil || got != want {
		t.Fatalf("defaultModel = %q, %v; want %q", got, err, want)
	}
}
