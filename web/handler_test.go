package web

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/draw"
)

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func builtAssets() fstest.MapFS {
	css, _ := os.ReadFile("static/style.css")
	return fstest.MapFS{
		"style.css":    {Data: css},
		"boot.js":      {Data: []byte("// boot")},
		"wasm_exec.js": {Data: []byte(strings.Repeat("// go wasm runtime\n", 200))},
		"app.wasm":     {Data: append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 4096)...)},
	}
}

// The browser tests find elements by these; renaming one breaks them.
func TestPagesHaveTestIDs(t *testing.T) {
	h := newHandler(builtAssets())
	tests := []struct {
		path, page string
		ids        []string
	}{
		{"/", "chat", []string{"prompt", "send", "stop", "output", "threshold"}},
		{"/compare", "compare", []string{"prompt", "send", "stop", "output-fastgen", "output-full", "threshold"}},
		{"/classroom", "classroom", []string{"prompt", "send", "stop", "policy-grid", "category-mass", "token-strip", "step", "threshold"}},
	}
	for _, tt := range tests {
		t.Run(tt.page, func(t *testing.T) {
			r := get(t, h, tt.path)
			if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
				t.Fatal(r.Status, r.Header)
			}
			s := body(t, r)
			if !strings.Contains(s, `data-page="`+tt.page+`"`) {
				t.Fatal("data-page missing")
			}
			for _, id := range tt.ids {
				if n := strings.Count(s, `data-testid="`+id+`"`); n != 1 {
					t.Errorf("data-testid=%q appears %d times", id, n)
				}
			}
			if !strings.Contains(s, `src="/static/app.wasm"`) && !strings.Contains(s, `/static/boot.js`) {
				t.Error("no client script")
			}
			if strings.Contains(s, "app.wasm not built") {
				t.Error("missing-wasm banner shown although built")
			}
			// Every id referenced by a label exists.
			for _, m := range regexp.MustCompile(`for="([^"]+)"`).FindAllStringSubmatch(s, -1) {
				if !strings.Contains(s, `id="`+m[1]+`"`) {
					t.Errorf("label for missing id %q", m[1])
				}
			}
		})
	}
}

func TestMissingWasm(t *testing.T) {
	assets := builtAssets()
	delete(assets, "app.wasm")
	h := newHandler(assets)
	s := body(t, get(t, h, "/classroom"))
	if !strings.Contains(s, "app.wasm not built: run <code>go tool -modfile=tools/go.mod task wasm</code>") {
		t.Fatal("no build hint")
	}
	if strings.Contains(s, "boot.js") {
		t.Fatal("boot script included without a client to boot")
	}
	// Forms and tables still render server-side.
	for _, want := range []string{`id="policy-table"`, `data-testid="prompt"`} {
		if !strings.Contains(s, want) {
			t.Error("missing", want)
		}
	}
	r := get(t, h, "/static/app.wasm")
	if r.StatusCode != 404 || !strings.Contains(body(t, r), "task wasm") {
		t.Fatal(r.Status)
	}
}

func TestStatic(t *testing.T) {
	h := newHandler(builtAssets())
	tests := []struct {
		path, ctype string
		code        int
	}{
		{"/static/style.css", "text/css; charset=utf-8", 200},
		{"/static/app.wasm", "application/wasm", 200},
		{"/static/wasm_exec.js", "text/javascript; charset=utf-8", 200},
		{"/static/nope.js", "", 404},
		{"/static/.gitignore", "", 404},
		{"/nope", "", 404},
	}
	for _, tt := range tests {
		r := get(t, h, tt.path)
		if r.StatusCode != tt.code {
			t.Errorf("%s: %d", tt.path, r.StatusCode)
			continue
		}
		if tt.ctype != "" && r.Header.Get("Content-Type") != tt.ctype {
			t.Errorf("%s: content type %q", tt.path, r.Header.Get("Content-Type"))
		}
	}

	// gzip when asked, identical bytes after decompression, ETag revalidation.
	plain := get(t, h, "/static/app.wasm")
	raw := body(t, plain)
	gz := get(t, h, "/static/app.wasm", "Accept-Encoding", "br, gzip;q=0.8")
	if gz.Header.Get("Content-Encoding") != "gzip" {
		t.Fatal("not gzipped")
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unz, _ := io.ReadAll(zr)
	if string(unz) != raw {
		t.Fatal("gzip body differs")
	}
	if r := get(t, h, "/static/app.wasm", "Accept-Encoding", "gzip;q=0"); r.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip despite q=0")
	}
	if r := get(t, h, "/static/app.wasm", "If-None-Match", plain.Header.Get("ETag")); r.StatusCode != 304 {
		t.Fatal("no 304", r.StatusCode)
	}
}

// The legend swatches are CSS; the canvases are drawn by wasm/draw. They
// must show the same colour for the same policy.
func TestCSSMatchesPalette(t *testing.T) {
	css, err := os.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i, p := range shared.Policies {
		want["--pol-"+string(rune('0'+i))] = draw.Hex(draw.PolicyColor(p))
	}
	want["--mass-special"] = draw.Hex(draw.MassSpecial)
	want["--mass-punct"] = draw.Hex(draw.MassPunct)
	want["--mass-local"] = draw.Hex(draw.MassLocal)
	want["--mass-other"] = draw.Hex(draw.MassOther)
	want["--cell-special"] = draw.Hex(draw.CellSpecial)
	want["--cell-punct"] = draw.Hex(draw.CellPunct)
	want["--cell-window"] = draw.Hex(draw.CellWindow)
	want["--cell-kept"] = draw.Hex(draw.CellKept)
	want["--cell-evicted"] = draw.Hex(draw.CellEvicted)
	for v, hex := range want {
		if !strings.Contains(string(css), v+": "+hex+";") {
			t.Errorf("style.css: %s should be %s", v, hex)
		}
	}
}

func TestEmbeddedHandler(t *testing.T) {
	r := get(t, Handler(), "/static/style.css")
	if r.StatusCode != 200 {
		t.Fatal(r.Status)
	}
}
