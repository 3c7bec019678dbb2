package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Prompt is one evaluation prompt. An empty Continuation means the reference
// is the full-cache model's own greedy output for the prompt.
type Prompt struct {
	Text         string `json:"prompt"`
	Continuation string `json:"continuation,omitempty"`
}

// LoadPrompts reads prompts from a file: JSONL objects
// {"prompt": ..., "continuation": ...} when the first non-blank line starts
// with '{', else plain text with one prompt per line where "\n", "\t" and
// "\\" are escapes (so a prompt can span lines). Blank lines are skipped.
func LoadPrompts(path string) ([]Prompt, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	var out []Prompt
	jsonl := strings.HasPrefix(lines[0].text, "{")
	for _, l := range lines {
		if !jsonl {
			out = append(out, Prompt{Text: Unescape(l.text)})
			continue
		}
		var p Prompt
		d := json.NewDecoder(strings.NewReader(l.text))
		d.DisallowUnknownFields()
		if err := d.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, l.n, err)
		}
		if p.Text == "" {
			return nil, fmt.Errorf("%s:%d: empty \"prompt\"", path, l.n)
		}
		out = append(out, p)
	}
	return out, nil
}

// LoadContinuations reads one reference continuation per line (same escapes
// as plain-text prompts) and sets them on ps, which must match in number.
func LoadContinuations(path string, ps []Prompt) error {
	lines, err := readLines(path)
	if err != nil {
		return err
	}
	if len(lines) != len(ps) {
		return fmt.Errorf("%s: %d continuations for %d prompts", path, len(lines), len(ps))
	}
	for i, l := range lines {
		ps[i].Continuation = Unescape(l.text)
	}
	return nil
}

type line struct {
	n    int
	text string
}

func readLines(path string) ([]line, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, line{n, strings.TrimRight(sc.Text(), "\r")})
		}
	}
	return out, sc.Err()
}

// Unescape expands "\n", "\t" and "\\"; any other backslash stays as is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
