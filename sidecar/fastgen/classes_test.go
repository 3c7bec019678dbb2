package fastgen

import (
	"testing"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

func TestIsPunctPiece(t *testing.T) {
	for _, tc := range []struct {
		piece string
		want  bool
	}{
		{".", true},
		{",", true},
		{" \"", true}, // whitespace is ignored
		{"!?", true},
		{"...", true},
		{" (", true},
		{"»", true},
		{"—", true},  // em dash: Unicode Pd
		{"。", true},  // ideographic full stop
		{"\n", true}, // newlines are a sentence/paragraph boundary
		{"\n\n", true},
		{"\r\n", true},
		{".\n", true},
		{"a.", false},
		{"'s", false},
		{" ", false}, // only whitespace, no punctuation
		{"\t", false},
		{"", false},
		{"a", false},
		{"1.", false},
		{"$", false}, // symbols (Sc, Sm, Sk) are not punctuation
		{"+", false},
		{"<", false},
		{"\xff", false}, // a lone byte token
	} {
		if got := IsPunctPiece(tc.piece); got != tc.want {
			t.Errorf("IsPunctPiece(%q) = %v, want %v", tc.piece, got, tc.want)
		}
	}
}

type fakeVocab struct {
	pieces  []string
	control map[int]bool
}

func (v fakeVocab) Len() int              { return len(v.pieces) }
func (v fakeVocab) Piece(id int) string   { return v.pieces[id] }
func (v fakeVocab) IsControl(id int) bool { return v.control[id] }

func TestNewClasses(t *testing.T) {
	v := fakeVocab{
		pieces: []string{
			0: "<s>", 1: "</s>", 2: "<|im_start|>", 3: "<|im_end|>", 4: " hello",
			5: ".", 6: "\n", 7: " ", 8: "[INST]", 9: " [INST]", 10: "a.", 11: "!",
			12: "<unk>",
		},
		control: map[int]bool{0: true, 1: true, 2: true, 3: true, 12: true},
	}
	c := NewClasses(v, []string{"<|im_start|>", "<|im_end|>", "[INST]", "", "  "})
	for id, want := range map[int]kvcache.Flags{
		0: kvcache.FlagSpecial, 1: kvcache.FlagSpecial, 2: kvcache.FlagSpecial, 3: kvcache.FlagSpecial,
		12: kvcache.FlagSpecial,
		4:  0,
		5:  kvcache.FlagPunct, 6: kvcache.FlagPunct, 11: kvcache.FlagPunct,
		7: 0,                                           // an empty chat marker must not make whitespace special
		8: kvcache.FlagSpecial, 9: kvcache.FlagSpecial, // a marker that is one token
		10: 0,
	} {
		if got := c.Of(id); got != want {
			t.Errorf("class of %d (%q) = %s, want %s", id, v.pieces[id], Name(got), Name(want))
		}
	}
	if c.Of(-1) != 0 || c.Of(len(v.pieces)) != 0 {
		t.Error("ids outside the vocabulary have a class")
	}
	c.Set(4, kvcache.FlagPunct)
	c.Set(99, kvcache.FlagSpecial) // ignored
	if c.Of(4) != kvcache.FlagPunct {
		t.Error("Set did not override a class")
	}
	for f, want := range map[kvcache.Flags]string{0: "normal", kvcache.FlagPunct: "punct", kvcache.FlagSpecial: "special", kvcache.FlagSpecial | kvcache.FlagPunct: "special"} {
		if Name(f) != want {
			t.Errorf("Name(%d) = %q, want %q", f, Name(f), want)
		}
	}
}
