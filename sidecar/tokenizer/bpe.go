package tokenizer

import (
	"container/heap"
	"fmt"
	"strings"
	"unicode/utf8"
)

// byteRune is GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for
// themselves and the rest are moved to U+0100 upwards, so every byte has a
// visible, whitespace-free character and vocab pieces stay plain strings.
var byteRune [256]rune

// runeByte inverts byteRune; -1 for runes no byte maps to.
var runeByte = map[rune]int{}

func init() {
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = next
			next++
		}
		runeByte[byteRune[b]] = b
	}
}

// bpeDecodeAppend maps a byte-level piece back to bytes. Runes outside the
// mapping (a malformed vocab) pass through as UTF-8 rather than vanish.
func bpeDecodeAppend(dst []byte, s string) []byte {
	for _, r := range s {
		if b, ok := runeByte[r]; ok {
			dst = append(dst, byte(b))
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

func (t *Tokenizer) initBPE() error {
	t.merges = make(map[[2]string]int, len(t.v.Merges))
	for i, m := range t.v.Merges {
		// llama.cpp searches from the second byte, so a merge whose left
		// side is itself a space still splits in the right place.
		k := -1
		if len(m) > 1 {
			if j := strings.IndexByte(m[1:], ' '); j >= 0 {
				k = j + 1
			}
		}
		if k < 0 || k == len(m)-1 {
			return fmt.Errorf("tokenizer: merge %d %q is not \"left right\"", i, m)
		}
		key := [2]string{m[:k], m[k+1:]}
		if _, dup := t.merges[key]; !dup {
			t.merges[key] = i
		}
	}
	switch t.v.Pre {
	case "llama3", "llama-bpe", "smaug-bpe":
		t.pre = preLlama3
		t.ignMerg = true
	case "qwen2", "deepseek-r1-qwen":
		t.pre = preQwen2
	case "", "default", "gpt2", "gpt-2":
		t.pre = preGPT2
	default:
		return fmt.Errorf("tokenizer: unsupported pre-tokenizer %q (supported: llama3, llama-bpe, smaug-bpe, qwen2, deepseek-r1-qwen, default, gpt2)", t.v.Pre)
	}
	return nil
}

// encodeBPE splits frag with the pre-tokenizer and runs rank-ordered merges
// inside each piece, as llama.cpp's llm_tokenizer_bpe does.
func (t *Tokenizer) encodeBPE(out []int, frag string) []int {
	var sb strings.Builder
	var syms []symbol
	q := &bigramQueue{bpe: true}
	t.pre.split(frag, func(word string) {
		sb.Reset()
		for i := 0; i < len(word); i++ {
			sb.WriteRune(byteRune[word[i]])
		}
		s := sb.String()
		if t.ignMerg {
			if id, ok := t.ids[s]; ok {
				out = append(out, id)
				return
			}
		}
		syms = splitSymbols(syms, s)
		q.items = q.items[:0]
		try := func(l int) {
			if l < 0 || syms[l].next < 0 {
				return
			}
			r := syms[l].next
			rank, ok := t.merges[[2]string{s[syms[l].start:syms[l].end], s[syms[r].start:syms[r].end]}]
			if !ok {
				return
			}
			heap.Push(q, bigram{left: l, size: syms[r].end - syms[l].start, rank: rank})
		}
		mergeSymbols(syms, q, try)
		for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
			piece := s[syms[i].start:syms[i].end]
			if id, ok := t.ids[piece]; ok {
				out = append(out, id)
				continue
			}
			// A merge result missing from the vocab: spell it byte by byte.
			for _, r := range piece {
				if id, ok := t.ids[string(r)]; ok {
					out = append(out, id)
				} else if t.v.UNK >= 0 {
					out = append(out, t.v.UNK)
				}
			}
		}
	})
	return out
}
