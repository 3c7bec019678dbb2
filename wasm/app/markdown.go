package app

import (
	"html"
	"strings"
)

// Markdown renders the small subset a chat model emits — paragraphs, line
// breaks, fenced and inline code, **bold** and *italic* — to HTML. All text
// is escaped first, so model output can never inject markup; an unclosed
// marker (common mid-stream) is left as literal text.
func Markdown(src string) string {
	var b strings.Builder
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	var para []string
	flush := func() {
		if len(para) == 0 {
			return
		}
		b.WriteString("<p>")
		for i, l := range para {
			if i > 0 {
				b.WriteString("<br>")
			}
			b.WriteString(inline(l))
		}
		b.WriteString("</p>")
		para = para[:0]
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			flush()
			var code []string
			i++
			for ; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				code = append(code, lines[i])
			}
			// A fence still open while streaming renders as code so far.
			b.WriteString("<pre><code>")
			b.WriteString(html.EscapeString(strings.Join(code, "\n")))
			b.WriteString("</code></pre>")
			continue
		}
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		para = append(para, l)
	}
	flush()
	return b.String()
}

// inline handles code spans first (their content is literal), then
// emphasis in the text between them.
func inline(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '`')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '`')
		if j < 0 {
			break
		}
		b.WriteString(emphasis(s[:i]))
		b.WriteString("<code>")
		b.WriteString(html.EscapeString(s[i+1 : i+1+j]))
		b.WriteString("</code>")
		s = s[i+2+j:]
	}
	b.WriteString(emphasis(s))
	return b.String()
}

func emphasis(s string) string {
	s = html.EscapeString(s)
	s = wrapPairs(s, "**", "<strong>", "</strong>")
	s = wrapPairs(s, "__", "<strong>", "</strong>")
	s = wrapPairs(s, "*", "<em>", "</em>")
	s = wrapPairs(s, "_", "<em>", "</em>")
	return s
}

// wrapPairs replaces matched pairs of marker around non-space-bounded text;
// "2 * 3 * 4" and snake_case_names stay as they are.
func wrapPairs(s, marker, open, close string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, marker)
		if i < 0 {
			break
		}
		rest := s[i+len(marker):]
		j := strings.Index(rest, marker)
		if j <= 0 || rest[0] == ' ' || rest[j-1] == ' ' ||
			(len(marker) == 1 && marker == "_" && (isWord(s, i-1) || isWord(rest, j+1))) {
			b.WriteString(s[:i+len(marker)])
			s = rest
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(open)
		b.WriteString(rest[:j])
		b.WriteString(close)
		s = rest[j+len(marker):]
	}
	b.WriteString(s)
	return b.String()
}

func isWord(s string, i int) bool {
	if i < 0 || i >= len(s) {
		return false
	}
	c := s[i]
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
