package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// modelsDir finds the shared real test files, or skips: they are too large
// to live in the repository.
func modelsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset; point it at the shared models folder (e.g. /work/shared/models) to run tests against tok512.bin")
	}
	return dir
}

func mustNew(t testing.TB, v *Vocab) *Tokenizer {
	t.Helper()
	tk, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func loadTok512(t testing.TB) *Tokenizer {
	t.Helper()
	v, err := ReadLlama2c(filepath.Join(modelsDir(t), "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	return mustNew(t, v)
}

// toSentencePiece rewrites a llama2.c vocab the way llama.cpp's converter
// stores it in GGUF: spaces as ▁, control texts as SentencePiece has them.
func toSentencePiece(v *Vocab) *Vocab {
	w := *v
	w.Tokens = make([]string, len(v.Tokens))
	for i, s := range v.Tokens {
		w.Tokens[i] = strings.ReplaceAll(s, " ", spmSpace)
	}
	w.Tokens[0], w.Tokens[1], w.Tokens[2] = "<unk>", "<s>", "</s>"
	return &w
}

// corpus trains the small byte-level BPE vocab and is the benchmark input.
const corpus = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park.
One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." They'll walk there at 10:30 and we've 12345 steps to go!
The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.
Café naïve résumé façade — déjà vu. Straße, Ærø, Øresund.
日本語のテキストです。中文文本。한국어 텍스트. Русский текст. Ελληνικά.
Emoji: 😀 👍🏽 👨‍👩‍👧 ❤️ and code: for (i = 0; i < n; i++) { sum += x[i]; }
	tabs	and  spaces   and
newlines

done.`

// trainBPE learns merges on text the way BPE tokenizers are trained: count
// adjacent pairs inside pre-tokens, merge the most frequent (ties to the
// smallest pair, for determinism), repeat.
func trainBPE(text string, pre preTokenizer, n int) (tokens, merges []string) {
	for b := 0; b < 256; b++ {
		tokens = append(tokens, string(byteRune[b]))
	}
	counts := map[string]int{}
	pre.split(text, func(w string) { counts[w]++ })
	type word struct {
		syms  []string
		count int
	}
	var words []word
	for w, c := range counts {
		var syms []string
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(byteRune[w[i]]))
		}
		words = append(words, word{syms, c})
	}
	for len(merges) < n {
		pairs := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.count
			}
		}
		if len(pairs) == 0 {
			break
		}
		keys := make([][2]string, 0, len(pairs))
		for k := range pairs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			if pairs[a] != pairs[b] {
				return pairs[a] > pairs[b]
			}
			return a[0]+" "+a[1] < b[0]+" "+b[1]
		})
		best := keys[0]
		merges = append(merges, best[0]+" "+best[1])
		tokens = append(tokens, best[0]+best[1])
		for wi := range words {
			s := words[wi].syms
			var out []string
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, s[i])
				}
			}
			words[wi].syms = out
		}
	}
	return tokens, merges
}

// trained caches trainBPE results, which take a while to compute.
var (
	trainedMu sync.Mutex
	trained   = map[string]struct{ tokens, merges []string }{}
)

var bpeSpecials = []string{"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>"}

// bpeVocab is a small but real byte-level BPE vocab: the 256 byte tokens,
// merges learned on corpus with the given pre-tokenizer, then control tokens.
func bpeVocab(pre string) *Vocab {
	trainedMu.Lock()
	tm, ok := trained[pre]
	if !ok {
		p := map[string]preTokenizer{"llama3": preLlama3, "qwen2": preQwen2, "default": preGPT2}[pre]
		tm.tokens, tm.merges = trainBPE(corpus, p, 300)
		trained[pre] = tm
	}
	trainedMu.Unlock()
	// Copies, so tests may corrupt their vocab without touching the cache.
	tokens := append([]string(nil), tm.tokens...)
	merges := append([]string(nil), tm.merges...)
	types := make([]TokenType, len(tokens))
	for i := range types {
		types[i] = Normal
	}
	n := len(tokens)
	for _, s := range bpeSpecials {
		tokens = append(tokens, s)
		types = append(types, Control)
	}
	return &Vocab{Model: "gpt2", Tokens: tokens, Types: types, Merges: merges,
		BOS: n, EOS: n + 1, UNK: -1, PAD: -1, AddBOS: true, Pre: pre}
}

// spmVocab is a small SentencePiece-style vocab with byte fallback: control
// tokens, the 256 byte tokens, ▁ and ASCII letters, and a few merged pieces
// whose scores make merge order matter.
func spmVocab() *Vocab {
	v := &Vocab{Model: "llama", BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddBOS: true}
	add := func(s string, score float32, ty TokenType) {
		v.Tokens = append(v.Tokens, s)
		v.Scores = append(v.Scores, score)
		v.Types = append(v.Types, ty)
	}
	add("<unk>", 0, Unknown)
	add("<s>", 0, Control)
	add("</s>", 0, Control)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, Byte)
	}
	add("[INST]", 0, UserDefined)
	for _, p := range []string{"▁", "e", "t", "a", "o", "i", "n", "s", "h", "r", "d", "l", "u", "c", "m", "w", "f", "g", "y", "p", "b", "v", "k", "T", "O", "L", ",", ".", "é"} {
		add(p, -100, Normal)
	}
	for i, p := range []string{"▁t", "he", "▁the", "in", "▁a", "er", "on", "▁s", "at", "en", "▁w", "▁o", "is", "ed", "an", "▁th", "ing", "▁b", "or", "ll", "▁Once", "▁up", "▁upon", "▁time", "▁ti", "me", "▁▁", "▁▁▁▁", "ce", "On", "Once", "up"} {
		add(p, float32(-i), Normal)
	}
	return v
}

var (
	fixturesOnce sync.Once
	fixtures     []namedTok
)

type namedTok struct {
	name string
	tk   *Tokenizer
}

// allFixtures are the tokenizers every round-trip and fuzz check runs on;
// tok512 joins them when the shared models are available.
func allFixtures(t testing.TB) []namedTok {
	fixturesOnce.Do(func() {
		for _, pre := range []string{"llama3", "qwen2", "default"} {
			tk, err := New(bpeVocab(pre))
			if err != nil {
				panic(err)
			}
			fixtures = append(fixtures, namedTok{"bpe-" + pre, tk})
		}
		tk, err := New(spmVocab())
		if err != nil {
			panic(err)
		}
		fixtures = append(fixtures, namedTok{"spm-synthetic", tk})
		if dir := os.Getenv("FASTGEN_TEST_MODELS"); dir != "" {
			v, err := ReadLlama2c(filepath.Join(dir, "tok512.bin"), 512)
			if err != nil {
				panic(err)
			}
			tk, _ := New(v)
			fixtures = append(fixtures, namedTok{"tok512", tk})
			tk, _ = New(toSentencePiece(v))
			fixtures = append(fixtures, namedTok{"tok512-spm", tk})
		}
	})
	return fixtures
}
