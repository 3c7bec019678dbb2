package tokenizer

import (
	"container/heap"
	"strings"
)

// symbol is a run of text in the merge lists shared by both BPE flavours.
type symbol struct {
	start, end int // byte range in the working string
	prev, next int // -1 at the ends
}

// bigram is a candidate merge of symbols left and left's next. size records
// the merged length so entries made stale by an earlier merge are skipped.
type bigram struct {
	left, size int
	score      float32 // SPM: piece score, higher first
	rank       int     // BPE: merge rank, lower first
}

// bigramQueue pops the best candidate, ties going to the leftmost, which
// makes it equivalent to llama2.c's rescan-for-the-best-pair loop.
type bigramQueue struct {
	items []bigram
	bpe   bool
}

func (q *bigramQueue) Len() int { return len(q.items) }
func (q *bigramQueue) Less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if q.bpe {
		if a.rank != b.rank {
			return a.rank < b.rank
		}
	} else if a.score != b.score {
		return a.score > b.score
	}
	return a.left < b.left
}
func (q *bigramQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *bigramQueue) Push(x any)    { q.items = append(q.items, x.(bigram)) }
func (q *bigramQueue) Pop() any {
	x := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return x
}

// utf8Len follows llama.cpp's split of the input into characters: the lead
// byte alone decides the length, so invalid bytes still form symbols and
// reach byte fallback unchanged.
func utf8Len(c byte) int {
	switch {
	case c < 0x80:
		return 1
	case c < 0xC0:
		return 1
	case c < 0xE0:
		return 2
	case c < 0xF0:
		return 3
	}
	return 4
}

func splitSymbols(syms []symbol, s string) []symbol {
	syms = syms[:0]
	for i := 0; i < len(s); {
		n := min(utf8Len(s[i]), len(s)-i)
		syms = append(syms, symbol{start: i, end: i + n, prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// mergeSymbols runs the merges both BPE flavours share: try queues the pair
// starting at a symbol if the flavour allows it; the best queued pair is
// merged (unless an earlier merge changed either side) and its new
// neighbours are tried, until nothing is queued.
func mergeSymbols(syms []symbol, q *bigramQueue, try func(left int)) {
	for i := 1; i < len(syms); i++ {
		try(i - 1)
	}
	for q.Len() > 0 {
		b := heap.Pop(q).(bigram)
		l := &syms[b.left]
		if l.end == l.start || l.next < 0 {
			continue
		}
		r := &syms[l.next]
		if r.end-l.start != b.size {
			continue // one side already merged with something else
		}
		l.end = r.end
		r.start, r.end = 0, 0 // marks r as consumed
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		try(l.prev)
		try(b.left)
	}
}

// encodeSPM is SentencePiece BPE as llama.cpp runs it: escape spaces, add
// the dummy prefix, start from characters, repeatedly merge the adjacent
// pair whose concatenation is a vocab piece with the highest score, then
// spell out characters missing from the vocab as byte tokens.
func (t *Tokenizer) encodeSPM(out []int, frag string, prefix bool) []int {
	if frag == "" {
		return out
	}
	var sb strings.Builder
	sb.Grow(len(frag) + 3)
	if prefix {
		sb.WriteString(t.space)
	}
	if t.space == " " {
		sb.WriteString(frag)
	} else {
		for i := 0; i < len(frag); i++ {
			if frag[i] == ' ' {
				sb.WriteString(spmSpace)
			} else {
				sb.WriteByte(frag[i])
			}
		}
	}
	s := sb.String()
	syms := splitSymbols(make([]symbol, 0, len(s)), s)
	q := &bigramQueue{items: make([]bigram, 0, len(syms))}
	try := func(l int) {
		if l < 0 {
			return
		}
		r := syms[l].next
		if r < 0 {
			return
		}
		id, ok := t.ids[s[syms[l].start:syms[r].end]]
		if !ok {
			return
		}
		heap.Push(q, bigram{left: l, size: syms[r].end - syms[l].start, score: t.scores[id]})
	}
	mergeSymbols(syms, q, try)
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		piece := s[syms[i].start:syms[i].end]
		if id, ok := t.ids[piece]; ok {
			out = append(out, id)
			continue
		}
		for k := 0; k < len(piece); k++ {
			switch {
			case t.byteTok[piece[k]] >= 0:
				out = append(out, t.byteTok[piece[k]])
			case t.v.UNK >= 0:
				// Without byte tokens the whole character is unknown, once.
				out = append(out, t.v.UNK)
				k = len(piece)
			}
		}
	}
	return out
}
