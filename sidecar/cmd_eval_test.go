package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEvalMissingPrompts: a missing prompt file is bad input, and when it is
// the default (a path relative to the repository root) the error says how
// to get past it.
func TestEvalMissingPrompts(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, c := range []struct {
		name  string
		args  []string
		want  string
		avoid string
	}{
		{"default", nil, "pass --prompts FILE", ""},
		{"given", []string{"--prompts", "nope.jsonl"}, "nope.jsonl", "--prompts FILE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			st := dispatch(append([]string{"eval", "--model", "x.gguf"}, c.args...), &out, &errb)
			if st != exitBadInput {
				t.Fatalf("exit %d, want %d; stderr %s", st, exitBadInput, errb.String())
			}
			if msg := errb.String(); !strings.Contains(msg, c.want) || (c.avoid != "" && strings.Contains(msg, c.avoid)) {
				t.Errorf("stderr %q: want %q and not %q", msg, c.want, c.avoid)
			}
		})
	}
}
