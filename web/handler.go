// Package web serves the browser UI: three templ pages (chat, compare,
// classroom) and the static assets, including the wasm client, embedded so
// that `fastgen serve` is a single binary.
package web

//go:generate go tool templ generate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/a-h/templ"
)

// static holds style.css and boot.js from git, plus wasm_exec.js and
// app.wasm copied in by `task wasm` (both gitignored).
//
//go:embed static
var static embed.FS

// Handler serves /, /compare, /classroom and /static/…. The server mounts
// it beside /v1/ws.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return newHandler(sub)
}

func newHandler(assets fs.FS) http.Handler {
	ready := exists(assets, "app.wasm") && exists(assets, "wasm_exec.js")
	mux := http.NewServeMux()
	pages := []struct {
		pattern string
		page    Page
		render  func(Page) templ.Component
	}{
		{"GET /{$}", Page{Name: "chat", Title: "Chat"}, ChatPage},
		{"GET /compare", Page{Name: "compare", Title: "Compare"}, ComparePage},
		{"GET /classroom", Page{Name: "classroom", Title: "Classroom"}, ClassroomPage},
	}
	for _, p := range pages {
		p.page.WasmReady = ready
		body := render(p.render(p.page))
		mux.HandleFunc(p.pattern, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Content-Type-Options", "nosniff")
			if r.Method != http.MethodHead {
				w.Write(body)
			}
		})
	}
	mux.Handle("GET /static/", http.StripPrefix("/static/", &assetServer{fsys: assets}))
	return mux
}

// render runs a page once: the pages depend only on whether the wasm
// client is built, which cannot change after the binary is built.
func render(c templ.Component) []byte {
	var b bytes.Buffer
	if err := c.Render(context.Background(), &b); err != nil {
		panic("web: rendering a static page failed: " + err.Error())
	}
	return b.Bytes()
}

func exists(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, name)
	return err == nil
}

// contentTypes are set explicitly: the system MIME table may lack .wasm,
// and WebAssembly.instantiateStreaming refuses anything but
// application/wasm.
var contentTypes = map[string]string{
	".wasm": "application/wasm",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// assetServer serves embedded files with content-hash ETags (embedded
// files have no modification time) and a gzipped app.wasm: the client is
// several MB and compresses about 4×, which matters on a classroom network.
type assetServer struct {
	fsys fs.FS
	mu   sync.Mutex
	memo map[string]*asset
}

type asset struct {
	data, gz []byte
	etag     string
}

func (s *assetServer) load(name string) (*asset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.memo[name]; ok {
		return a, nil
	}
	data, err := fs.ReadFile(s.fsys, name)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	a := &asset{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	if strings.HasSuffix(name, ".wasm") || strings.HasSuffix(name, ".js") {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		if b.Len() < len(data) {
			a.gz = b.Bytes()
		}
	}
	if s.memo == nil {
		s.memo = map[string]*asset{}
	}
	s.memo[name] = a
	return a, nil
}

func (s *assetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" || strings.HasPrefix(path.Base(name), ".") {
		http.NotFound(w, r)
		return
	}
	a, err := s.load(name)
	if err != nil {
		if name == "app.wasm" || name == "wasm_exec.js" {
			http.Error(w, name+" not built: run `go tool -modfile=tools/go.mod task wasm`", http.StatusNotFound)
			return
		}
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	ct := contentTypes[path.Ext(name)]
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache") // revalidate: cheap with the ETag
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.data
	if a.gz != nil && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		q := strings.TrimSpace(params)
		if v, ok := strings.CutPrefix(q, "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			return err == nil && f > 0
		}
		return true
	}
	return false
}
