package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

func testModels(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset: run through `go tool -modfile=tools/go.mod task test`, which points it at ../shared/models")
	}
	return dir
}

// TestGenerateJSON checks the documented --json object on the reference
// prompt, for both file formats.
func TestGenerateJSON(t *testing.T) {
	dir := testModels(t)
	want := []int{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292}
	for _, file := range []string{"stories260K.bin", "stories260K.gguf"} {
		t.Run(file, func(t *testing.T) {
			var out, errb bytes.Buffer
			st := dispatch([]string{"generate", "--model", filepath.Join(dir, file), "--ctx", "512", "--prompt", "Once upon a time",
				"--max-tokens", "20", "--json"}, &out, &errb)
			if st != exitOK {
				t.Fatalf("exit %d: %s", st, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var res struct {
				PromptTokens []int  `json:"prompt_tokens"`
				Tokens       []int  `json:"tokens"`
				Text         string `json:"text"`
				FinishReason string `json:"finish_reason"`
				Stats        map[string]float64
			}
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
				t.Fatalf("last line is not the JSON object: %v\n%s", err, out.String())
			}
			if !slices.Equal(res.PromptTokens, []int{1, 403, 407, 261, 378}) || !slices.Equal(res.Tokens, want) {
				t.Errorf("prompt %v tokens %v, want %v", res.PromptTokens, res.Tokens, want)
			}
			if res.FinishReason != "length" || !strings.HasPrefix(res.Text, ", there was a little girl named Lily.") {
				t.Errorf("finish %q text %q", res.FinishReason, res.Text)
			}
			for _, k := range []string{"prompt_n", "predicted_n", "prefill_tok_s", "decode_tok_s", "kv_bytes", "kv_bytes_full"} {
				if _, ok := res.Stats[k]; !ok {
					t.Errorf("stats lack %q", k)
				}
			}
		})
	}
}

// TestThresholdOneIsLossless: at T = 1 every head keeps everything, so
// FastGen generates exactly the full cache's tokens.
func TestThresholdOneIsLossless(t *testing.T) {
	dir := testModels(t)
	prompt := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
	run := func(args ...string) []int {
		var out, errb bytes.Buffer
		base := []string{"generate", "--model", filepath.Join(dir, "stories260K.bin"), "--prompt", prompt, "--max-tokens", "80", "--json"}
		if st := dispatch(append(base, args...), &out, &errb); st != exitOK {
			t.Fatalf("exit %d: %s", st, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var res struct {
			Tokens []int `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatal(err)
		}
		return res.Tokens
	}
	full := run("--kv", "full")
	if got := run("--kv", "fastgen", "--threshold", "1.0"); !slices.Equal(got, full) {
		t.Errorf("fastgen at T=1 generated %v, full cache %v", got, full)
	}
}

// TestBadModelFiles: every unusable file gets one clear error naming the
// file and the problem, and exit status 2 — never a panic.
func TestBadModelFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := filepath.Join(dir, "good.gguf")
	if err := model.Synthesize(good, model.Shape{Name: "t", Dim: 64, Hidden: 128, Layers: 1, Heads: 2, KVHeads: 2, Vocab: 260, Ctx: 32}, tensor.F32, 1); err != nil {
		t.Fatal(err)
	}
	goodBytes, _ := os.ReadFile(good)
	gpt2 := gguf.NewWriter()
	gpt2.SetKV("general.architecture", "gpt2")
	gpt2Path := filepath.Join(dir, "gpt2.gguf")
	if err := gpt2.WriteFile(gpt2Path); err != nil {
		t.Fatal(err)
	}
	noTok := gguf.NewWriter()
	noTok.SetKV("general.architecture", "llama")
	for _, kv := range [][2]any{{"llama.embedding_length", uint32(64)}, {"llama.feed_forward_length", uint32(128)},
		{"llama.block_count", uint32(1)}, {"llama.attention.head_count", uint32(2)}} {
		noTok.SetKV(kv[0].(string), kv[1])
	}
	noTokPath := filepath.Join(dir, "notok.gguf")
	if err := noTok.WriteFile(noTokPath); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	ck := make([]byte, 28)
	for i, v := range []uint32{8, 16, 1, 2, 2, 4, 4} {
		ck[i*4] = byte(v)
	}
	ck = append(ck, make([]byte, 4*(4*8+8+3*8*8+8*8+8+3*16*8+8+4*4))...)
	binPath := filepath.Join(binDir, "tiny.bin")
	os.WriteFile(binPath, ck, 0o644)

	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file"},
		{"empty", write("empty.gguf", nil), "too short"},
		{"wrong magic", write("junk.gguf", []byte("this is not a model file at all, just text")), "junk.gguf"},
		{"truncated", write("trunc.gguf", goodBytes[:len(goodBytes)/2]), "trunc.gguf"},
		{"unsupported architecture", gpt2Path, "unsupported architecture"},
		{"missing tokenizer", noTokPath, "missing tokenizer"},
		{"llama2c without tokenizer", binPath, "missing tokenizer"},
		{"missing checkpoint", filepath.Join(binDir, "nope.bin"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			st := dispatch([]string{"generate", "--model", tc.path, "--prompt", "hi"}, &out, &errb)
			if st != exitBadInput {
				t.Errorf("exit %d, want %d; stderr: %s", st, exitBadInput, errb.String())
			}
			if msg := errb.String(); !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") > 0 {
				t.Errorf("stderr %q: want one line mentioning %q", msg, tc.want)
			}
			if !strings.HasSuffix(tc.path, ".bin") {
				return
			}
			// convert reads checkpoints the same way and exits the same.
			errb.Reset()
			st = dispatch([]string{"convert", "llama2c", tc.path, "--tokenizer", filepath.Join(dir, "nope.bin"), "-o", filepath.Join(t.TempDir(), "out.gguf")}, &out, &errb)
			if st != exitBadInput {
				t.Errorf("convert: exit %d, want %d; stderr: %s", st, exitBadInput, errb.String())
			}
		})
	}
}
