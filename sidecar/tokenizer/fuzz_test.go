package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzEncodeDecode(f *testing.F) {
	for _, s := range roundTripTexts {
		f.Add([]byte(s))
	}
	f.Add([]byte("\xff\xfe invalid \xc3( utf8 \xe2\x82"))
	f.Add([]byte("<|im_start|>user\nhi<|im_end|><s>[INST]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		text := string(data)
		for _, fx := range allFixtures(t) {
			tk := fx.tk
			for _, special := range []bool{false, true} {
				ids := tk.Encode(text, true, special)
				for _, id := range ids {
					if id < 0 || id >= tk.Len() {
						t.Fatalf("%s: id %d out of range", fx.name, id)
					}
				}
				dec := tk.Decode(ids)
				d := tk.NewStreamDecoder()
				var sb strings.Builder
				for _, id := range ids {
					sb.WriteString(d.Add(id))
				}
				sb.WriteString(d.Flush())
				if sb.String() != dec {
					t.Fatalf("%s: stream %q != Decode %q", fx.name, sb.String(), dec)
				}
				if special {
					continue // marker texts become control ids, which decode to nothing
				}
				// A literal ▁ in the input is indistinguishable from an escaped
				// space once encoded; llama.cpp has the same limitation.
				if !utf8.ValidString(text) || (!tk.isBPE && tk.space == spmSpace && strings.Contains(text, spmSpace)) {
					continue
				}
				if dec != text {
					t.Fatalf("%s: Decode(Encode(%q)) = %q", fx.name, text, dec)
				}
			}
		}
	})
}

func FuzzRenderChat(f *testing.F) {
	f.Add("system\x00You are helpful.\x00user\x00Hi\x00assistant\x00Hello", true)
	f.Add("user\x00  spaced  \x00user\x00again", false)
	f.Add("tool\x00x", true)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, spec string, gen bool) {
		// spec is role\0content\0role\0content...
		parts := strings.Split(spec, "\x00")
		var msgs []Message
		for i := 0; i+1 < len(parts); i += 2 {
			msgs = append(msgs, Message{parts[i], parts[i+1]})
		}
		for _, format := range []string{FormatLlama2, FormatChatML, FormatLlama3, FormatPlain} {
			out, err := renderChat(format, msgs, gen)
			if err != nil {
				continue
			}
			if len(msgs) == 0 {
				t.Fatalf("%s: no error for an empty chat", format)
			}
			for _, m := range msgs {
				c := m.Content
				if format == FormatLlama2 || format == FormatLlama3 {
					c = strings.TrimSpace(c)
				}
				if !strings.Contains(out, c) {
					t.Fatalf("%s: content %q missing from %q", format, c, out)
				}
			}
			again, _ := renderChat(format, msgs, gen)
			if again != out {
				t.Fatalf("%s: rendering is not deterministic", format)
			}
		}
	})
}
