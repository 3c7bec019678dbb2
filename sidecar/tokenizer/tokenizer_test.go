package tokenizer

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// Reference ids and text from the shared models' README (run.c and
// llama.cpp agree on both).
var (
	onceIDs  = []int{1, 403, 407, 261, 378}
	next60   = []int{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310}
	next60Tx = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily"
)

func TestTok512Reference(t *testing.T) {
	for _, tc := range []struct {
		name string
		conv func(*Vocab) *Vocab
	}{
		{"llama2c", func(v *Vocab) *Vocab { return v }},
		{"sentencepiece", toSentencePiece},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ReadLlama2c(filepath.Join(modelsDir(t), "tok512.bin"), 512)
			if err != nil {
				t.Fatal(err)
			}
			tk := mustNew(t, tc.conv(v))
			if got := tk.Encode("Once upon a time", true, false); !reflect.DeepEqual(got, onceIDs) {
				t.Errorf("Encode = %v, want %v", got, onceIDs)
			}
			if got := tk.Decode(next60); got != next60Tx {
				t.Errorf("Decode(60 ids) = %q, want %q", got, next60Tx)
			}
			if got := tk.Decode(append(append([]int{}, onceIDs...), next60...)); got != "Once upon a time"+next60Tx {
				t.Errorf("Decode(prompt+60) = %q", got)
			}
			if tk.Piece(13) != "\n" || tk.Piece(403) != " Once" || tk.Piece(3+0xE4) != "\xe4" {
				t.Errorf("Piece: %q %q %q", tk.Piece(13), tk.Piece(403), tk.Piece(3+0xE4))
			}
		})
	}
}

// runcEncode is llama2.c's run.c encode, transcribed for differential tests:
// per-character lookup with byte fallback, then rescans for the best-scoring
// mergeable pair. It only applies to space-form (tokenizer.bin) vocabs.
func runcEncode(v *Vocab, text string, bos bool) []int {
	lookup := map[string]int{}
	for i := len(v.Tokens) - 1; i >= 0; i-- {
		lookup[v.Tokens[i]] = i
	}
	var toks []int
	if bos {
		toks = append(toks, 1)
	}
	if text != "" {
		toks = append(toks, lookup[" "])
	}
	for i := 0; i < len(text); {
		n := 1
		for i+n < len(text) && text[i+n]&0xC0 == 0x80 && n < 4 {
			n++
		}
		if id, ok := lookup[text[i:i+n]]; ok {
			toks = append(toks, id)
		} else {
			for k := 0; k < n; k++ {
				toks = append(toks, int(text[i+k])+3)
			}
		}
		i += n
	}
	for {
		best, bestScore, bestID := -1, float32(-1e10), 0
		for i := 0; i+1 < len(toks); i++ {
			if id, ok := lookup[v.Tokens[toks[i]]+v.Tokens[toks[i+1]]]; ok && v.Scores[id] > bestScore {
				best, bestScore, bestID = i, v.Scores[id], id
			}
		}
		if best < 0 {
			return toks
		}
		toks[best] = bestID
		toks = append(toks[:best+1], toks[best+2:]...)
	}
}

var roundTripTexts = []string{
	"", "a", " ", "  ", "Once upon a time", " leading space", "trailing space ", "  multiple   spaces  ",
	"Café naïve résumé, déjà vu", "e\u0301 combining acute, n\u0303, a\u030a\u0301", "日本語のテキスト、中文。한국어",
	"emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷", "line1\nline2\r\n\n\ttab\tend\n", "\n\n", "\t", "numbers 1 22 333 4444 1234567890",
	"Lily's mom said, \"let's go!\" They'LL, we've, I'd", "x=1+2; y=[3,4]; // comment", "\u00a0nbsp\u3000ideographic space",
	"\u200b zero width \ufeff bom", "Ω≈ç√∫ ∑∏ ℵ", strings.Repeat("the ", 50),
}

func TestRoundTrip(t *testing.T) {
	for _, f := range allFixtures(t) {
		for _, s := range roundTripTexts {
			for _, bos := range []bool{false, true} {
				ids := f.tk.Encode(s, bos, false)
				if got := f.tk.Decode(ids); got != s {
					t.Errorf("%s: Decode(Encode(%q, bos=%v)) = %q (ids %v)", f.name, s, bos, got, ids)
				}
				if bos != (len(ids) > 0 && ids[0] == f.tk.BOS()) {
					t.Errorf("%s: %q bos=%v gives %v", f.name, s, bos, ids)
				}
			}
		}
	}
}

func TestMatchesRunC(t *testing.T) {
	tk := loadTok512(t)
	tkSP := mustNew(t, toSentencePiece(tk.Vocab()))
	for _, s := range append(roundTripTexts, corpus) {
		want := runcEncode(tk.Vocab(), s, true)
		if got := tk.Encode(s, true, false); !reflect.DeepEqual(got, want) {
			t.Errorf("Encode(%q) = %v, run.c gives %v", s, got, want)
		}
		if got := tkSP.Encode(s, true, false); !reflect.DeepEqual(got, want) {
			t.Errorf("▁ vocab: Encode(%q) = %v, run.c gives %v", s, got, want)
		}
	}
}

// refBPE is byte-level BPE written as its definition: repeatedly merge the
// lowest-ranked adjacent pair, leftmost first.
func refBPE(tk *Tokenizer, text string) []int {
	rank := map[string]int{}
	for i, m := range tk.Vocab().Merges {
		rank[m] = i
	}
	var ids []int
	tk.pre.split(text, func(w string) {
		var syms []string
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(byteRune[w[i]]))
		}
		if id, ok := tk.ids[strings.Join(syms, "")]; ok && tk.ignMerg {
			ids = append(ids, id)
			return
		}
		for {
			best, bestRank := -1, math.MaxInt
			for i := 0; i+1 < len(syms); i++ {
				if r, ok := rank[syms[i]+" "+syms[i+1]]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			syms[best] += syms[best+1]
			syms = append(syms[:best+1], syms[best+2:]...)
		}
		for _, s := range syms {
			ids = append(ids, tk.ids[s])
		}
	})
	return ids
}

func TestBPEMatchesReference(t *testing.T) {
	for _, f := range allFixtures(t) {
		if !f.tk.isBPE {
			continue
		}
		for _, s := range append(roundTripTexts, corpus) {
			if got, want := f.tk.Encode(s, false, false), refBPE(f.tk, s); (len(got) > 0 || len(want) > 0) && !reflect.DeepEqual(got, want) {
				t.Errorf("%s: Encode(%q) = %v, reference %v", f.name, s, got, want)
			}
		}
		// The learned merges must actually compress the training text.
		if n := len(f.tk.Encode(corpus, false, false)); n*2 > len(corpus) {
			t.Errorf("%s: corpus of %d bytes took %d tokens", f.name, len(corpus), n)
		}
	}
}

func TestSPMMergeOrder(t *testing.T) {
	tk := mustNew(t, spmVocab())
	id := func(s string) int { return tk.ids[s] }
	tests := []struct {
		text string
		want []int
	}{
		// "▁t" (score 0) merges before "he" (-1); "▁the" is still reached
		// because "▁t"+"he" is a piece.
		{"the", []int{id("▁the")}},
		{"Once upon a time", []int{id("▁Once"), id("▁upon"), id("▁a"), id("▁time")}},
		{"  x", []int{id("▁▁"), id("▁"), 3 + 'x'}},
		{"日", []int{id("▁"), 3 + 0xE6, 3 + 0x97, 3 + 0xA5}},
		{"[INST]hi", []int{id("[INST]"), id("▁"), id("h"), id("i")}},
	}
	for _, tc := range tests {
		if got := tk.Encode(tc.text, false, false); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestParseSpecial(t *testing.T) {
	tk := mustNew(t, bpeVocab("llama3"))
	start, end, bos := tk.ids["<|im_start|>"], tk.ids["<|im_end|>"], tk.BOS()
	text := "<|begin_of_text|><|im_start|>user\nhi<|im_end|>"
	got := tk.Encode(text, false, true)
	want := append(append([]int{bos, start}, tk.Encode("user\nhi", false, false)...), end)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseSpecial: %v, want %v", got, want)
	}
	plain := tk.Encode(text, false, false)
	for _, id := range plain {
		if tk.IsControl(id) {
			t.Errorf("parseSpecial=false produced control id %d: %v", id, plain)
		}
	}
	if tk.Decode(plain) != text {
		t.Errorf("literal marker text did not round-trip: %q", tk.Decode(plain))
	}
	if tk.Decode(got) != "user\nhi" {
		t.Errorf("control tokens should decode to nothing: %q", tk.Decode(got))
	}
	if tk.Piece(start) != "<|im_start|>" {
		t.Errorf("Piece(control) = %q", tk.Piece(start))
	}
	// SPM: every fragment after a special token gets its own dummy prefix,
	// as in llama.cpp.
	sp := mustNew(t, spmVocab())
	if got, want := sp.Encode("<s>a", false, true), []int{1, sp.ids["▁a"]}; !reflect.DeepEqual(got, want) {
		t.Errorf("SPM <s>a = %v, want %v", got, want)
	}
}

func TestAccessors(t *testing.T) {
	tk := mustNew(t, bpeVocab("llama3"))
	eot := tk.ids["<|eot_id|>"]
	tests := []struct {
		id           int
		typ          TokenType
		control, eog bool
	}{
		{tk.EOS(), Control, true, true},
		{eot, Control, true, true},
		{tk.ids["<|im_end|>"], Control, true, true},
		{tk.ids["<|im_start|>"], Control, true, false},
		{tk.BOS(), Control, true, false},
		{0, Normal, false, false},
		{-1, 0, false, false},
		{tk.Len(), 0, false, false},
	}
	for _, tc := range tests {
		if tk.Type(tc.id) != tc.typ || tk.IsControl(tc.id) != tc.control || tk.IsEOG(tc.id) != tc.eog {
			t.Errorf("id %d: type %v control %v eog %v", tc.id, tk.Type(tc.id), tk.IsControl(tc.id), tk.IsEOG(tc.id))
		}
	}
	if tk.Piece(-5) != "" || tk.Decode([]int{-1, 1 << 30}) != "" {
		t.Error("out-of-range ids must give empty text")
	}
}

func TestStreamDecoder(t *testing.T) {
	for _, f := range allFixtures(t) {
		for _, s := range roundTripTexts {
			ids := f.tk.Encode(s, true, false)
			d := f.tk.NewStreamDecoder()
			var sb strings.Builder
			for _, id := range ids {
				out := d.Add(id)
				if !utf8.ValidString(out) {
					t.Errorf("%s: %q: Add emitted partial UTF-8 %q", f.name, s, out)
				}
				sb.WriteString(out)
			}
			sb.WriteString(d.Flush())
			if sb.String() != s {
				t.Errorf("%s: stream gave %q, want %q", f.name, sb.String(), s)
			}
		}
	}
	tk := mustNew(t, spmVocab())
	d := tk.NewStreamDecoder()
	// "é" as two byte tokens, then "日" as three: nothing until complete.
	steps := []struct {
		id   int
		want string
	}{{1, ""}, {tk.ids["▁a"], "a"}, {3 + 0xC3, ""}, {3 + 0xA9, "é"}, {3 + 0xE6, ""}, {3 + 0x97, ""}, {3 + 0xA5, "日"},
		{3 + 0xF0, ""}, {3 + 0x41, "\xf0A"}, {3 + 0xE6, ""}}
	for i, st := range steps {
		if got := d.Add(st.id); got != st.want {
			t.Errorf("step %d: Add(%d) = %q, want %q", i, st.id, got, st.want)
		}
	}
	if got := d.Flush(); got != "\xe6" {
		t.Errorf("Flush = %q", got)
	}
}

func llama2cFile(t *testing.T, maxLen uint32, toks ...any) []byte {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, maxLen)
	for _, x := range toks {
		switch x := x.(type) {
		case string:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(0))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		case []byte:
			b = append(b, x...)
		}
	}
	return b
}

func TestReadLlama2cErrors(t *testing.T) {
	dir := t.TempDir()
	good := llama2cFile(t, 8, "<unk>", "\n<s>\n", "\n</s>\n", "<0x41>", " a")
	negLen := llama2cFile(t, 8, "<unk>", []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	hugeLen := llama2cFile(t, 8, "<unk>", []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	nan := llama2cFile(t, 8, []byte{0, 0, 0xc0, 0x7f, 1, 0, 0, 0, 'x'})
	tests := []struct {
		name  string
		data  []byte
		vocab int
		want  string // substring of the error, "" for success
	}{
		{"good", good, 5, ""},
		{"good prefix", good, 3, ""},
		{"zero vocab", good, 0, "must be positive"},
		{"empty", nil, 5, "too short"},
		{"vocab too large", good, 1 << 40, "too short"},
		{"truncated record", good[:len(good)-1], 5, "only 1 bytes remain"},
		{"truncated header", good[:len(good)-4], 5, "truncated at token 4"},
		{"negative length", negLen, 2, "length -1"},
		{"huge length", hugeLen, 2, "length 2147483647"},
		{"above max_token_length", llama2cFile(t, 2, "<unk>"), 1, "max_token_length"},
		{"nan score", nan, 1, "NaN"},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := ReadLlama2c(path, tc.vocab)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if _, err := New(v); err != nil {
				t.Errorf("%s: New: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming the file and containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReadLlama2c(filepath.Join(dir, "missing"), 5); err == nil {
		t.Error("missing file: no error")
	}
	v, _ := ReadLlama2c(filepath.Join(dir, "good"), 5)
	wantTypes := []TokenType{Unknown, Control, Control, Byte, Normal}
	if !reflect.DeepEqual(v.Types, wantTypes) || v.BOS != 1 || v.EOS != 2 || v.UNK != 0 || v.PAD != -1 || !v.AddBOS {
		t.Errorf("vocab = %+v", v)
	}
}

func TestReadLlama2cTruncatedReal(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(modelsDir(t), "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(data); n += 7 {
		if _, err := parseLlama2c("tok512.bin", data[:n], 512); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

func TestNewValidation(t *testing.T) {
	base := func() *Vocab { return bpeVocab("llama3") }
	tests := []struct {
		name string
		mod  func(*Vocab)
		want string
	}{
		{"nil tokens", func(v *Vocab) { v.Tokens = nil }, "no tokens"},
		{"scores length", func(v *Vocab) { v.Scores = []float32{1} }, "scores for"},
		{"types length", func(v *Vocab) { v.Types = v.Types[:3] }, "token types for"},
		{"bad type", func(v *Vocab) { v.Types[5] = 9 }, "type 9"},
		{"bos range", func(v *Vocab) { v.BOS = len(v.Tokens) }, "BOS id"},
		{"pad as uint32", func(v *Vocab) { v.PAD = 0xFFFFFFFF }, "0xFFFFFFFF"},
		{"eos negative", func(v *Vocab) { v.EOS = -2 }, "EOS id"},
		{"model", func(v *Vocab) { v.Model = "bert" }, "unsupported tokenizer model"},
		{"merge", func(v *Vocab) { v.Merges[3] = "ab" }, "merge 3"},
		{"merge trailing space", func(v *Vocab) { v.Merges[0] = "a " }, "merge 0"},
		{"pre", func(v *Vocab) { v.Pre = "starcoder" }, "unsupported pre-tokenizer"},
		{"ok nil scores and types", func(v *Vocab) { v.Scores, v.Types = nil, nil }, ""},
	}
	for _, tc := range tests {
		v := base()
		tc.mod(v)
		_, err := New(v)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil): no error")
	}
}

func BenchmarkEncode(b *testing.B) {
	text := strings.Repeat(corpus, 8)
	for _, f := range allFixtures(b) {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				f.tk.Encode(text, true, false)
			}
		})
	}
}
