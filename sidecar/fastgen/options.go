package fastgen

import (
	"fmt"
	"math"
	"strings"

	"github.com/fastgen/fastgen/sidecar/kvcache"
)

// Aggregation is how the query heads that share one KV head (GQA/MQA) are
// combined when judging that KV head.
type Aggregation uint8

const (
	AggMean Aggregation = iota // average the group's attention (spec default)
	AggMin                     // the group's worst recovery (stricter)
)

// Options are every choice the paper leaves open, with the spec's defaults.
type Options struct {
	Threshold float64 // T: a head takes the first candidate recovering ≥ T
	RLocal    float64 // r_l: local window = ceil(r_l · L), L = prompt length
	RFreq     float64 // r_f: frequent keeps the top ceil(r_f · t)
	// Order is the order in which components join the candidates: candidate k
	// keeps the union of the first k components. Full is always last.
	Order        []kvcache.Component
	RecoveryRows int // 0: mean over all prompt rows; N: the last N rows only
	GQA          Aggregation
	Score        kvcache.ScoreMode
}

// DefaultOrder is the paper's Eq. 2 order.
var DefaultOrder = []kvcache.Component{kvcache.Special, kvcache.Punct, kvcache.Frequent, kvcache.Local}

// Defaults returns the spec's defaults: T = 0.98, r_l = r_f = 0.3, Eq. 2 order,
// all rows, GQA mean, cumulative scores.
func Defaults() Options {
	return Options{Threshold: 0.98, RLocal: 0.3, RFreq: 0.3, Order: append([]kvcache.Component(nil), DefaultOrder...)}
}

// Validate reports the first option out of range.
func (o Options) Validate() error {
	switch {
	case math.IsNaN(o.Threshold) || o.Threshold < 0 || o.Threshold > 1:
		return fmt.Errorf("threshold %v out of range [0, 1]", o.Threshold)
	case !(o.RLocal >= 0 && o.RLocal <= 1):
		return fmt.Errorf("r_l %v out of range [0, 1]", o.RLocal)
	case !(o.RFreq >= 0 && o.RFreq <= 1):
		return fmt.Errorf("r_f %v out of range [0, 1]", o.RFreq)
	case o.RecoveryRows < 0:
		return fmt.Errorf("recovery rows %d must be ≥ 0", o.RecoveryRows)
	}
	seen := kvcache.Component(0)
	for _, c := range o.Order {
		if c&(kvcache.Special|kvcache.Punct|kvcache.Frequent|kvcache.Local) == 0 || c&(c-1) != 0 {
			return fmt.Errorf("candidate order may only hold special, punct, frequent and local")
		}
		if seen&c != 0 {
			return fmt.Errorf("candidate order names a component twice")
		}
		seen |= c
	}
	return nil
}

// ParseOrder reads a candidate order such as "special,punct,frequent,local"
// (the paper's ablations drop or reorder components).
func ParseOrder(s string) ([]kvcache.Component, error) {
	var out []kvcache.Component
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		c, err := kvcache.ParseComponent(f)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseAggregation reads "mean" or "min".
func ParseAggregation(s string) (Aggregation, error) {
	switch s {
	case "mean", "":
		return AggMean, nil
	case "min":
		return AggMin, nil
	}
	return 0, fmt.Errorf("unknown GQA aggregation %q (want mean or min)", s)
}

// Candidates are the policies FastGen chooses among for a prompt of length L,
// cheapest first; the last is always full.
func (o Options) Candidates(L int) []kvcache.Policy {
	window := kvcache.Budget{Tokens: max(1, int(math.Ceil(o.RLocal*float64(L)-1e-9)))}
	freq := kvcache.Budget{Ratio: o.RFreq}
	var out []kvcache.Policy
	var keep kvcache.Component
	for _, c := range o.Order {
		keep |= c
		out = append(out, kvcache.Policy{Keep: keep, Window: window, Frequent: freq})
	}
	return append(out, kvcache.FullPolicy)
}

// PolicyNames are the spec's five policy names, in Eq. 2 order: the names of
// the default candidates, so they cannot drift from the policies themselves.
var PolicyNames = func() []string {
	var names []string
	for _, p := range Defaults().Candidates(1) {
		names = append(names, p.Name())
	}
	return names
}()
