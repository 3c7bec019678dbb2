package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// spmSpace is SentencePiece's visible space (U+2581 LOWER ONE EIGHTH BLOCK).
const spmSpace = "\u2581"

// Tokenizer encodes and decodes with one Vocab. It is immutable after New
// and safe for concurrent use.
type Tokenizer struct {
	v     *Vocab
	isBPE bool

	ids    map[string]int
	types  []TokenType
	scores []float32

	// space is the character the SPM vocab writes for ' ': "▁" in GGUF and
	// SentencePiece files, " " in llama2.c's tokenizer.bin.
	space string
	// byteTok[b] is the SPM byte-fallback token for b, or -1.
	byteTok [256]int

	// BPE state.
	merges  map[[2]string]int
	pre     preTokenizer
	ignMerg bool // llama-3 emits a whole pre-token when the vocab has it

	// specials are the texts matched when parseSpecial is set (and
	// user-defined ones always), longest first so a longer marker wins.
	specials []special
	eog      map[int]bool
}

type special struct {
	text    string
	id      int
	control bool // only matched when parseSpecial
}

// New validates v and prepares lookup tables. The Tokenizer keeps v; the
// caller must not modify it afterwards.
func New(v *Vocab) (*Tokenizer, error) {
	if v == nil {
		return nil, errors.New("tokenizer: nil vocab")
	}
	n := len(v.Tokens)
	if n == 0 {
		return nil, errors.New("tokenizer: vocab has no tokens")
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(v.Types), n)
	}
	for _, f := range []struct {
		name string
		id   int
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}} {
		if f.id < -1 || f.id >= n {
			return nil, fmt.Errorf("tokenizer: %s id %d is outside the vocab of %d tokens (use -1 for none; GGUF writes none as 0xFFFFFFFF)", f.name, f.id, n)
		}
	}
	t := &Tokenizer{v: v, ids: make(map[string]int, n), types: v.Types, scores: v.Scores}
	if t.types == nil {
		t.types = make([]TokenType, n)
		for i := range t.types {
			t.types[i] = Normal
		}
	}
	if t.scores == nil {
		t.scores = make([]float32, n)
	}
	for i, ty := range t.types {
		if ty < Normal || ty > Byte {
			return nil, fmt.Errorf("tokenizer: token %d (%q) has type %d, not a GGUF token type 1..6", i, v.Tokens[i], ty)
		}
	}
	// First id wins for duplicate texts, so lookups are deterministic.
	for i, s := range v.Tokens {
		if _, dup := t.ids[s]; !dup {
			t.ids[s] = i
		}
	}
	switch v.Model {
	case "llama":
		t.initSPM()
	case "gpt2":
		t.isBPE = true
		if err := t.initBPE(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("tokenizer: unsupported tokenizer model %q (want \"llama\" or \"gpt2\")", v.Model)
	}
	t.initSpecials()
	return t, nil
}

func (t *Tokenizer) initSPM() {
	for i := range t.byteTok {
		t.byteTok[i] = -1
	}
	typed := t.v.Types != nil
	for i, s := range t.v.Tokens {
		if typed && t.types[i] != Byte {
			continue
		}
		if b, ok := parseByteToken(s); ok && t.byteTok[b] < 0 {
			t.byteTok[b] = i
		}
	}
	// Which space form the vocab uses decides escaping; ▁ wins, being what
	// every SentencePiece export writes.
	t.space = spmSpace
	sawSpace := false
	for i, s := range t.v.Tokens {
		if t.types[i] != Normal && t.types[i] != UserDefined {
			continue
		}
		if strings.Contains(s, spmSpace) {
			return
		}
		if strings.Contains(s, " ") {
			sawSpace = true
		}
	}
	if sawSpace {
		t.space = " "
	}
}

func (t *Tokenizer) initSpecials() {
	t.eog = map[int]bool{}
	if t.v.EOS >= 0 {
		t.eog[t.v.EOS] = true
	}
	for _, s := range []string{"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>"} {
		if id, ok := t.ids[s]; ok {
			t.eog[id] = true
		}
	}
	for i, s := range t.v.Tokens {
		ty := t.types[i]
		if s == "" || (ty != Control && ty != UserDefined && ty != Unknown) {
			continue
		}
		if t.ids[s] != i {
			continue
		}
		t.specials = append(t.specials, special{text: s, id: i, control: ty != UserDefined})
	}
	sort.SliceStable(t.specials, func(a, b int) bool { return len(t.specials[a].text) > len(t.specials[b].text) })
}

// Len is the vocab size.
func (t *Tokenizer) Len() int { return len(t.v.Tokens) }

// BOS is the beginning-of-sequence id, or -1.
func (t *Tokenizer) BOS() int { return t.v.BOS }

// EOS is the end-of-sequence id, or -1.
func (t *Tokenizer) EOS() int { return t.v.EOS }

// Vocab returns the vocab the Tokenizer was built from; do not modify it.
func (t *Tokenizer) Vocab() *Vocab { return t.v }

// Type is the token's GGUF type, or 0 for an id outside the vocab.
func (t *Tokenizer) Type(id int) TokenType {
	if id < 0 || id >= len(t.types) {
		return 0
	}
	return t.types[id]
}

// IsControl reports control tokens (BOS, EOS, chat markers), which Decode
// leaves out of the text.
func (t *Tokenizer) IsControl(id int) bool { return t.Type(id) == Control }

// IsEOG reports tokens that end generation: EOS and the chat end markers
// (<|eot_id|>, <|im_end|>, <|end_of_text|>, <|endoftext|>, <|eom_id|>) that
// the vocab contains, since chat models stop on those rather than on EOS.
func (t *Tokenizer) IsEOG(id int) bool { return t.eog[id] }

// Encode tokenizes text, with BOS first when addBOS is set and the vocab has
// one. With parseSpecial, the texts of control and unknown tokens in the
// input (e.g. "<|im_start|>") become their ids; user-defined tokens are
// always recognised, as in llama.cpp. EOS is never added: callers that want
// it (Vocab.AddEOS) append it.
func (t *Tokenizer) Encode(text string, addBOS bool, parseSpecial bool) []int {
	out := make([]int, 0, len(text)/3+2)
	if addBOS && t.v.BOS >= 0 {
		out = append(out, t.v.BOS)
	}
	// llama.cpp gives each text fragment that starts the input or follows a
	// special token its own dummy-prefix space (SPM only).
	prevSpecial := true
	t.splitSpecial(text, parseSpecial, func(frag string, id int) {
		if id >= 0 {
			out = append(out, id)
			prevSpecial = true
			return
		}
		if t.isBPE {
			out = t.encodeBPE(out, frag)
		} else {
			out = t.encodeSPM(out, frag, prevSpecial)
		}
		prevSpecial = false
	})
	return out
}

// splitSpecial calls emit for each raw-text fragment (id -1) and each
// special token found in text, in order. At each position the longest
// special text that matches wins.
func (t *Tokenizer) splitSpecial(text string, parseSpecial bool, emit func(string, int)) {
	start := 0
	for i := 0; i < len(text); {
		found := -1
		for k := range t.specials {
			sp := &t.specials[k]
			if sp.control && !parseSpecial {
				continue
			}
			if strings.HasPrefix(text[i:], sp.text) {
				found = k
				break
			}
		}
		if found < 0 {
			i++
			continue
		}
		if i > start {
			emit(text[start:i], -1)
		}
		emit("", t.specials[found].id)
		i += len(t.specials[found].text)
		start = i
	}
	if start < len(text) {
		emit(text[start:], -1)
	}
}

// piece appends token id's bytes to dst: SPM spaces restored, byte tokens as
// their byte, byte-level BPE mapped back to bytes. Out-of-range ids add
// nothing.
func (t *Tokenizer) piece(dst []byte, id int) []byte {
	if id < 0 || id >= len(t.v.Tokens) {
		return dst
	}
	s := t.v.Tokens[id]
	ty := t.types[id]
	if t.isBPE {
		if ty == Normal || ty == Byte {
			return bpeDecodeAppend(dst, s)
		}
		// llama.cpp stores control and user-defined BPE tokens raw.
		return append(dst, s...)
	}
	if ty == Byte {
		if b, ok := parseByteToken(s); ok {
			return append(dst, b)
		}
	}
	if t.space == " " {
		return append(dst, s...)
	}
	for {
		k := strings.Index(s, spmSpace)
		if k < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:k]...)
		dst = append(dst, ' ')
		s = s[k+len(spmSpace):]
	}
}

// Piece is the raw text of one token: spaces restored, a byte token as its
// single (possibly invalid UTF-8) byte, control tokens as their literal text.
func (t *Tokenizer) Piece(id int) string { return string(t.piece(nil, id)) }

// Decode turns ids into text. Control tokens give nothing (llama.cpp's
// default). For SPM vocabs the dummy-prefix space that Encode adds to each
// text fragment is removed again: from the first text token of the output and
// from the first one after a control or user-defined token. That includes
// llama2.c's strip after BOS, and makes Decode(Encode(s)) == s.
func (t *Tokenizer) Decode(ids []int) string {
	d := StreamDecoder{t: t, afterSpecial: true}
	buf := make([]byte, 0, len(ids)*4)
	for _, id := range ids {
		buf = d.appendPiece(buf, id)
	}
	return string(buf)
}

// StreamDecoder turns ids into text as they are generated, emitting only
// complete UTF-8 so a character split over byte tokens is never cut.
type StreamDecoder struct {
	t *Tokenizer
	// afterSpecial: the next text token starts a fragment that Encode gave
	// a dummy prefix.
	afterSpecial bool
	pending      []byte
}

// NewStreamDecoder starts a decoder whose output, concatenated with Flush,
// equals Decode of the same ids.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t, afterSpecial: true}
}

func (d *StreamDecoder) appendPiece(dst []byte, id int) []byte {
	t := d.t
	if id < 0 || id >= len(t.v.Tokens) {
		return dst
	}
	ty := t.types[id]
	if ty == Control {
		d.afterSpecial = true
		return dst
	}
	// Byte tokens are never stripped: run.c compares the piece text, which
	// for them is "<0x20>", not a space.
	strip := !t.isBPE && d.afterSpecial && ty != Byte
	d.afterSpecial = ty == UserDefined
	n := len(dst)
	dst = t.piece(dst, id)
	if strip && ty != UserDefined && len(dst) > n && dst[n] == ' ' {
		dst = append(dst[:n], dst[n+1:]...)
	}
	return dst
}

// Add takes the next id and returns the text that is now complete.
func (d *StreamDecoder) Add(id int) string {
	d.pending = d.appendPiece(d.pending, id)
	k := completePrefix(d.pending)
	if k == 0 {
		return ""
	}
	out := string(d.pending[:k])
	d.pending = append(d.pending[:0], d.pending[k:]...)
	return out
}

// Flush returns whatever is held back (an unfinished UTF-8 sequence, as raw
// bytes) and empties the decoder.
func (d *StreamDecoder) Flush() string {
	out := string(d.pending)
	d.pending = d.pending[:0]
	return out
}

// completePrefix is the length of b without a trailing UTF-8 sequence that
// more bytes could still complete. Invalid bytes are not held: waiting
// cannot fix them, and passing them on keeps Add's output equal to Decode's.
func completePrefix(b []byte) int {
	n := len(b)
	for back := 1; back <= 3 && back <= n; back++ {
		c := b[n-back]
		if c < 0x80 {
			return n
		}
		if c >= 0xC0 { // a lead byte: held if its sequence is still short
			if !utf8.FullRune(b[n-back:]) {
				return n - back
			}
			return n
		}
	}
	return n
}
