package app

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/draw"
)

var model = shared.ModelInfo{Name: "tiny", NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 8, NCtx: 64, VocabSize: 32}

func tok(stream string, i, id int, text string) *shared.Token {
	return &shared.Token{ID: "r1", Stream: stream, Index: i, Token: id, Text: text, Class: shared.ClassNormal}
}

// script is a plausible compare-mode exchange: a 4-token prompt, two decode
// steps per stream, evictions on head 3.
func script() []shared.Frame {
	return []shared.Frame{
		&shared.Progress{ID: "r1", Processed: 2, Total: 4},
		&shared.Progress{ID: "r1", Processed: 4, Total: 4},
		&shared.Profile{ID: "r1", Stream: "fastgen", Threshold: 0.98, LocalWindow: 2,
			Heads: []shared.HeadProfile{
				{Layer: 0, KVHead: 0, Policy: shared.PolicyFull},
				{Layer: 0, KVHead: 1, Policy: shared.PolicySpecial},
				{Layer: 1, KVHead: 0, Policy: shared.PolicySpecialPunctFrequentLocal},
				{Layer: 1, KVHead: 1, Policy: shared.PolicySpecialPunct, Mass: shared.Mass{Special: 0.7, Punct: 0.2, Other: 0.1}},
			},
			PromptTokens: []shared.PromptToken{{ID: 1, Text: "<s>", Class: "special"}, {ID: 5, Text: "Hi", Class: "normal"}, {ID: 6, Text: ",", Class: "punct"}, {ID: 7, Text: " you", Class: "normal"}},
		},
		tok("fastgen", 0, 10, " there"),
		&shared.Occupancy{ID: "r1", Stream: "fastgen", Index: 0, Kept: []uint32{4, 1, 3, 2},
			Evicted: []shared.Eviction{{Head: 1, Positions: []uint32{1, 2, 3}}, {Head: 3, Positions: []uint32{1, 3}}},
			KVBytes: 500, KVBytesFull: 1000},
		tok("full", 0, 10, " there"),
		&shared.Occupancy{ID: "r1", Stream: "full", Index: 0, Kept: []uint32{4, 4, 4, 4}, KVBytes: 1000, KVBytesFull: 1000},
		tok("fastgen", 1, 11, "!"),
		&shared.Occupancy{ID: "r1", Stream: "fastgen", Index: 1, Kept: []uint32{5, 1, 4, 2},
			Evicted: []shared.Eviction{{Head: 1, Positions: []uint32{4}}, {Head: 3, Positions: []uint32{4}}},
			KVBytes: 600, KVBytesFull: 1250},
		tok("full", 1, 12, "."),
		&shared.Occupancy{ID: "r1", Stream: "full", Index: 1, Kept: []uint32{5, 5, 5, 5}, KVBytes: 1250, KVBytesFull: 1250},
		&shared.Stats{ID: "r1", Stream: "fastgen", TTFTMS: 12, DecodeTokS: 40, PromptTokens: 4, GeneratedTokens: 2, KVBytes: 600, KVBytesFull: 1250},
		&shared.Done{ID: "r1", Stream: "fastgen", FinishReason: "length"},
		&shared.Stats{ID: "r1", Stream: "full", PromptTokens: 4, GeneratedTokens: 2, KVBytes: 1250, KVBytesFull: 1250},
		&shared.Done{ID: "r1", Stream: "full", FinishReason: "length"},
	}
}

func playScript(t *testing.T) *Run {
	t.Helper()
	r := NewRun(shared.Generate{ID: "r1", Prompt: "Hi, you", Compare: true}, model)
	for i, f := range script() {
		// Frames travel encoded, as they would on the socket.
		b, err := shared.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := shared.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.Finished() {
			t.Fatalf("finished before frame %d", i)
		}
		if !r.Apply(g) {
			t.Fatalf("frame %d (%T) changed nothing", i, g)
		}
	}
	return r
}

func TestRunApply(t *testing.T) {
	r := playScript(t)
	if !r.Finished() {
		t.Fatal("not finished")
	}
	if r.Processed != 4 || r.PromptLen() != 4 {
		t.Fatal("progress")
	}
	fg, full := r.Primary(), r.Baseline()
	if fg.Name != "fastgen" || full.Name != "full" {
		t.Fatal(fg.Name, full.Name)
	}
	if fg.Text() != " there!" || full.Text() != " there." {
		t.Fatalf("%q %q", fg.Text(), full.Text())
	}
	saved, ratio, ok := fg.KVSaved()
	if !ok || saved != 650 || math.Abs(ratio-0.52) > 1e-9 {
		t.Fatal(saved, ratio)
	}
	if got := TurnStatsString(fg); !strings.Contains(got, "TTFT 12 ms") || !strings.Contains(got, "KV saved 650 B (52.0%)") {
		t.Fatal(got)
	}
	if r.Apply(&shared.Pong{}) {
		t.Fatal("pong changed a run")
	}
}

func TurnStatsString(s *Stream) string { return Measure(s).String() }

func TestHistory(t *testing.T) {
	r := playScript(t)
	h := r.Primary().History
	if h.Steps() != 2 || h.Length(0) != 4 || h.Length(1) != 5 {
		t.Fatalf("steps %d lengths %v", h.Steps(), h.lengths)
	}
	// Kept counts replayed from deltas match what the server reported.
	for step, want := range [][]int{{4, 1, 4, 2}, {5, 1, 5, 2}} {
		for head, w := range want {
			if got := h.KeptAt(head, step); got != w {
				t.Errorf("step %d head %d kept %d, want %d", step, head, got, w)
			}
		}
	}
	row := func(head, step int) []draw.Cell {
		dst := make([]draw.Cell, 6)
		HeadStrip{h, head}.Row(step, dst)
		return dst
	}
	S, P, K, E, W, F := draw.Special, draw.Punct, draw.Kept, draw.Evicted, draw.InWindow, draw.Future
	tests := []struct {
		head, step int
		want       []draw.Cell
	}{
		{3, 0, []draw.Cell{S, E, P, E, F, F}},
		{3, 1, []draw.Cell{S, E, P, E, E, F}},
		{0, 1, []draw.Cell{S, K, P, K, K, F}}, // full: no window colouring
		{2, 1, []draw.Cell{S, K, P, W, W, F}}, // local policy, window 2
		{9, 1, []draw.Cell{F, F, F, F, F, F}}, // out of range
	}
	for _, tt := range tests {
		if got := row(tt.head, tt.step); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("head %d step %d: %v, want %v", tt.head, tt.step, got, tt.want)
		}
	}
	// Hostile positions neither panic nor allocate.
	h.Apply(&shared.Occupancy{Index: 2, Evicted: []shared.Eviction{{Head: -1}, {Head: 0, Positions: []uint32{math.MaxUint32}}}})
}

func TestCompareViews(t *testing.T) {
	r := playScript(t)
	a, b := r.Primary().Tokens, r.Baseline().Tokens
	if d := Divergence(a, b); d != 1 {
		t.Fatal(d)
	}
	if d := Divergence(a[:1], b); d != -1 {
		t.Fatal(d)
	}
	if got := Agreement(a, b); !reflect.DeepEqual(got, []float64{1, 0.5}) {
		t.Fatal(got)
	}
	kv, full := MemSeries(r.Primary())
	if !reflect.DeepEqual(kv, []float64{500, 600}) || !reflect.DeepEqual(full, []float64{1000, 1250}) {
		t.Fatal(kv, full)
	}
}

func toks(ids ...int) []shared.Token {
	out := make([]shared.Token, len(ids))
	for i, id := range ids {
		out[i] = shared.Token{Index: i, Token: id}
	}
	return out
}

func TestTokenDiff(t *testing.T) {
	S, C := Same, Changed
	tests := []struct {
		name   string
		a, b   []shared.Token
		da, db []DiffOp
	}{
		{"equal", toks(1, 2, 3), toks(1, 2, 3), []DiffOp{S, S, S}, []DiffOp{S, S, S}},
		{"rejoin", toks(1, 2, 3, 4), toks(1, 9, 3, 4), []DiffOp{S, C, S, S}, []DiffOp{S, C, S, S}},
		{"insert", toks(1, 3), toks(1, 2, 3), []DiffOp{S, S}, []DiffOp{S, C, S}},
		{"empty", nil, toks(1), []DiffOp{}, []DiffOp{C}},
	}
	for _, tt := range tests {
		da, db := TokenDiff(tt.a, tt.b)
		if !reflect.DeepEqual(da, tt.da) || !reflect.DeepEqual(db, tt.db) {
			t.Errorf("%s: %v %v", tt.name, da, db)
		}
	}
	// Too large for the LCS table: positional fallback.
	long := make([]int, 3000)
	a, b := toks(long...), toks(long...)
	b[5].Token = 1
	da, db := TokenDiff(a, b)
	if da[5] != C || db[5] != C || da[6] != S {
		t.Fatal("positional fallback")
	}
}

func TestKLSeries(t *testing.T) {
	lp := math.Log
	p := []shared.Token{
		{Top: []shared.Alternative{{Token: 1, Logprob: lp(0.5)}, {Token: 2, Logprob: lp(0.5)}}},
		{KL: shared.Ptr(0.25)},
		{},
	}
	b := []shared.Token{
		{Top: []shared.Alternative{{Token: 1, Logprob: lp(0.5)}, {Token: 2, Logprob: lp(0.5)}}},
		{},
		{Top: []shared.Alternative{{Token: 1, Logprob: 0}}},
	}
	kl, exact := KLSeries(p, b, 32)
	if exact || math.Abs(kl[0]) > 1e-12 || kl[1] != 0.25 || !math.IsNaN(kl[2]) {
		t.Fatal(kl, exact)
	}
	// Disjoint tops: large but finite.
	got := estimateKL([]shared.Alternative{{Token: 1, Logprob: 0}}, []shared.Alternative{{Token: 2, Logprob: lp(0.9)}}, 11)
	if !(got > 4 && !math.IsInf(got, 0)) {
		t.Fatal(got)
	}
}

func TestMarkdown(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "<p>hello</p>"},
		{"a\nb\n\nc", "<p>a<br>b</p><p>c</p>"},
		{"**bold** and *it*", "<p><strong>bold</strong> and <em>it</em></p>"},
		{"<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
		{"use `a<b` here", "<p>use <code>a&lt;b</code> here</p>"},
		{"`**not bold**`", "<p><code>**not bold**</code></p>"},
		{"2 * 3 * 4", "<p>2 * 3 * 4</p>"},
		{"snake_case_name", "<p>snake_case_name</p>"},
		{"**unclosed", "<p>**unclosed</p>"},
		{"```\nx < y\n```\nafter", "<pre><code>x &lt; y</code></pre><p>after</p>"},
		{"```go\nstreaming", "<pre><code>streaming</code></pre>"},
		{"\"q\" & 'a'", "<p>&#34;q&#34; &amp; &#39;a&#39;</p>"},
	}
	for _, tt := range tests {
		if got := Markdown(tt.in); got != tt.want {
			t.Errorf("Markdown(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	s := Settings{Prompt: "Tell me a story & more?", Seed: -7, Mode: "h2o", Threshold: 0.95, Temperature: 0.7, TopP: 0.9, MaxTokens: 77, Baseline: "streaming", TopK: 3}
	if got := ParseSettings(s.Query()); got != s {
		t.Fatalf("%+v", got)
	}
	bad := ParseSettings("mode=lru&t=7&max=-1&k=99&top_p=0&seed=x&%zz")
	if bad != DefaultSettings() {
		t.Fatalf("bad values not defaulted: %+v", bad)
	}
	g := s.Request("x", true)
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if g.Baseline() != "streaming" || g.Threshold() != 0.95 || *g.Seed != -7 {
		t.Fatal(g)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 250 * time.Millisecond, Max: 2 * time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{250, 500, 1000, 2000, 2000, 2000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatal(got)
		}
	}
	b.Reset()
	b.Rand = func() float64 { return 0.999 }
	if d := b.Next(); d <= 187*time.Millisecond || d > 250*time.Millisecond {
		t.Fatal(d)
	}
}

func TestClassroomViews(t *testing.T) {
	r := playScript(t)
	layers, kv := r.Shape()
	pol := PolicyIndexes(r.Profile, layers, kv)
	if !reflect.DeepEqual(pol, []int{4, 0, 3, 1}) {
		t.Fatal(pol)
	}
	if c := PolicyCounts(pol); !reflect.DeepEqual(c, []int{1, 1, 0, 1, 1}) {
		t.Fatal(c)
	}
	if ch := ChangedHeads([]int{4, 0, -1, 1}, []int{4, 1, 2, 1}); !reflect.DeepEqual(ch, []bool{false, true, false, false}) {
		t.Fatal(ch)
	}
	m := Masses(r.Profile, layers, kv)
	lm := LayerMass(m, kv)
	if len(lm) != 2 || math.Abs(lm[1].Special-0.35) > 1e-12 {
		t.Fatal(lm)
	}
	// A profile alone (no hello) still gives the grid its shape.
	r2 := NewRun(shared.Generate{ID: "r1", Prompt: "x"}, shared.ModelInfo{})
	r2.Apply(script()[2])
	if l, k := r2.Shape(); l != 2 || k != 2 {
		t.Fatal(l, k)
	}
}

func TestPlayer(t *testing.T) {
	p := NewPlayer()
	p.Record(3)
	if p.Shown() != 3 || !p.Live() {
		t.Fatal("live follows")
	}
	p.Back()
	p.Record(5)
	if p.Shown() != 2 || p.Live() {
		t.Fatal("paused holds")
	}
	p.Step()
	p.Step()
	p.Step()
	p.Step()
	if p.Shown() != 5 {
		t.Fatal("step clamps", p.Shown())
	}
	p.Seek(1)
	if p.Shown() != 1 || p.Live() {
		t.Fatal("seek")
	}
	p.Seek(99)
	if p.Shown() != 5 || !p.Live() {
		t.Fatal("seek to end resumes live")
	}
	p.Pause()
	p.Play()
	if !p.Live() {
		t.Fatal("play")
	}
}

func TestChat(t *testing.T) {
	var c Chat
	c.System = "sys"
	r1 := playScript(t)
	c.Ask("hi", r1)
	r2 := NewRun(shared.Generate{ID: "r2", Prompt: "x"}, model)
	c.Ask("more", r2)
	got := c.History()
	want := []shared.Message{{Role: "system", Content: "sys"}, {Role: "user", Content: "hi"}, {Role: "assistant", Content: " there!"}, {Role: "user", Content: "more"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatal(got)
	}
	if c.Current() != r2 || !c.DropLastAnswer() || c.DropLastAnswer() {
		t.Fatal("drop")
	}
	var ids IDs
	ids.Prefix = "t-"
	if ids.Next() != "t-1" || ids.Next() != "t-2" {
		t.Fatal("ids")
	}
	if Bytes(1536) != "1.5 KiB" || Pct(math.NaN()) != "–" || Num(1.25, 1) != "1.2" {
		t.Fatal(Bytes(1536), Num(1.25, 1))
	}
}

func TestHTML(t *testing.T) {
	toks := []shared.Token{{Text: "<b>"}, {Text: " x", Index: 1, Logprob: math.Log(0.5), Top: []shared.Alternative{{Text: "\n", Logprob: math.Log(0.25)}}}}
	got := TokenHTML(toks, 0, []DiffOp{Same, Changed}, 1, "a")
	want := `<span class="tok" tabindex="0" data-col="a" data-i="0">&lt;b&gt;</span><span class="tok diff first-div" tabindex="0" data-col="a" data-i="1"> x</span>`
	if got != want {
		t.Fatal(got)
	}
	// Appending from step 7: indexes continue, first-div is a step number.
	got = TokenHTML(toks[1:], 7, nil, 7, "b")
	if got != `<span class="tok first-div" tabindex="0" data-col="b" data-i="7"> x</span>` {
		t.Fatal(got)
	}
	alt := AlternativesHTML(toks[1])
	if !strings.Contains(alt, "p = 0.500") || !strings.Contains(alt, `&#34;\n&#34;`) || !strings.Contains(alt, "width:20px") {
		t.Fatal(alt)
	}
	if TR("a<", "b") != "<tr><td>a&lt;</td><td>b</td></tr>" {
		t.Fatal(TR("a<", "b"))
	}
	if FrameID(&shared.Token{ID: "z"}) != "z" || FrameID(&shared.Pong{}) != "" {
		t.Fatal("FrameID")
	}
	if PolicyShort(4) != "Full" || PolicyShort(-1) != "?" {
		t.Fatal("PolicyShort")
	}
}
