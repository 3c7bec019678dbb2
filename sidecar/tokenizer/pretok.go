package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// preTokenizer reproduces one of the pre-tokenizer regexes by hand: Go's
// regexp has no lookahead, and the regexes depend on `\s+(?!\S)` and on
// leftmost-alternative (not leftmost-longest) matching. Each case below is
// one alternative, tried in the regex's order.
//
//	gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//	llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//	qwen2:  the llama3 regex with \p{N} instead of \p{N}{1,3}
type preTokenizer int

const (
	preGPT2 preTokenizer = iota
	preLlama3
	preQwen2
)

func isL(r rune) bool { return unicode.IsLetter(r) }
func isN(r rune) bool { return unicode.IsNumber(r) }

// isS is \s: the Unicode White_Space property.
func isS(r rune) bool { return unicode.IsSpace(r) }

// isO is [^\s\p{L}\p{N}]. Invalid UTF-8 decodes to U+FFFD, a symbol, so stray
// bytes travel with punctuation and still reach the byte-level BPE intact.
func isO(r rune) bool { return !isS(r) && !isL(r) && !isN(r) }

func isCRLF(r rune) bool { return r == '\r' || r == '\n' }

// foldLower applies the case folding (?i) needs for the contraction
// letters: ASCII, plus U+017F LATIN SMALL LETTER LONG S, which Unicode folds
// to 's' and which the reference regex engines therefore match.
func foldLower(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	if r == '\u017f' {
		return 's'
	}
	return r
}

// contraction returns the rune length (2 or 3) of 's 't 're 've 'm 'll 'd at
// rs[i], or 0.
func contraction(rs []rune, i int, fold bool) int {
	if rs[i] != '\'' || i+1 >= len(rs) {
		return 0
	}
	c1 := rs[i+1]
	if fold {
		c1 = foldLower(c1)
	}
	switch c1 {
	case 's', 't', 'm', 'd':
		return 2
	}
	if i+2 >= len(rs) {
		return 0
	}
	c2 := rs[i+2]
	if fold {
		c2 = foldLower(c2)
	}
	if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
		return 3
	}
	return 0
}

func span(rs []rune, i int, f func(rune) bool) int {
	for i < len(rs) && f(rs[i]) {
		i++
	}
	return i
}

// split calls emit with consecutive substrings of text that together cover
// it exactly.
func (p preTokenizer) split(text string, emit func(string)) {
	rs := make([]rune, 0, len(text))
	offs := make([]int, 0, len(text)+1)
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		rs = append(rs, r)
		offs = append(offs, i)
		i += n
	}
	offs = append(offs, len(text))
	for i := 0; i < len(rs); {
		var j int
		if p == preGPT2 {
			j = p.nextGPT2(rs, i)
		} else {
			j = p.nextLlama3(rs, i)
		}
		emit(text[offs[i]:offs[j]])
		i = j
	}
}

// spaceEnd handles \s*[\r\n]+ (when crlf), \s+(?!\S) and \s+ for the
// whitespace run starting at i.
func spaceEnd(rs []rune, i int, crlf bool) int {
	j := span(rs, i, isS)
	if crlf {
		// \s* backtracks to the last \r or \n of the run.
		for k := j - 1; k >= i; k-- {
			if isCRLF(rs[k]) {
				return k + 1
			}
		}
	}
	if j == len(rs) || j-i == 1 {
		return j // \s+(?!\S) at the end of text, or the \s+ fallback
	}
	return j - 1 // leave one space to lead the next word
}

func (p preTokenizer) nextGPT2(rs []rune, i int) int {
	if n := contraction(rs, i, false); n > 0 {
		return i + n
	}
	j := i
	if rs[j] == ' ' && j+1 < len(rs) {
		j++
	}
	switch c := rs[j]; {
	case isL(c):
		return span(rs, j, isL)
	case isN(c):
		return span(rs, j, isN)
	case isO(c):
		return span(rs, j, isO)
	}
	return spaceEnd(rs, i, false)
}

func (p preTokenizer) nextLlama3(rs []rune, i int) int {
	if n := contraction(rs, i, true); n > 0 {
		return i + n
	}
	c := rs[i]
	if isL(c) {
		return span(rs, i, isL)
	}
	if !isCRLF(c) && !isN(c) && i+1 < len(rs) && isL(rs[i+1]) {
		return span(rs, i+1, isL)
	}
	if isN(c) {
		if p == preQwen2 {
			return i + 1
		}
		j := i + 1
		for j < len(rs) && j-i < 3 && isN(rs[j]) {
			j++
		}
		return j
	}
	j := i
	if c == ' ' && j+1 < len(rs) {
		j++
	}
	if isO(rs[j]) {
		j = span(rs, j, isO)
		return span(rs, j, isCRLF)
	}
	return spaceEnd(rs, i, true)
}
