package app

import (
	"net/url"
	"slices"
	"strconv"

	"github.com/fastgen/fastgen/shared"
)

// Settings are the request knobs a page exposes. The compare page encodes
// them in its URL so a comparison can be shared and reproduced exactly.
type Settings struct {
	Prompt      string
	Seed        int64
	Mode        string
	Threshold   float64
	Temperature float64
	TopP        float64
	MaxTokens   int
	Baseline    string
	TopK        int
}

// DefaultSettings are what the pages start with: greedy decoding, so two
// runs of the same prompt differ only by their caches.
func DefaultSettings() Settings {
	return Settings{
		Seed: 1, Mode: shared.ModeFastGen, Threshold: shared.DefaultThreshold,
		Temperature: 0, TopP: 1, MaxTokens: 128, Baseline: shared.ModeFull, TopK: 5,
	}
}

// Query encodes settings as URL query parameters.
func (s Settings) Query() string {
	v := url.Values{}
	v.Set("prompt", s.Prompt)
	v.Set("seed", strconv.FormatInt(s.Seed, 10))
	v.Set("mode", s.Mode)
	v.Set("t", strconv.FormatFloat(s.Threshold, 'g', -1, 64))
	v.Set("temp", strconv.FormatFloat(s.Temperature, 'g', -1, 64))
	v.Set("top_p", strconv.FormatFloat(s.TopP, 'g', -1, 64))
	v.Set("max", strconv.Itoa(s.MaxTokens))
	v.Set("vs", s.Baseline)
	v.Set("k", strconv.Itoa(s.TopK))
	return v.Encode()
}

// ParseSettings reads a query string over the defaults; a malformed or
// out-of-range value keeps its default, because a shared link should open
// rather than fail.
func ParseSettings(query string) Settings {
	s := DefaultSettings()
	v, err := url.ParseQuery(query)
	if err != nil {
		return s
	}
	s.Prompt = v.Get("prompt")
	if n, err := strconv.ParseInt(v.Get("seed"), 10, 64); err == nil {
		s.Seed = n
	}
	if m := v.Get("mode"); slices.Contains(shared.KVModes, m) {
		s.Mode = m
	}
	if m := v.Get("vs"); slices.Contains(shared.KVModes, m) {
		s.Baseline = m
	}
	if f, err := strconv.ParseFloat(v.Get("t"), 64); err == nil && f >= 0 && f <= 1 {
		s.Threshold = f
	}
	if f, err := strconv.ParseFloat(v.Get("temp"), 64); err == nil && f >= 0 && f <= 10 {
		s.Temperature = f
	}
	if f, err := strconv.ParseFloat(v.Get("top_p"), 64); err == nil && f > 0 && f <= 1 {
		s.TopP = f
	}
	if n, err := strconv.Atoi(v.Get("max")); err == nil && n >= 0 {
		s.MaxTokens = n
	}
	if n, err := strconv.Atoi(v.Get("k")); err == nil && n >= 0 && n <= shared.MaxTopKAlternatives {
		s.TopK = n
	}
	return s
}

// Request builds the generate frame for these settings.
func (s Settings) Request(id string, compare bool) shared.Generate {
	g := shared.Generate{
		ID: id, Prompt: s.Prompt, MaxTokens: s.MaxTokens,
		Temperature: shared.Ptr(s.Temperature), TopP: shared.Ptr(s.TopP), Seed: shared.Ptr(s.Seed),
		KV:               &shared.KV{Mode: s.Mode, Threshold: shared.Ptr(s.Threshold)},
		TopKAlternatives: s.TopK,
	}
	if compare {
		g.Compare = true
		g.CompareWith = s.Baseline
	}
	return g
}
