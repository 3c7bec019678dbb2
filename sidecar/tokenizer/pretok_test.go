package tokenizer

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

func splitAll(p preTokenizer, s string) []string {
	var out []string
	p.split(s, func(w string) { out = append(out, w) })
	return out
}

func TestPreTokenizeExamples(t *testing.T) {
	tests := []struct {
		pre  preTokenizer
		text string
		want []string
	}{
		{preLlama3, "Hello world 12345  \n\nfoo's", []string{"Hello", " world", " ", "123", "45", "  \n\n", "foo", "'s"}},
		{preQwen2, "Hello world 12345  \n\nfoo's", []string{"Hello", " world", " ", "1", "2", "3", "4", "5", "  \n\n", "foo", "'s"}},
		{preGPT2, "Hello world 12345  \n\nfoo's", []string{"Hello", " world", " 12345", "  \n", "\n", "foo", "'s"}},
		// \s+(?!\S) leaves the last space to lead the next word.
		{preLlama3, "a   b", []string{"a", "  ", " b"}},
		{preLlama3, "I'M HE'S", []string{"I", "'M", " HE", "'S"}},
		{preGPT2, "I'M", []string{"I", "'", "M"}},
		{preLlama3, "x!!\n\ny", []string{"x", "!!\n\n", "y"}},
		{preLlama3, "\tfoo", []string{"\tfoo"}},
		{preLlama3, "trailing  ", []string{"trailing", "  "}},
	}
	for _, tc := range tests {
		if got := splitAll(tc.pre, tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("pre %d %q: %q, want %q", tc.pre, tc.text, got, tc.want)
		}
	}
}

// The golden file holds the splits the real regexes give, produced with
// Python's `regex` module (regex.findall with the patterns documented on
// preTokenizer) on hand-picked and random strings.
func TestPreTokenizeGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/pretokenize.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Pre, Text string
		Pieces    []string
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	pres := map[string]preTokenizer{"gpt2": preGPT2, "llama3": preLlama3, "qwen2": preQwen2}
	for _, c := range cases {
		got := splitAll(pres[c.Pre], c.Text)
		if len(got)+len(c.Pieces) > 0 && !reflect.DeepEqual(got, c.Pieces) {
			t.Errorf("%s %q: %q, want %q", c.Pre, c.Text, got, c.Pieces)
		}
	}
	if len(cases) < 100 {
		t.Fatalf("golden file has only %d cases", len(cases))
	}
}
