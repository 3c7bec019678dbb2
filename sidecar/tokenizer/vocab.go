package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// TokenType uses the GGUF tokenizer.ggml.token_type values so a loader can
// copy the metadata array without translation.
type TokenType int32

const (
	Normal      TokenType = 1
	Unknown     TokenType = 2
	Control     TokenType = 3
	UserDefined TokenType = 4
	Unused      TokenType = 5
	Byte        TokenType = 6
)

func (t TokenType) String() string {
	switch t {
	case Normal:
		return "normal"
	case Unknown:
		return "unknown"
	case Control:
		return "control"
	case UserDefined:
		return "user-defined"
	case Unused:
		return "unused"
	case Byte:
		return "byte"
	}
	return fmt.Sprintf("TokenType(%d)", int32(t))
}

// Vocab is the tokenizer part of a model file, field for field the GGUF
// tokenizer.ggml.* keys. Scores and Types may be nil (every score 0, every
// type Normal); when present they must have one entry per token.
type Vocab struct {
	// Model is "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE).
	Model  string
	Tokens []string
	Scores []float32
	Types  []TokenType
	// Merges are "left right" pairs in rank order (gpt2 only).
	Merges []string
	// BOS, EOS, UNK and PAD are token ids, or -1 for none.
	BOS, EOS, UNK, PAD int
	// AddBOS and AddEOS record the file's tokenizer.ggml.add_*_token; callers
	// decide from them what to pass to Encode.
	AddBOS, AddEOS bool
	// Pre names the byte-level BPE pre-tokenizer: "llama3" (alias
	// "llama-bpe", "smaug-bpe"), "qwen2" (alias "deepseek-r1-qwen"), or
	// "default"/"gpt2"/"" for GPT-2's original split.
	Pre          string
	ChatTemplate string
}

// ReadLlama2c reads a llama2.c tokenizer.bin: a uint32 max_token_length,
// then vocabSize records of float32 score, int32 length and that many
// bytes. Pieces keep llama2.c's plain space (no ▁), which Tokenizer detects,
// so Encode and Decode give exactly run.c's ids and text.
func ReadLlama2c(path string, vocabSize int) (*Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return parseLlama2c(path, data, vocabSize)
}

func parseLlama2c(path string, data []byte, vocabSize int) (*Vocab, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("tokenizer: %s: %s", path, fmt.Sprintf(format, args...))
	}
	if vocabSize <= 0 {
		return nil, bad("vocab size %d must be positive", vocabSize)
	}
	// Each record needs at least 8 bytes, so a vocab size the file cannot
	// hold is rejected before anything is allocated for it.
	if len(data) < 4 || (len(data)-4)/8 < vocabSize {
		return nil, bad("file of %d bytes is too short for %d tokens (truncated, or not a llama2.c tokenizer.bin?)", len(data), vocabSize)
	}
	maxLen := binary.LittleEndian.Uint32(data)
	v := &Vocab{
		Model:  "llama",
		Tokens: make([]string, vocabSize),
		Scores: make([]float32, vocabSize),
		Types:  make([]TokenType, vocabSize),
		BOS:    1, EOS: 2, UNK: 0, PAD: -1,
		AddBOS: true,
		Pre:    "default",
	}
	off := 4
	for i := 0; i < vocabSize; i++ {
		if len(data)-off < 8 {
			return nil, bad("truncated at token %d of %d (offset %d)", i, vocabSize, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || int64(n) > int64(len(data)-off) {
			return nil, bad("token %d has length %d but only %d bytes remain (corrupt or truncated)", i, n, len(data)-off)
		}
		if uint32(n) > maxLen {
			return nil, bad("token %d has length %d, above the header's max_token_length %d (corrupt file?)", i, n, maxLen)
		}
		if math.IsNaN(float64(score)) {
			return nil, bad("token %d has a NaN score (corrupt file?)", i)
		}
		piece := string(data[off : off+int(n)])
		off += int(n)
		v.Tokens[i] = piece
		v.Scores[i] = score
		v.Types[i] = Normal
		if _, ok := parseByteToken(piece); ok {
			v.Types[i] = Byte
		}
	}
	// run.c hard-codes these ids; giving them types lets Decode hide BOS/EOS
	// text the way llama.cpp hides control tokens.
	v.Types[0] = Unknown
	if vocabSize > 1 {
		v.Types[1] = Control
	} else {
		v.BOS = -1
	}
	if vocabSize > 2 {
		v.Types[2] = Control
	} else {
		v.EOS = -1
	}
	return v, nil
}

// parseByteToken recognises SentencePiece byte pieces "<0xNN>" (upper-case
// hex, as SentencePiece writes them).
func parseByteToken(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(s[3])
	lo, ok2 := hexVal(s[4])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
