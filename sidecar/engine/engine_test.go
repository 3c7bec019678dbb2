package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/fastgen"
	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
)

var storiesGreedy = []int{432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292}

func stories(t *testing.T) *Engine {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset: run through `go tool -modfile=tools/go.mod task test`, which points it at ../shared/models")
	}
	e, err := Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// collect records what a generation streams.
type collect struct {
	NopSink
	tokens   map[string][]int
	profiles int
	done     map[string]string
	compared int // token events that carry this step's comparison
}

func (c *collect) Token(s string, t Token) {
	if c.tokens == nil {
		c.tokens = map[string][]int{}
	}
	c.tokens[s] = append(c.tokens[s], t.ID)
	if t.Compared {
		c.compared++
	}
}
func (c *collect) Profile(string, *fastgen.Profile, []int) { c.profiles++ }
func (c *collect) Done(s, reason string, _ Stats) {
	if c.done == nil {
		c.done = map[string]string{}
	}
	c.done[s] = reason
}

func TestCompareSharesPrefill(t *testing.T) {
	e := stories(t)
	for _, tc := range []struct {
		name      string
		threshold float64
		lossless  bool
	}{
		{"T=1 is lossless", 1, true},
		{"T=0.9 prunes", 0.9, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := DefaultKV()
			kv.FastGen.Threshold = tc.threshold
			var sink collect
			res, err := e.Generate(context.Background(), Request{Prompt: "Once upon a time", MaxTokens: len(storiesGreedy), KV: kv,
				Compare: &KVOptions{Mode: kvcache.ModeFull}}, &sink)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 || res[0].Stream != "fastgen" || res[1].Stream != "full" {
				t.Fatalf("streams %v", res)
			}
			if !slices.Equal(res[1].Tokens, storiesGreedy) || !slices.Equal(sink.tokens["full"], storiesGreedy) {
				t.Errorf("full stream %v, want the reference %v", res[1].Tokens, storiesGreedy)
			}
			if tc.lossless && (!slices.Equal(res[0].Tokens, storiesGreedy) || res[0].Stats.Agreement != 1 || res[0].Stats.KL > 1e-9) {
				t.Errorf("fastgen at T=1: tokens %v agreement %v kl %v", res[0].Tokens, res[0].Stats.Agreement, res[0].Stats.KL)
			}
			if !tc.lossless && res[0].Stats.PrunedRatio <= 0 {
				t.Errorf("fastgen at T=%v pruned nothing", tc.threshold)
			}
			// Attention loss: none when nothing is evicted; some, but less
			// than the pruned share, when heads keep what they attend to.
			if loss := res[0].Stats.AttnLoss; tc.lossless && loss > 1e-6 || !tc.lossless && (loss <= 0 || loss >= res[0].Stats.PrunedRatio) {
				t.Errorf("attention loss %v at pruned ratio %v", loss, res[0].Stats.PrunedRatio)
			}
			t.Logf("pruned %.3f, attention loss %.4f, agreement %.2f, KL %.4f", res[0].Stats.PrunedRatio, res[0].Stats.AttnLoss, res[0].Stats.Agreement, res[0].Stats.KL)
			if res[1].Stats.PrunedRatio != 0 || res[1].Stats.KVBytes != res[1].Stats.KVBytesFull {
				t.Errorf("full stream pruned: %+v", res[1].Stats)
			}
			if sink.compared != 2*len(storiesGreedy) {
				t.Errorf("%d token events carried a per-step comparison, want every one of %d", sink.compared, 2*len(storiesGreedy))
			}
			if sink.profiles != 1 || sink.done["fastgen"] != FinishLength || sink.done["full"] != FinishLength {
				t.Errorf("profiles %d done %v", sink.profiles, sink.done)
			}
		})
	}
	if b := e.KVPool.InUseBytes(); b != 0 {
		t.Errorf("cache blocks still in use after the generations ended: %d bytes", b)
	}
}

// cancelAfter cancels the generation after n tokens.
type cancelAfter struct {
	NopSink
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Token(string, Token) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
}

func TestCancelStopsWithinAStep(t *testing.T) {
	e := stories(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := e.Generate(ctx, Request{Prompt: "Once upon a time", MaxTokens: 200}, &cancelAfter{n: 5, cancel: cancel})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].FinishReason != FinishCancelled || len(res[0].Tokens) > 6 {
		t.Errorf("finish %q after %d tokens, want cancelled within one step of 5", res[0].FinishReason, len(res[0].Tokens))
	}
	if b := e.KVPool.InUseBytes(); b != 0 {
		t.Errorf("cancelled session kept %d bytes of cache", b)
	}
}

func TestChatKeepsTheCacheAcrossTurns(t *testing.T) {
	e := stories(t)
	kv := DefaultKV()
	kv.FastGen.Threshold = 0.9
	chat, err := e.NewChat(kv, "")
	if err != nil {
		t.Fatal(err)
	}
	defer chat.Close()
	req := Request{MaxTokens: 20}
	if _, err := chat.Send(context.Background(), "Tell me a story about a cat.", req, nil); err != nil {
		t.Fatal(err)
	}
	s := chat.Session()
	c := s.Cache()
	len1 := c.Len()
	kept := map[int32]bool{}
	for i := 0; i < c.Kept(0, 0); i++ {
		kept[c.Pos(0, 0, i)] = true
	}
	if _, err := chat.Send(context.Background(), "And then?", req, nil); err != nil {
		t.Fatal(err)
	}
	if chat.Session() != s {
		t.Fatal("the second turn started a new session instead of extending the cache")
	}
	if chat.Profiles != 2 {
		t.Errorf("profiled %d times, want once per turn", chat.Profiles)
	}
	if c.Len() <= len1 {
		t.Errorf("cache length %d after the second turn, was %d", c.Len(), len1)
	}
	for i := 0; i < c.Kept(0, 0); i++ {
		if p := c.Pos(0, 0, i); p < int32(len1) && !kept[p] {
			t.Errorf("position %d, evicted in the first turn, is back", p)
		}
	}
}

func TestSampler(t *testing.T) {
	logits := func() []float32 { return []float32{0.1, 2, 1.5, -1, 1.9, 0} }
	if got := NewSampler(SamplerConfig{}).Sample(logits(), nil); got != 1 {
		t.Errorf("greedy picked %d, want 1", got)
	}
	if got := NewSampler(SamplerConfig{Temperature: 1, TopK: 1, Seed: 3}).Sample(logits(), nil); got != 1 {
		t.Errorf("top-k 1 picked %d, want 1", got)
	}
	if got := NewSampler(SamplerConfig{RepeatPenalty: 10}).Sample(logits(), []int{1}); got != 4 {
		t.Errorf("repetition penalty left %d on top, want 4", got)
	}
	draw := func(seed uint64) []int {
		s := NewSampler(SamplerConfig{Temperature: 1, TopP: 0.9, MinP: 0.05, Seed: seed})
		var out []int
		for i := 0; i < 50; i++ {
			out = append(out, s.Sample(logits(), nil))
		}
		return out
	}
	if a, b := draw(7), draw(7); !slices.Equal(a, b) {
		t.Error("the same seed sampled different tokens")
	}
	for _, tok := range draw(9) {
		if tok == 3 { // p(-1) / p(2) < min_p
			t.Errorf("min_p let token 3 through")
		}
	}
	for _, bad := range []SamplerConfig{{Temperature: -1}, {TopP: 1.5}, {MinP: -0.1}, {TopK: -2}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestKL(t *testing.T) {
	a := []float32{1, 2, 3}
	if kl := KL(a, a); kl != 0 {
		t.Errorf("KL(p‖p) = %v", kl)
	}
	// p = softmax(0, 0) = (.5, .5); q = softmax(0, ln 3) = (.25, .75):
	// KL = .5 ln 2 + .5 ln(2/3).
	want := 0.5*0.6931471805599453 + 0.5*-0.4054651081081644
	if kl := KL([]float32{0, 0}, []float32{0, 1.0986123}); kl < want-1e-6 || kl > want+1e-6 {
		t.Errorf("KL = %v, want %v", kl, want)
	}
}

// cancelInPrefill cancels as soon as the prefill reports progress.
type cancelInPrefill struct {
	NopSink
	cancel context.CancelFunc
	tokens int
}

func (c *cancelInPrefill) Progress(done, total int) {
	if done > 0 && done < total {
		c.cancel()
	}
}
func (c *cancelInPrefill) Token(string, Token) { c.tokens++ }

func TestCancelDuringPrefill(t *testing.T) {
	e := stories(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &cancelInPrefill{cancel: cancel}
	_, err := e.Generate(ctx, Request{Prompt: "Once upon a time there was a big dog who liked to run and play in the sun all day long.", MaxTokens: 50}, sink)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if sink.tokens != 0 {
		t.Errorf("generated %d tokens after a cancel during prefill", sink.tokens)
	}
	if b := e.KVPool.InUseBytes(); b != 0 {
		t.Errorf("cancelled prefill kept %d bytes of cache", b)
	}
}

// TestStopSequence: a stop sequence that spans several tokens ends the
// stream with "stop", and the text ends before it.
func TestStopSequence(t *testing.T) {
	e := stories(t)
	res, err := e.Generate(context.Background(), Request{Prompt: "Once upon a time", MaxTokens: 60,
		Stop: []string{"little girl"}, KV: KVOptions{Mode: kvcache.ModeFull}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.FinishReason != FinishStop || r.Text != ", there was a " {
		t.Errorf("finish %q text %q, want stop before \"little girl\"", r.FinishReason, r.Text)
	}
}

// TestKVOptionsValidate: a mode that does not exist is named as such, not
// asked for a budget; baselines need one; fastgen checks its own options.
func TestKVOptionsValidate(t *testing.T) {
	badT := DefaultKV()
	badT.FastGen.Threshold = 2
	cases := []struct {
		name string
		kv   KVOptions
		want string // "" = valid
	}{
		{"full", KVOptions{Mode: kvcache.ModeFull}, ""},
		{"fastgen", DefaultKV(), ""},
		{"fastgen, bad threshold", badT, "threshold"},
		{"unknown mode", KVOptions{Mode: "bogus"}, `unknown KV cache mode "bogus"`},
		{"unknown mode with a budget", KVOptions{Mode: "bogus", Budget: kvcache.Budget{Tokens: 8}}, "unknown KV cache mode"},
		{"baseline without budget", KVOptions{Mode: kvcache.ModeLocal}, "needs a budget"},
		{"baseline, ratio", KVOptions{Mode: kvcache.ModeH2O, Budget: kvcache.Budget{Ratio: 0.5}}, ""},
		{"baseline, tokens", KVOptions{Mode: kvcache.ModeStreaming, Budget: kvcache.Budget{Tokens: 64}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.kv.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
