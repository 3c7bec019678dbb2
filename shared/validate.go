package shared

import (
	"fmt"
	"math"
	"slices"
)

// Request limits. They bound what one client can ask of the server; the
// model's context length is checked by the server, which knows it.
const (
	MaxIDLen            = 128
	MaxTopKAlternatives = 20
	MaxMessages         = 256
)

// ValidationError names the offending field of a Generate.
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string {
	return "shared: invalid generate: " + e.Field + ": " + e.Problem
}

// invalid is a problem with one field; never nil, so it may be returned as
// an error.
func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// finite rejects NaN and ±Inf, which compare false against every bound and
// would otherwise slip through range checks.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate checks the request against the protocol's rules. It reports the
// first problem found, naming the field.
func (g *Generate) Validate() error {
	switch {
	case g.ID == "":
		return invalid("id", "required")
	case len(g.ID) > MaxIDLen:
		return invalid("id", "longer than %d bytes", MaxIDLen)
	case g.Prompt != "" && len(g.Messages) > 0:
		return invalid("prompt", "set either prompt or messages, not both")
	case g.Prompt == "" && len(g.Messages) == 0:
		return invalid("prompt", "set prompt or messages")
	case len(g.Messages) > MaxMessages:
		return invalid("messages", "more than %d messages", MaxMessages)
	case g.MaxTokens < 0:
		return invalid("max_tokens", "must be >= 0")
	case g.TopKAlternatives < 0 || g.TopKAlternatives > MaxTopKAlternatives:
		return invalid("top_k_alternatives", "must be in [0,%d]", MaxTopKAlternatives)
	}
	for i, m := range g.Messages {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant:
		default:
			return invalid(fmt.Sprintf("messages[%d].role", i), "%q is not system, user or assistant", m.Role)
		}
	}
	if t := g.Temperature; t != nil && (!finite(*t) || *t < 0) {
		return invalid("temperature", "must be >= 0")
	}
	if p := g.TopP; p != nil && (!finite(*p) || *p <= 0 || *p > 1) {
		return invalid("top_p", "must be in (0,1]")
	}
	mode := g.Mode()
	if g.KV != nil {
		if e := g.KV.check(); e != nil {
			return invalid("kv."+e.Field, "%s", e.Problem)
		}
	}
	if g.CompareWith != "" {
		if !slices.Contains(KVModes, g.CompareWith) {
			return invalid("compare_with", "unknown mode %q", g.CompareWith)
		}
	}
	if g.Compare && g.Baseline() == mode {
		return invalid("compare_with", "compares %q with itself", mode)
	}
	return nil
}

// Validate checks a cache selection (a generate frame's kv, or the OpenAI
// API's kv_compression); a problem is a *ValidationError whose field is
// named relative to the selection ("budget").
func (kv *KV) Validate() error {
	if e := kv.check(); e != nil {
		return e
	}
	return nil
}

// EffectiveMode is the selection's mode with the default (FastGen) applied.
func (kv *KV) EffectiveMode() string {
	if kv.Mode == "" {
		return ModeFastGen
	}
	return kv.Mode
}

func (kv *KV) check() *ValidationError {
	if !slices.Contains(KVModes, kv.EffectiveMode()) {
		return invalid("mode", "unknown mode %q", kv.Mode)
	}
	if t := kv.Threshold; t != nil && (!finite(*t) || *t < 0 || *t > 1) {
		return invalid("threshold", "must be in [0,1]")
	}
	if !finite(kv.Budget) || kv.Budget < 0 || kv.Budget > 1 {
		return invalid("budget", "must be in (0,1], or 0 for the default")
	}
	if !finite(kv.LocalRatio) || kv.LocalRatio < 0 || kv.LocalRatio > 1 {
		return invalid("local_ratio", "must be in [0,1]")
	}
	if !finite(kv.FrequentRatio) || kv.FrequentRatio < 0 || kv.FrequentRatio > 1 {
		return invalid("frequent_ratio", "must be in [0,1]")
	}
	return nil
}

// Mode is the request's KV mode with the default applied.
func (g *Generate) Mode() string {
	if g.KV == nil {
		return ModeFastGen
	}
	return g.KV.EffectiveMode()
}

// Threshold is the request's T with the default applied.
func (g *Generate) Threshold() float64 {
	if g.KV == nil || g.KV.Threshold == nil {
		return DefaultThreshold
	}
	return *g.KV.Threshold
}

// Baseline is the compare-mode second stream's mode, "full" by default.
func (g *Generate) Baseline() string {
	if g.CompareWith == "" {
		return ModeFull
	}
	return g.CompareWith
}

// Streams lists the stream names a request produces, in the order the
// server reports them: the request's own mode, then the baseline.
func (g *Generate) Streams() []string {
	if g.Compare {
		return []string{g.Mode(), g.Baseline()}
	}
	return []string{g.Mode()}
}

// Ptr returns a pointer to v, for the optional fields of Generate and KV.
func Ptr[T any](v T) *T { return &v }
