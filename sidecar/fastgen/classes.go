// Package fastgen implements FastGen's profiling (Ge et al., ICLR 2024): token
// classes, the per-head recovery of each candidate policy over the prompt's
// attention, and the Eq. 2 choice of the cheapest policy that recovers the
// threshold T. The policies themselves are kvcache.Policy values: this package
// decides, the cache keeps and evicts.
package fastgen

import (
	"strings"
	"unicode"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// Vocab is what token classification needs from a tokenizer.
type Vocab interface {
	Len() int
	Piece(id int) string   // the decoded text of one token
	IsControl(id int) bool // BOS, EOS and other control tokens
}

// Classes maps every token id of a vocabulary to its class flags. It is
// computed once per model and may be overridden per id.
type Classes struct {
	flags []kvcache.Flags
}

// NewClasses classifies a vocabulary: special = control tokens plus tokens
// whose text is one of the chat template's markers; punct = tokens whose
// piece, ignoring whitespace, is non-empty and all Unicode punctuation, or is
// only newlines (a sentence or paragraph boundary).
func NewClasses(v Vocab, chatMarkers []string) *Classes {
	markers := make(map[string]bool, len(chatMarkers))
	for _, m := range chatMarkers {
		// A blank marker would match every whitespace-only piece (newlines
		// included) and make them special.
		if m = strings.TrimSpace(m); m != "" {
			markers[m] = true
		}
	}
	c := &Classes{flags: make([]kvcache.Flags, v.Len())}
	for id := range c.flags {
		piece := v.Piece(id)
		switch {
		case v.IsControl(id) || (piece != "" && markers[strings.TrimSpace(piece)]):
			c.flags[id] = kvcache.FlagSpecial
		case IsPunctPiece(piece):
			c.flags[id] = kvcache.FlagPunct
		}
	}
	return c
}

// IsPunctPiece applies the spec's punctuation rule to one decoded piece.
func IsPunctPiece(piece string) bool {
	if piece == "" {
		return false
	}
	if strings.Trim(piece, "\r\n") == "" {
		return true
	}
	seen := false
	for _, r := range piece {
		switch {
		case unicode.IsSpace(r):
		case unicode.IsPunct(r):
			seen = true
		default:
			return false
		}
	}
	return seen
}

// Of returns the flags of a token id (none for ids outside the vocabulary).
func (c *Classes) Of(id int) kvcache.Flags {
	if id < 0 || id >= len(c.flags) {
		return 0
	}
	return c.flags[id]
}

// Set overrides the class of one token id.
func (c *Classes) Set(id int, f kvcache.Flags) {
	if id >= 0 && id < len(c.flags) {
		c.flags[id] = f
	}
}

// Name is the class name used on the wire: "special", "punct" or "normal".
func Name(f kvcache.Flags) string {
	switch {
	case f&kvcache.FlagSpecial != 0:
		return "special"
	case f&kvcache.FlagPunct != 0:
		return "punct"
	}
	return "normal"
}
