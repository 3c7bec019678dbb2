package kvcache

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Flags classify a cached token (see the spec's "Token classes").
type Flags uint8

const (
	FlagSpecial Flags = 1 << iota
	FlagPunct
)

// Component is one rule that can keep an entry. A policy keeps the union of
// what its components keep.
type Component uint8

const (
	Special  Component = 1 << iota // special tokens
	Punct                          // punctuation tokens
	Frequent                       // top entries by frequency score
	Local                          // a window of the most recent positions
	Sink                           // the first positions (StreamingLLM)
	Random                         // a random subset of a fixed budget
	Full                           // everything
)

var componentNames = []struct {
	c    Component
	name string
}{
	{Special, "special"}, {Punct, "punct"}, {Frequent, "frequent"}, {Local, "local"},
	{Sink, "sink"}, {Random, "random"}, {Full, "full"},
}

// ParseComponent reads one component name.
func ParseComponent(s string) (Component, error) {
	for _, cn := range componentNames {
		if cn.name == s {
			return cn.c, nil
		}
	}
	return 0, fmt.Errorf("unknown policy component %q", s)
}

// Budget is a number of entries, absolute (Tokens > 0) or as a share of the
// current length t (Ratio).
type Budget struct {
	Ratio  float64
	Tokens int
}

// At is the budget at current length t, never negative.
func (b Budget) At(t int) int {
	if b.Tokens > 0 {
		return b.Tokens
	}
	n := int(math.Ceil(b.Ratio*float64(t) - 1e-9))
	if n < 0 {
		return 0
	}
	return n
}

func (b Budget) String() string {
	if b.Tokens > 0 {
		return fmt.Sprint(b.Tokens)
	}
	return fmt.Sprintf("%.3g", b.Ratio)
}

// Policy decides which entries of one head stay. It is re-applied after each
// decode step (attend first, then evict), and evicted entries are gone for
// good.
type Policy struct {
	Keep     Component
	Window   Budget // Local: keep entries with cur−pos < Window
	Frequent Budget // Frequent: keep the top entries by score
	Sinks    int    // Sink: keep positions < Sinks
	Random   Budget // Random: keep this many entries, chosen at random
}

// FullPolicy keeps everything.
var FullPolicy = Policy{Keep: Full}

// IsFull reports whether the policy never evicts.
func (p Policy) IsFull() bool { return p.Keep&Full != 0 }

// Name is the policy's name: one of the spec's five FastGen names when the
// components spell one (special, special+punct, special+punct+frequent,
// special+punct+frequent+local, full), else the components joined by '+'.
func (p Policy) Name() string {
	if p.IsFull() {
		return "full"
	}
	var parts []string
	for _, cn := range componentNames {
		if p.Keep&cn.c != 0 {
			parts = append(parts, cn.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Baseline modes: one policy for all heads, on the same store and code path.
const (
	ModeFull      = "full"
	ModeFastGen   = "fastgen"
	ModeLocal     = "local"
	ModeFrequent  = "frequent"
	ModeH2O       = "h2o"
	ModeStreaming = "streaming"
	ModeRandom    = "random"
)

// Modes lists every cache mode in a stable order.
var Modes = []string{ModeFull, ModeFastGen, ModeLocal, ModeFrequent, ModeH2O, ModeStreaming, ModeRandom}

// CheckMode reports a mode that is not one of Modes.
func CheckMode(mode string) error {
	if slices.Contains(Modes, mode) {
		return nil
	}
	return fmt.Errorf("unknown KV cache mode %q (want one of %s)", mode, strings.Join(Modes, ", "))
}

// StreamingSinks is StreamingLLM's number of attention-sink tokens.
const StreamingSinks = 4

// BaselinePolicy is the fixed policy of a baseline mode for a kept budget.
// H2O splits its budget evenly between recent and heavy-hitter entries, as the
// H2O paper does; streaming keeps 4 sinks plus a window of the rest.
func BaselinePolicy(mode string, budget Budget) (Policy, error) {
	half := Budget{Ratio: budget.Ratio / 2}
	if budget.Tokens > 0 {
		half = Budget{Tokens: max(1, budget.Tokens/2)}
	}
	rest := budget
	if budget.Tokens > 0 {
		rest = Budget{Tokens: max(1, budget.Tokens-StreamingSinks)}
	}
	switch mode {
	case ModeFull:
		return FullPolicy, nil
	case ModeLocal:
		return Policy{Keep: Local, Window: budget}, nil
	case ModeFrequent:
		return Policy{Keep: Frequent, Frequent: budget}, nil
	case ModeH2O:
		return Policy{Keep: Local | Frequent, Window: half, Frequent: half}, nil
	case ModeStreaming:
		return Policy{Keep: Sink | Local, Sinks: StreamingSinks, Window: rest}, nil
	case ModeRandom:
		return Policy{Keep: Random, Random: budget}, nil
	}
	if err := CheckMode(mode); err != nil {
		return Policy{}, err
	}
	return Policy{}, fmt.Errorf("mode %q has no fixed policy", mode) // fastgen chooses per head
}

// ParseBudget reads a budget: a ratio in (0, 1] ("0.5") or a token count ("256").
func ParseBudget(s string) (Budget, error) {
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil || f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return Budget{}, fmt.Errorf("bad budget %q: want a ratio in (0,1] or a token count ≥ 1", s)
	}
	if f <= 1 && strings.ContainsAny(s, ".eE") || f < 1 {
		return Budget{Ratio: f}, nil
	}
	if f != math.Trunc(f) {
		return Budget{}, fmt.Errorf("bad budget %q: a token count must be a whole number", s)
	}
	return Budget{Tokens: int(f)}, nil
}
