package shared

import (
	"strconv"
	"testing"
)

// Frames sized for a 32-layer × 32-KV-head model and a 4k-token prompt, the
// largest the client is expected to draw smoothly.
func bigFrames() map[string]Frame {
	heads := make([]HeadProfile, 1024)
	for i := range heads {
		heads[i] = HeadProfile{Layer: i / 32, KVHead: i % 32, Policy: Policies[i%5],
			Recovery: map[string]float64{Policies[0]: 0.5, Policies[1]: 0.7, Policies[2]: 0.9, Policies[3]: 0.97, Policies[4]: 1},
			Mass:     Mass{0.4, 0.3, 0.2, 0.1}}
	}
	toks := make([]PromptToken, 4096)
	for i := range toks {
		toks[i] = PromptToken{ID: i, Text: " tok" + strconv.Itoa(i), Class: ClassNormal}
	}
	kept := make([]uint32, 1024)
	var ev []Eviction
	for i := range kept {
		kept[i] = uint32(4000 + i)
		if i%2 == 0 {
			ev = append(ev, Eviction{Head: i, Positions: []uint32{uint32(i), uint32(i + 7)}})
		}
	}
	return map[string]Frame{
		"profile":   &Profile{ID: "r", Stream: "fastgen", Threshold: 0.98, Heads: heads, PromptTokens: toks},
		"occupancy": &Occupancy{ID: "r", Stream: "fastgen", Index: 9, Kept: kept, Evicted: ev, KVBytes: 1 << 30, KVBytesFull: 1 << 31},
		"token": &Token{ID: "r", Stream: "fastgen", Index: 9, Token: 5, Text: " x", Logprob: -1,
			Top: []Alternative{{1, " a", -1}, {2, " b", -2}, {3, " c", -3}, {4, " d", -4}, {5, " e", -5}}},
	}
}

func BenchmarkDecode(b *testing.B) {
	for name, f := range bigFrames() {
		buf, err := Encode(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
