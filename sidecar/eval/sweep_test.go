package eval

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/model"
)

// loadStories loads stories260K from $FASTGEN_TEST_MODELS or skips.
func loadStories(t *testing.T) *engine.Engine {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset: set it to the folder holding stories260K.gguf (e.g. /work/shared/models) to run the end-to-end sweep")
	}
	m, err := model.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, engine.Options{Threads: 1})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

var testPrompts = []Prompt{
	{Text: "Once upon a time, there was a little girl named Lily. She loved to play in the park with her red ball."},
	{Text: "Tom and his dog Max went to the big forest. They saw a tall tree and a small bird."},
	{Text: "One day, a happy cat found a shiny box.", Continuation: "She opened the box and saw a little toy mouse. The cat was very happy."},
}

var small struct {
	once sync.Once
	res  *Result
	err  error
}

// runSmall runs the small sweep once for every test that reads it, which
// keeps the end-to-end tests to a couple of seconds.
func runSmall(t *testing.T) *Result {
	t.Helper()
	e := loadStories(t)
	small.once.Do(func() { small.res, small.err = runSweep(e) })
	if small.err != nil {
		t.Fatal(small.err)
	}
	return small.res
}

func runSweep(e *engine.Engine) (*Result, error) {
	return Run(context.Background(), e, testPrompts, Options{
		Thresholds: []float64{0.85, 0.95},
		Baselines:  DefaultBaselines,
		MaxTokens:  64,
		Workers:    2,
	})
}

// TestMatchedBudgets checks the comparison is fair: every baseline's
// realised pruned ratio is within 1 pp of its FastGen point on every prompt.
func TestMatchedBudgets(t *testing.T) {
	res := runSmall(t)
	fg := map[float64]float64{}
	for _, p := range res.Points {
		if p.Method == MethodFastGen {
			fg[p.Threshold] = p.PrunedRatio
		}
	}
	n := 0
	for _, p := range res.Points {
		if p.MatchErr == nil {
			continue
		}
		n++
		if *p.MatchErr > 0.01 {
			t.Errorf("%s at T=%.2f: realised pruned ratio off its FastGen point by %.2f pp on some prompt", p.Method, p.Threshold, 100**p.MatchErr)
		}
		if d := p.PrunedRatio - fg[p.Threshold]; d > 0.01 || d < -0.01 {
			t.Errorf("%s at T=%.2f: mean pruned ratio %.4f vs FastGen %.4f", p.Method, p.Threshold, p.PrunedRatio, fg[p.Threshold])
		}
	}
	if n != len(DefaultBaselines)*2 {
		t.Errorf("%d baseline points, want %d", n, len(DefaultBaselines)*2)
	}
	for _, p := range res.Points {
		t.Logf("%-10s T=%.2f pruned=%.3f avg=%.3f bytes=%.3f dppl=%.2f%% kl=%.4f top1=%.3f div=%.1f em=%.3f rouge=%.3f loss=%.4f p95=%.4f",
			p.Method, p.Threshold, p.PrunedRatio, p.PrunedRatioAvg, p.KVBytesRatio, p.DPPLPct, p.KL, p.Top1, p.FirstDivergence, p.ExactMatch, p.RougeL, p.AttnLoss, p.AttnLossP95)
	}
}

// TestEndToEnd runs 3 prompts at 2 thresholds and checks every output file
// is written and the JSON carries the fixed field names.
func TestEndToEnd(t *testing.T) {
	res := runSmall(t)
	dir := t.TempDir()
	if err := WriteAll(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, f := range Files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Errorf("%s is empty", f)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Points []map[string]any `json:"points"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if want := 2 * (1 + len(DefaultBaselines)); len(got.Points) != want {
		t.Fatalf("%d points, want %d", len(got.Points), want)
	}
	for _, k := range []string{"method", "threshold", "pruned_ratio", "kv_bytes_ratio", "dppl_pct", "kl", "top1",
		"first_divergence", "exact_match", "rouge_l", "attn_loss"} {
		if _, ok := got.Points[0][k]; !ok {
			t.Errorf("JSON point lacks %q", k)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	if !strings.Contains(string(md), "| fastgen | 0.85 |") {
		t.Errorf("table lacks the FastGen row:\n%s", md)
	}
	for _, p := range res.Points {
		if p.Prompts != len(testPrompts) || p.Tokens == 0 {
			t.Errorf("%s T=%.2f: %d prompts, %d tokens", p.Method, p.Threshold, p.Prompts, p.Tokens)
		}
		if p.PrunedRatio <= 0 || p.PrunedRatio >= 1 || p.KL < 0 || p.Top1 < 0 || p.Top1 > 1 {
			t.Errorf("%s T=%.2f: implausible %+v", p.Method, p.Threshold, p)
		}
	}
}
