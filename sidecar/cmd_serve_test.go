package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServeFlagErrors(t *testing.T) {
	t.Setenv("FASTGEN_MODEL", "")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no model", []string{"serve"}, []string{"--model", "FASTGEN_MODEL"}},
		{"bad parallel", []string{"serve", "--model", "x.gguf", "--parallel", "0"}, []string{"--parallel"}},
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
