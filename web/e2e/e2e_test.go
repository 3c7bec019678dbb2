// Package e2e drives the three browser pages in headless Chromium against a
// real fastgen server on stories260K: it types prompts, watches tokens
// stream, reads canvas pixels, presses stop and steps through the token
// strip, and saves a screenshot of every page.
//
// The tests skip with a message when the model (FASTGEN_TEST_MODELS), a
// Chromium binary or the built client (web/static/app.wasm, `task wasm`) is
// missing. Screenshots go to $FASTGEN_E2E_ARTIFACTS, default
// $TMPDIR/fastgen-e2e.
package e2e

import (
	"context"
	"fmt"
	"image/color"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/sidecar/engine"
	"github.com/fastgen/fastgen/sidecar/model"
	"github.com/fastgen/fastgen/sidecar/server"
	"github.com/fastgen/fastgen/wasm/draw"
)

const prompt = "Once upon a time"

// wait bounds every single wait on the page, so a broken page fails fast.
const wait = 15 * time.Second

// browserPath finds a Chromium-family browser.
func browserPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// env is one server and one browser, shared by the page tests.
type env struct {
	url     string
	browser context.Context
	art     string
}

func setup(t *testing.T) *env {
	t.Helper()
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is not set: set it to the folder holding stories260K.gguf (e.g. /work/shared/models) to run the browser end-to-end tests")
	}
	chrome := browserPath()
	if chrome == "" {
		t.Skip("no Chromium found on PATH (chromium, chromium-browser, google-chrome): install Debian's chromium to run the browser end-to-end tests")
	}
	for _, f := range []string{"app.wasm", "wasm_exec.js"} {
		if _, err := os.Stat(filepath.Join("..", "static", f)); err != nil {
			t.Skipf("web/static/%s is missing: build the client first with `go tool -modfile=tools/go.mod task wasm` (task e2e and task test do)", f)
		}
	}
	if st, err := os.Stat(filepath.Join("..", "static", "app.wasm")); err == nil {
		t.Logf("app.wasm: %d bytes (%.2f MiB)", st.Size(), float64(st.Size())/(1<<20))
	}

	eng, err := engine.Load(filepath.Join(dir, "stories260K.gguf"), model.LoadOptions{Ctx: 512}, engine.Options{})
	if err != nil {
		t.Fatalf("load stories260K: %v", err)
	}
	s := server.New(server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetEngine(eng, "stories260K")
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	art := os.Getenv("FASTGEN_E2E_ARTIFACTS")
	if art == "" {
		art = filepath.Join(os.TempDir(), "fastgen-e2e")
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	// The whole browser lives at most this long: a hung page cannot hang
	// the test binary.
	root, cancelRoot := context.WithTimeout(context.Background(), 3*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelRoot() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chrome, err)
	}
	return &env{url: ts.URL, browser: bctx, art: art}
}

// tab is one page in its own browser tab, with the WebSocket frames the
// page received, decoded.
type tab struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	raw [][]byte
	// sentAt and recvAt are the browser's timestamps (seconds) of the last
	// generate frame sent and of the first token frame received after it.
	sentAt, recvAt float64
}

func (e *env) open(t *testing.T, path string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // open the tab without a timeout
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch f := ev.(type) {
		case *network.EventWebSocketFrameReceived:
			if f.Response == nil || f.Response.Opcode != 2 {
				return
			}
			tb.mu.Lock()
			tb.raw = append(tb.raw, f.Response.PayloadData)
			if tb.recvAt == 0 && tb.sentAt > 0 && len(f.Response.PayloadData) > 0 {
				if fr, err := shared.Decode(f.Response.PayloadData); err == nil && fr.FrameType() == shared.TypeToken {
					tb.recvAt = f.Timestamp.Float64()
				}
			}
			tb.mu.Unlock()
		case *network.EventWebSocketFrameSent:
			if f.Response == nil || f.Response.Opcode != 2 {
				return
			}
			if fr, err := shared.DecodeClient(f.Response.PayloadData); err == nil && fr.FrameType() == shared.TypeGenerate {
				tb.mu.Lock()
				tb.sentAt, tb.recvAt = f.Timestamp.Float64(), 0
				tb.mu.Unlock()
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	tb.do("navigate "+path, chromedp.Navigate(e.url+path))
	// Connected, and the hello frame has named the model.
	tb.poll("connected", `document.querySelector('#conn.ok') && document.getElementById('model').textContent.length > 0`)
	return tb
}

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](tb *tab, what string, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	return run(tb, "evaluate "+js, chromedp.Evaluate[T](js))
}

// poll waits until the JavaScript expression is truthy and returns it.
func (tb *tab) poll(what, js string) {
	tb.t.Helper()
	run(tb, "wait for "+what, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(wait)))
}

func pollValue[T any](tb *tab, what, js string) T {
	tb.t.Helper()
	return run(tb, "wait for "+what, chromedp.Poll[T](js, chromedp.WithPollingTimeout(wait)))
}

// frames decodes the server frames received so far.
func (tb *tab) frames() []shared.Frame {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []shared.Frame
	for _, b := range tb.raw {
		if f, err := shared.Decode(b); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// stopOnStart arms the page to press stop as soon as the next run enables
// it, and to set window.__stopped when it has.
func (tb *tab) stopOnStart() {
	tb.t.Helper()
	eval[chromedp.Void](tb, `(() => {
		const stop = document.querySelector('[data-testid=stop]');
		window.__stopped = false;
		new MutationObserver((_, o) => { if (!stop.disabled) { o.disconnect(); stop.click(); window.__stopped = true } }).observe(stop, {attributes: true});
	})()`)
}

// lastFrames describes the last n frames received (types and, for done
// and error frames, what they say): what a failed wait saw last.
func (tb *tab) lastFrames(n int) string {
	fs := tb.frames()
	fs = fs[max(0, len(fs)-n):]
	var b strings.Builder
	for _, f := range fs {
		switch f := f.(type) {
		case *shared.Done:
			fmt.Fprintf(&b, "done(%s %s) ", f.Stream, f.FinishReason)
		case *shared.Error:
			fmt.Fprintf(&b, "error(%s: %s) ", f.Code, f.Message)
		default:
			fmt.Fprintf(&b, "%T ", f)
		}
	}
	return b.String()
}

// done returns the Done frames received, by stream.
func (tb *tab) done() map[string]string {
	m := map[string]string{}
	for _, f := range tb.frames() {
		if d, ok := f.(*shared.Done); ok {
			m[d.Stream] = d.FinishReason
		}
	}
	return m
}

func (e *env) screenshot(tb *tab, name string) {
	tb.t.Helper()
	png := run(tb, "screenshot", chromedp.FullScreenshot(100))
	p := filepath.Join(e.art, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s", p)
}

// send types the prompt, presses send and returns the milliseconds until
// the first token shows in the element that firstText selects.
func (tb *tab) send(text, tokenJS string) float64 {
	tb.t.Helper()
	tb.do("type prompt", chromedp.SetValue(chromedp.CSS(`[data-testid=prompt]`), text))
	eval[chromedp.Void](tb, `window.__sent = performance.now(); document.querySelector('[data-testid=send]').click()`)
	ms := pollValue[float64](tb, "first token", `(`+tokenJS+`) ? Math.max(performance.now() - window.__sent, 0.001) : 0`)
	tb.mu.Lock()
	if tb.recvAt > tb.sentAt && tb.sentAt > 0 {
		tb.t.Logf("on the socket: generate frame sent → first token frame received %.1f ms", (tb.recvAt-tb.sentAt)*1000)
	}
	tb.mu.Unlock()
	return ms
}

func (tb *tab) setValue(id, v string) {
	tb.t.Helper()
	eval[chromedp.Void](tb, fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event('change')) })()`, id, v))
}

func firstPaint(tb *tab) float64 {
	tb.t.Helper()
	return pollValue[float64](tb, "first paint", `(() => { const e = performance.getEntriesByName('first-contentful-paint')[0] || performance.getEntriesByName('first-paint')[0]; return e ? e.startTime : 0 })()`)
}

// chatAnswer is the text of the newest assistant answer.
const chatAnswer = `(document.querySelector('[data-testid=output] li.assistant:last-child .content') || {textContent: ''}).textContent.trim()`

func TestBrowser(t *testing.T) {
	e := setup(t)
	start := time.Now()
	t.Run("chat", func(t *testing.T) { testChat(t, e) })
	t.Run("compare", func(t *testing.T) { testCompare(t, e) })
	t.Run("classroom", func(t *testing.T) { testClassroom(t, e) })
	t.Logf("browser tests took %s; screenshots in %s", time.Since(start).Round(time.Millisecond), e.art)
}

func testChat(t *testing.T, e *env) {
	tb := e.open(t, "/")
	t.Logf("chat: first contentful paint %.0f ms", firstPaint(tb))
	tb.setValue("max-tokens", "64")
	ttft := tb.send(prompt, chatAnswer+`.length > 0`)
	t.Logf("chat: first token %.0f ms after send", ttft)
	tb.poll("answer to finish", `!document.querySelector('[data-testid=output] li.streaming') && document.querySelector('[data-testid=send]').disabled === false`)
	if got := eval[string](tb, chatAnswer); len(got) < 10 {
		t.Errorf("answer too short: %q", got)
	}
	if d := tb.done(); d[shared.ModeFastGen] == "" && len(d) == 0 {
		t.Errorf("no done frame received")
	}
	e.screenshot(tb, "chat")

	// Stop: a long answer, stopped as soon as the stop button is enabled.
	tb.setValue("max-tokens", "400")
	tb.stopOnStart()
	tb.send("Tell me a long story about a cat", `window.__stopped`)
	tb.poll("stopped answer", `!document.querySelector('[data-testid=output] li.streaming')`)
	if got := eval[string](tb, `document.querySelector('[data-testid=output] li.assistant:last-child .meta').textContent`); !strings.Contains(got, shared.FinishCancelled) {
		t.Errorf("stopped answer's meta = %q, want %q in it", got, shared.FinishCancelled)
	}
	var last *shared.Done
	for _, f := range tb.frames() {
		if d, ok := f.(*shared.Done); ok {
			last = d
		}
	}
	if last == nil || last.FinishReason != shared.FinishCancelled {
		t.Errorf("last done frame = %+v, want finish_reason %q", last, shared.FinishCancelled)
	}
}

func testCompare(t *testing.T, e *env) {
	tb := e.open(t, "/compare")
	t.Logf("compare: first contentful paint %.0f ms", firstPaint(tb))
	tb.setValue("max-tokens", "48")
	ttft := tb.send(prompt, `document.querySelector('[data-testid=output-fastgen]').textContent.trim().length > 0`)
	t.Logf("compare: first token %.0f ms after send", ttft)
	tb.poll("both columns to finish", `document.querySelector('[data-testid=send]').disabled === false && document.querySelector('[data-testid=output-full]').textContent.trim().length > 0`)
	a := eval[string](tb, `document.querySelector('[data-testid=output-fastgen]').textContent.trim()`)
	b := eval[string](tb, `document.querySelector('[data-testid=output-full]').textContent.trim()`)
	if len(a) < 10 || len(b) < 10 {
		t.Errorf("columns too short: fastgen %q, full %q", a, b)
	}
	d := tb.done()
	if d[shared.ModeFastGen] == "" || d[shared.ModeFull] == "" {
		t.Errorf("done frames by stream = %v, want both fastgen and full", d)
	}
	e.screenshot(tb, "compare")
}

func testClassroom(t *testing.T, e *env) {
	tb := e.open(t, "/classroom")
	t.Logf("classroom: first contentful paint %.0f ms", firstPaint(tb))
	tb.setValue("max-tokens", "400")
	// Count animation frames, and the longest gap between two, while the
	// answer streams.
	eval[chromedp.Void](tb, `window.__raf = 0; window.__gap = 0; window.__last = 0; (function f(ts) {
		if (window.__last) window.__gap = Math.max(window.__gap, ts - window.__last);
		window.__last = ts; window.__raf++; requestAnimationFrame(f) })(0)`)
	ttft := tb.send(prompt, `document.getElementById('scrub-value').textContent.match(/step [1-9]/)`)
	eval[chromedp.Void](tb, `window.__t0 = performance.now(); window.__n0 = window.__raf; window.__gap = 0`)
	tb.poll("run to finish", `document.querySelector('[data-testid=stop]').disabled && /\((stop|length)\)/.test(document.getElementById('run-status').textContent)`)
	fps := eval[[]float64](tb, `[window.__raf - window.__n0, performance.now() - window.__t0, window.__gap]`)
	steps := eval[string](tb, `document.getElementById('scrub-value').textContent`)
	t.Logf("classroom: first step %.0f ms after send; streaming %s: %.0f frames in %.0f ms = %.0f frames/s, longest frame %.0f ms", ttft, steps, fps[0], fps[1], fps[0]*1000/max(fps[1], 1), fps[2])

	// The policy grid shows the colours of the policies the profile frame announced.
	var prof *shared.Profile
	for _, f := range tb.frames() {
		if p, ok := f.(*shared.Profile); ok {
			prof = p
		}
	}
	if prof == nil || len(prof.Heads) == 0 {
		t.Fatal("no profile frame with heads received")
	}
	want := map[string]bool{}
	for _, h := range prof.Heads {
		want[h.Policy] = true
	}
	px := eval[map[string]int](tb, `(() => {
		const c = document.querySelector('[data-testid=policy-grid]');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		const m = {};
		for (let i = 0; i < d.length; i += 4) { const k = d[i] + ',' + d[i+1] + ',' + d[i+2] + ',' + d[i+3]; m[k] = (m[k] || 0) + 1 }
		return m;
	})()`)
	key := func(c color.RGBA) string { return fmt.Sprintf("%d,%d,%d,%d", c.R, c.G, c.B, c.A) }
	for pol := range want {
		if n := px[key(draw.PolicyColor(pol))]; n < 20 {
			t.Errorf("policy %q announced by the profile frame: %d pixels of its colour %s on the grid", pol, n, draw.Hex(draw.PolicyColor(pol)))
		}
	}
	for pol, c := range draw.PolicyColors {
		if !want[pol] && px[key(c)] > 0 {
			t.Logf("note: policy %q not in the profile but %d pixels of %s on the grid", pol, px[key(c)], draw.Hex(c))
		}
	}
	t.Logf("classroom: profile policies %v", keys(want))

	// Step through the strip: back twice, then step once.
	strip := func() string { return eval[string](tb, `document.getElementById('scrub-value').textContent`) }
	end := strip()
	// element.click(): mouse clicks at coordinates can miss while the
	// tables below re-lay out the page.
	eval[chromedp.Void](tb, `document.getElementById('back').click(); document.getElementById('back').click()`)
	tb.poll("two steps back", `/paused/.test(document.getElementById('scrub-value').textContent)`)
	back := strip()
	eval[chromedp.Void](tb, `document.querySelector('[data-testid=step]').click()`)
	tb.poll("one step on", fmt.Sprintf(`document.getElementById('scrub-value').textContent !== %q`, back))
	stepped := strip()
	var nEnd, nBack, nStep, rec int
	fmt.Sscanf(end, "step %d / %d", &nEnd, &rec)
	fmt.Sscanf(back, "step %d", &nBack)
	fmt.Sscanf(stepped, "step %d", &nStep)
	if nEnd < 3 || nBack != nEnd-2 || nStep != nEnd-1 {
		t.Errorf("strip: end %q, back twice %q, step %q", end, back, stepped)
	}
	e.screenshot(tb, "classroom")

	// Stop on the classroom page too. The tiny model can finish a run
	// before the cancel that follows its request reaches the server (the
	// page then shows how it ended), so a few runs are tried: one of them
	// must end cancelled.
	tb.setValue("max-tokens", "400")
	var ends []string
	for try := 0; try < 5; try++ {
		tb.stopOnStart()
		tb.send("The little dog", `window.__stopped`)
		ctx, cancel := context.WithTimeout(tb.ctx, wait)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=stop]').disabled && /\((cancelled|stop|length)\)/.test(document.getElementById('run-status').textContent)`, chromedp.WithPollingTimeout(wait)))
		cancel()
		end := eval[string](tb, `document.getElementById('run-status').textContent`)
		if err != nil {
			t.Fatalf("stop on the classroom page: the run did not end (%v): status %q, stop button disabled: %v, frames since: %s", err, end,
				eval[bool](tb, `document.querySelector('[data-testid=stop]').disabled`), tb.lastFrames(6))
		}
		ends = append(ends, end)
		if strings.Contains(end, "(cancelled)") {
			break
		}
	}
	if last := ends[len(ends)-1]; !strings.Contains(last, "(cancelled)") {
		t.Errorf("stop on the classroom page: no run ended cancelled in %d tries: %q", len(ends), ends)
	} else if len(ends) > 1 {
		t.Logf("classroom stop: %d runs ended before their cancel arrived: %q", len(ends)-1, ends[:len(ends)-1])
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for _, p := range shared.Policies {
		if m[p] {
			out = append(out, p)
		}
	}
	return out
}
