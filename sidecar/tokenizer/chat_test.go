package tokenizer

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Shortened but verbatim-in-structure templates as tokenizer.chat_template
// carries them.
var templates = map[string]string{
	FormatLlama2: "{% if messages[0]['role'] == 'system' %}...{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}...",
	FormatChatML: "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
	FormatLlama3: "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}",
	FormatPlain:  "",
}

func chatTok(t *testing.T, format string) *Tokenizer {
	v := bpeVocab("llama3")
	v.ChatTemplate = templates[format]
	return mustNew(t, v)
}

func TestChatGolden(t *testing.T) {
	convs := map[string][]Message{
		"multi": {
			{"system", "You are a helpful assistant."},
			{"user", "  Hello!  "},
			{"assistant", "Hi there. How can I help?"},
			{"user", "Tell me a joke\nabout cats."},
		},
		"single": {{"user", "What is 2+2?"}},
	}
	for _, format := range []string{FormatLlama2, FormatChatML, FormatLlama3, FormatPlain} {
		tk := chatTok(t, format)
		if got := tk.ChatFormat(); got != format {
			t.Fatalf("ChatFormat = %q, want %q", got, format)
		}
		for name, msgs := range convs {
			for _, gen := range []bool{false, true} {
				got, err := tk.RenderChat(msgs, gen)
				if err != nil {
					t.Fatalf("%s/%s: %v", format, name, err)
				}
				file := filepath.Join("testdata", "chat", format+"_"+name+map[bool]string{true: "_gen", false: ""}[gen]+".golden")
				if *update {
					if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run with -update to create)", err)
				}
				if got != string(want) {
					t.Errorf("%s: got\n%q\nwant\n%q", file, got, want)
				}
			}
		}
	}
}

// Exact strings from the official templates, independent of the goldens.
func TestChatExact(t *testing.T) {
	msgs := []Message{{"system", "S"}, {"user", "U"}, {"assistant", "A"}, {"user", "V"}}
	tests := []struct {
		format string
		want   string
	}{
		{FormatLlama2, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] V [/INST]"},
		{FormatChatML, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n"},
		{FormatLlama3, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nV<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{FormatPlain, "System: S\nUser: U\nAssistant: A\nUser: V\nAssistant:"},
	}
	for _, tc := range tests {
		got, err := chatTok(t, tc.format).RenderChat(msgs, true)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v\nwant %q", tc.format, got, err, tc.want)
		}
	}
	// Rendered control markers must come back as single control tokens.
	tk := chatTok(t, FormatLlama3)
	s, _ := tk.RenderChat(msgs[:2], true)
	ids := tk.Encode(s, false, true)
	if ids[0] != tk.BOS() || tk.Decode(ids) != "system\n\nSuser\n\nUassistant\n\n" {
		t.Errorf("encoded chat %v decodes to %q", ids, tk.Decode(ids))
	}
}

func TestChatErrors(t *testing.T) {
	tests := []struct {
		format string
		msgs   []Message
		want   string
	}{
		{FormatChatML, nil, "no messages"},
		{FormatChatML, []Message{{"tool", "x"}}, `role "tool"`},
		{FormatLlama3, []Message{{"user", "x"}, {"User", "y"}}, "message 1"},
		{FormatLlama2, []Message{{"assistant", "x"}}, "alternate"},
		{FormatLlama2, []Message{{"user", "x"}, {"user", "y"}}, "alternate"},
		{FormatLlama2, []Message{{"user", "x"}, {"system", "y"}}, "alternate"},
		{FormatLlama2, []Message{{"system", "x"}}, "needs a user message"},
		{FormatPlain, []Message{{"", "x"}}, `role ""`},
	}
	for _, tc := range tests {
		_, err := chatTok(t, tc.format).RenderChat(tc.msgs, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: error %v, want %q", tc.format, tc.msgs, err, tc.want)
		}
	}
}

func TestChatMarkers(t *testing.T) {
	want := map[string][]string{
		FormatChatML: {"<|im_start|>", "<|im_end|>"},
		FormatPlain:  {"System:", "User:", "Assistant:"},
	}
	for f, w := range want {
		if got := chatTok(t, f).ChatMarkers(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: %q", f, got)
		}
	}
	for _, f := range []string{FormatLlama2, FormatLlama3} {
		tk := chatTok(t, f)
		s, _ := tk.RenderChat([]Message{{"system", "s"}, {"user", "u"}}, true)
		for _, m := range tk.ChatMarkers() {
			if !strings.Contains(s, m) && m != "</s>" {
				t.Errorf("%s: marker %q not in rendering %q", f, m, s)
			}
		}
	}
}
