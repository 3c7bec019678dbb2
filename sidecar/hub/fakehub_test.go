package hub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHub imitates the parts of the Hugging Face hub that pull uses: the
// tree listing API, resolve/ answering with a redirect to a CDN path that
// carries X-Linked-Etag and X-Linked-Size, and a CDN honouring Range.
type fakeHub struct {
	t   *testing.T
	srv *httptest.Server

	mu sync.Mutex
	// repos maps repo id to file path to content.
	repos map[string]map[string][]byte
	// golden maps repo id to a testdata listing served instead of one built
	// from repos.
	golden map[string]string
	// gated repos answer 401 unless the request carries token.
	gated map[string]bool
	token string
	// pageSize > 0 splits listings into pages linked with Link headers.
	pageSize int
	// cutAfter > 0 makes the next CDN response stop after that many body
	// bytes and drop the connection; it applies to cuts responses.
	cutAfter int64
	cuts     int
	// stall makes CDN responses send stallAfter bytes and then wait for the
	// client to go away, to test cancellation.
	stallAfter int64
	// corrupt flips a byte of every CDN body while the headers keep the
	// true digest.
	corrupt bool
	// ignoreRange makes the CDN answer 200 with the whole file.
	ignoreRange bool

	requests []recorded
}

type recorded struct {
	Path, Range, Auth string
}

func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{t: t, repos: map[string]map[string][]byte{}, golden: map[string]string{}, gated: map[string]bool{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) client() *Client {
	return &Client{Endpoint: h.srv.URL, HTTP: h.srv.Client()}
}

func (h *fakeHub) add(repo, file string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos[repo] == nil {
		h.repos[repo] = map[string][]byte{}
	}
	h.repos[repo][file] = data
}

func (h *fakeHub) log() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.requests...)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// payload is deterministic content that makes misplaced bytes detectable.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// isLFS follows the hub: model weights are LFS, small text files are not.
func isLFS(file string) bool {
	return !strings.HasSuffix(file, ".md") && !strings.HasSuffix(file, ".json")
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests = append(h.requests, recorded{Path: r.URL.Path, Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization")})
	h.mu.Unlock()
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/models/"):
		h.serveTree(w, r, strings.TrimPrefix(p, "/api/models/"))
	case strings.HasPrefix(p, "/cdn/"):
		h.serveCDN(w, r, strings.TrimPrefix(p, "/cdn/"))
	default:
		h.serveResolve(w, r, strings.TrimPrefix(p, "/"))
	}
}

// splitRepo separates "owner/name/rest" at the given marker ("/tree/",
// "/resolve/").
func splitRepo(p, marker string) (repo, rev, rest string, ok bool) {
	repo, after, ok := strings.Cut(p, marker)
	if !ok {
		return "", "", "", false
	}
	rev, rest, _ = strings.Cut(after, "/")
	return repo, rev, rest, true
}

func (h *fakeHub) authorized(w http.ResponseWriter, r *http.Request, repo string) bool {
	h.mu.Lock()
	gated, token := h.gated[repo], h.token
	h.mu.Unlock()
	if gated && r.Header.Get("Authorization") != "Bearer "+token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+repo+" is restricted.")
		http.Error(w, "gated", http.StatusUnauthorized)
		return false
	}
	return true
}

func (h *fakeHub) serveTree(w http.ResponseWriter, r *http.Request, p string) {
	repo, rev, _, ok := splitRepo(p, "/tree/")
	h.mu.Lock()
	files, known := h.repos[repo]
	golden, hasGolden := h.golden[repo]
	pageSize := h.pageSize
	h.mu.Unlock()
	if !ok || rev != "main" || r.URL.Query().Get("recursive") != "true" || !known && !hasGolden {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "Repository not found", http.StatusNotFound)
		return
	}
	if !h.authorized(w, r, repo) {
		return
	}
	var entries []json.RawMessage
	if hasGolden {
		data, err := os.ReadFile("testdata/" + golden)
		if err != nil {
			h.t.Error(err)
			return
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			h.t.Error(err)
			return
		}
	} else {
		for name, data := range files {
			e := map[string]any{"type": "file", "path": name, "size": len(data), "oid": strings.Repeat("0", 40)}
			if isLFS(name) {
				e["lfs"] = map[string]any{"oid": sha(data), "size": len(data), "pointerSize": 134}
			}
			b, _ := json.Marshal(e)
			entries = append(entries, b)
		}
	}
	if pageSize > 0 {
		start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		end := min(start+pageSize, len(entries))
		if end < len(entries) {
			w.Header().Set("Link", `<`+r.URL.Path+`?recursive=true&cursor=`+strconv.Itoa(end)+`>; rel="next"`)
		}
		entries = entries[start:end]
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(entries)
}

func (h *fakeHub) serveResolve(w http.ResponseWriter, r *http.Request, p string) {
	repo, rev, file, ok := splitRepo(p, "/resolve/")
	h.mu.Lock()
	data, found := h.repos[repo][file]
	_, repoKnown := h.repos[repo]
	h.mu.Unlock()
	if ok && repoKnown && !h.authorized(w, r, repo) {
		return
	}
	if !ok || rev != "main" || !found {
		code := "RepoNotFound"
		if repoKnown {
			code = "EntryNotFound"
		}
		w.Header().Set("X-Error-Code", code)
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	if !isLFS(file) {
		w.Header().Set("ETag", `"`+strings.Repeat("a", 40)+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	w.Header().Set("X-Linked-Etag", `"`+sha(data)+`"`)
	w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
	w.Header().Set("Location", "/cdn/"+repo+"/"+file)
	w.WriteHeader(http.StatusFound)
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request, p string) {
	h.mu.Lock()
	var data []byte
	for repo, files := range h.repos {
		if f, ok := strings.CutPrefix(p, repo+"/"); ok {
			data = files[f]
		}
	}
	cut := int64(0)
	if h.cuts > 0 {
		cut = h.cutAfter
		h.cuts--
	}
	stall, corrupt, ignoreRange := h.stallAfter, h.corrupt, h.ignoreRange
	h.mu.Unlock()
	if data == nil {
		http.NotFound(w, r)
		return
	}
	if corrupt {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0xff
	}
	if ignoreRange {
		r.Header.Del("Range")
	}
	w.Header().Set("ETag", `"cdn-etag"`)
	if cut > 0 || stall > 0 {
		w = &limitWriter{ResponseWriter: w, left: max(cut, stall), stall: stall > 0, r: r}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// limitWriter passes left body bytes through, then either drops the
// connection (a network failure mid-transfer) or waits until the client
// gives up (a slow transfer being cancelled).
type limitWriter struct {
	http.ResponseWriter
	left  int64
	stall bool
	r     *http.Request
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.ResponseWriter.Write(p)
	l.left -= int64(n)
	if l.left == 0 {
		l.ResponseWriter.(http.Flusher).Flush()
		if l.stall {
			<-l.r.Context().Done()
		}
		panic(http.ErrAbortHandler)
	}
	return n, err
}
