package tokenizer

import (
	"errors"
	"fmt"
	"strings"
)

// Message is one chat turn. Role is "system", "user" or "assistant".
type Message struct {
	Role, Content string
}

// Chat formats returned by ChatFormat.
const (
	FormatLlama2 = "llama2"
	FormatChatML = "chatml"
	FormatLlama3 = "llama3"
	FormatPlain  = "plain"
)

// ChatFormat names the prompt format of Vocab.ChatTemplate, recognised by
// its distinctive markers rather than by running the Jinja template. A file
// without a known template gets "plain".
func (t *Tokenizer) ChatFormat() string { return chatFormat(t.v.ChatTemplate) }

func chatFormat(tmpl string) string {
	// llama-3 is tested first: its templates never contain the others'
	// markers, while some ChatML templates mention [INST] in comments.
	switch {
	case strings.Contains(tmpl, "<|start_header_id|>"):
		return FormatLlama3
	case strings.Contains(tmpl, "<|im_start|>"):
		return FormatChatML
	case strings.Contains(tmpl, "[INST]"):
		return FormatLlama2
	}
	return FormatPlain
}

// ChatMarkers lists the literal strings the chosen format wraps turns in;
// the engine uses them to recognise special (structural) tokens.
func (t *Tokenizer) ChatMarkers() []string {
	switch t.ChatFormat() {
	case FormatLlama2:
		return []string{"<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"}
	case FormatChatML:
		return []string{"<|im_start|>", "<|im_end|>"}
	case FormatLlama3:
		return []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
	}
	return []string{"System:", "User:", "Assistant:"}
}

// RenderChat renders msgs as the model's official template does, ready to be
// encoded with addBOS=false and parseSpecial=true (llama-2 and llama-3
// renderings already begin with the BOS text).
//
//   - llama2 (Llama-2-chat): "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ..."
//     with contents trimmed; turns must alternate user/assistant after an
//     optional first system message. The prompt already ends where the
//     model answers, so addGenerationPrompt changes nothing.
//   - chatml: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then
//     "<|im_start|>assistant\n" for the generation prompt. No default system
//     message is invented.
//   - llama3: "<|begin_of_text|>" then "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
//     per message (contents trimmed), then the assistant header.
//   - plain (models without a template, e.g. base models): "System: ...\n",
//     "User: ...\n", "Assistant: ...\n" per message, then "Assistant:" for
//     the generation prompt, a transcript a base model continues naturally.
func (t *Tokenizer) RenderChat(msgs []Message, addGenerationPrompt bool) (string, error) {
	return renderChat(t.ChatFormat(), msgs, addGenerationPrompt)
}

func renderChat(format string, msgs []Message, gen bool) (string, error) {
	if len(msgs) == 0 {
		return "", errors.New("tokenizer: chat has no messages")
	}
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return "", fmt.Errorf("tokenizer: message %d has role %q (want system, user or assistant)", i, m.Role)
		}
	}
	var b strings.Builder
	switch format {
	case FormatLlama2:
		return renderLlama2(msgs)
	case FormatChatML:
		for _, m := range msgs {
			b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		if gen {
			b.WriteString("<|im_start|>assistant\n")
		}
	case FormatLlama3:
		b.WriteString("<|begin_of_text|>")
		for _, m := range msgs {
			b.WriteString("<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n" + strings.TrimSpace(m.Content) + "<|eot_id|>")
		}
		if gen {
			b.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
		}
	default:
		names := map[string]string{"system": "System", "user": "User", "assistant": "Assistant"}
		for _, m := range msgs {
			b.WriteString(names[m.Role] + ": " + m.Content + "\n")
		}
		if gen {
			b.WriteString("Assistant:")
		}
	}
	return b.String(), nil
}

// renderLlama2 follows Meta's Llama-2-chat template, including its refusal
// of conversations that do not alternate user/assistant.
func renderLlama2(msgs []Message) (string, error) {
	system, hasSystem := "", false
	if msgs[0].Role == "system" {
		system, hasSystem = msgs[0].Content, true
		msgs = msgs[1:]
		if len(msgs) == 0 {
			// The official template would silently drop the system prompt.
			return "", errors.New("tokenizer: llama2 chat needs a user message after the system message")
		}
	}
	var b strings.Builder
	for i, m := range msgs {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if m.Role != want {
			return "", fmt.Errorf("tokenizer: llama2 chat roles must alternate user/assistant after an optional system message; message %d is %q", i+boolInt(hasSystem), m.Role)
		}
		content := m.Content
		if i == 0 && hasSystem {
			content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content
		}
		if m.Role == "user" {
			b.WriteString("<s>[INST] " + strings.TrimSpace(content) + " [/INST]")
		} else {
			b.WriteString(" " + strings.TrimSpace(content) + " </s>")
		}
	}
	return b.String(), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
