// Package hub fetches model files from a Hugging Face hub (or a mirror that
// speaks the same HTTP API): it resolves REPO[:FILE|:QUANT] against the repo's
// file listing and downloads with Range resume and SHA-256 verification.
//
// It uses net/http alone so the binary stays dependency-free, and it never
// writes outside the two paths its caller names: the resumable partial file
// and the final destination, which only ever receives a complete, verified
// file through an atomic rename.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

// DefaultEndpoint is used when HF_ENDPOINT is unset.
const DefaultEndpoint = "https://huggingface.co"

// DefaultRevision is the branch the hub serves when none is named.
const DefaultRevision = "main"

// Errors callers can test with errors.Is; the wrapped messages carry the
// details a user needs (what was asked for and what to do next).
var (
	ErrNotFound     = errors.New("repository or file not found")
	ErrAccessDenied = errors.New("access denied")
	ErrUnreachable  = errors.New("cannot reach")
	ErrChecksum     = errors.New("checksum mismatch")
	ErrAmbiguous    = errors.New("ambiguous file selection")
	ErrBadRef       = errors.New("bad model reference")
)

// Client talks to one hub endpoint.
type Client struct {
	// Endpoint is the hub's base URL without a trailing slash.
	Endpoint string
	// Token, when set, is sent as a bearer token (needed for gated and
	// private repos).
	Token string
	// HTTP is the client used for requests; nil means http.DefaultClient's
	// transport. Its CheckRedirect is replaced per request because the
	// checksum travels on the redirect response.
	HTTP *http.Client
	// Retries is how many times a download that broke off mid-body is
	// resumed in place before giving up (0 means no automatic resume).
	Retries int
}

// NewClient returns a client configured from the hub's own environment
// conventions: HF_ENDPOINT for mirrors and HF_TOKEN for gated repos.
func NewClient() *Client {
	ep := strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/")
	if ep == "" {
		ep = DefaultEndpoint
	}
	return &Client{Endpoint: ep, Token: os.Getenv("HF_TOKEN"), Retries: 3}
}

// Ref is a parsed REPO[:FILE] argument. Spec is whatever followed the colon:
// a file path inside the repo, a bare file name, a quantization tag, or empty.
type Ref struct {
	Repo string
	Spec string
}

func (r Ref) String() string {
	if r.Spec == "" {
		return r.Repo
	}
	return r.Repo + ":" + r.Spec
}

// repoPart follows the hub's own rules for repo ids, which also guarantees
// the id cannot escape a directory when used to build local paths.
var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ParseRef splits "owner/name[:spec]". Repo ids never contain a colon, so the
// first colon always ends the repo.
func ParseRef(s string) (Ref, error) {
	repo, spec, _ := strings.Cut(strings.TrimSpace(s), ":")
	if err := ValidRepo(repo); err != nil {
		return Ref{}, err
	}
	spec = strings.Trim(spec, "/")
	for _, seg := range strings.Split(spec, "/") {
		if seg == ".." {
			return Ref{}, fmt.Errorf("%w: %q: file path may not contain \"..\"", ErrBadRef, s)
		}
	}
	return Ref{Repo: repo, Spec: spec}, nil
}

// ValidRepo reports whether repo is a hub repo id ("owner/name" or a legacy
// single "name").
func ValidRepo(repo string) error {
	parts := strings.Split(repo, "/")
	if repo == "" || len(parts) > 2 {
		return fmt.Errorf("%w: %q: want owner/name[:FILE]", ErrBadRef, repo)
	}
	for _, p := range parts {
		if !repoPart.MatchString(p) || strings.Contains(p, "--") || strings.Contains(p, "..") {
			return fmt.Errorf("%w: %q: want owner/name[:FILE] with letters, digits, '-', '_' and '.'", ErrBadRef, repo)
		}
	}
	return nil
}

// RepoFile is one file in a repo listing. SHA256 is set for LFS files only;
// Size is -1 when unknown.
type RepoFile struct {
	Path   string
	Size   int64
	SHA256 string
}

// treeEntry is one element of GET /api/models/{repo}/tree/{rev}.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// ListFiles returns every file in repo at revision, sorted by path.
func (c *Client) ListFiles(ctx context.Context, repo, revision string) ([]RepoFile, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	next := c.Endpoint + "/api/models/" + repo + "/tree/" + url.PathEscape(revision) + "?recursive=true"
	what := fmt.Sprintf("%s (revision %s)", repo, revision)
	var files []RepoFile
	// The hub pages long listings through Link: <...>; rel="next".
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("listing %s: too many pages", what)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", what, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.do(req, nil)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			err := c.statusError(resp, what)
			resp.Body.Close()
			return nil, err
		}
		var entries []treeEntry
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&entries)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing %s: the hub's file listing is not the expected JSON: %w", what, err)
		}
		for _, e := range entries {
			if e.Type != "" && e.Type != "file" {
				continue
			}
			f := RepoFile{Path: e.Path, Size: e.Size}
			if e.LFS != nil {
				f.SHA256 = normalizeSHA256(e.LFS.OID)
				if e.LFS.Size > 0 {
					f.Size = e.LFS.Size
				}
			}
			files = append(files, f)
		}
		next = nextLink(resp.Header.Get("Link"), resp.Request.URL)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// nextLink extracts the rel="next" target of an RFC 8288 Link header.
func nextLink(h string, base *url.URL) string {
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
		if err != nil {
			return ""
		}
		return base.ResolveReference(u).String()
	}
	return ""
}

// Resolve turns a Ref into the one file to download. An explicit file path is
// trusted even when the listing endpoint is missing (static mirrors serve
// resolve/ without the API); the download then reports a missing file itself.
func (c *Client) Resolve(ctx context.Context, ref Ref, revision string) (RepoFile, error) {
	files, err := c.ListFiles(ctx, ref.Repo, revision)
	if err != nil {
		if errors.Is(err, ErrNotFound) && looksLikeFile(ref.Spec) {
			return RepoFile{Path: ref.Spec, Size: -1}, nil
		}
		return RepoFile{}, err
	}
	return SelectFile(ref.Repo, files, ref.Spec)
}

// looksLikeFile tells a file path from a quantization tag or name fragment:
// those never contain a slash or end in a word-like extension, while a
// fragment such as "Llama-3.2-1B" has a dot that is no extension.
func looksLikeFile(spec string) bool {
	return strings.Contains(spec, "/") || fileExt.MatchString(path.Ext(spec))
}

var fileExt = regexp.MustCompile(`^\.[A-Za-z][A-Za-z0-9]*$`)

// SelectFile picks one file from a listing. spec may be empty (the repo must
// hold exactly one .gguf), an exact path, a bare file name, or a quantization
// tag matched case-insensitively against *TAG*.gguf. Ambiguity and misses are
// errors that list the candidates.
func SelectFile(repo string, files []RepoFile, spec string) (RepoFile, error) {
	var ggufs []RepoFile
	for _, f := range files {
		if strings.EqualFold(path.Ext(f.Path), ".gguf") {
			ggufs = append(ggufs, f)
		}
	}
	if spec == "" {
		switch len(ggufs) {
		case 1:
			return ggufs[0], nil
		case 0:
			return RepoFile{}, fmt.Errorf("%w: %s has no .gguf file; name one with %s:FILE (files: %s)",
				ErrNotFound, repo, repo, candidates(files))
		}
		return RepoFile{}, fmt.Errorf("%w: %s has %d .gguf files; pick one with %s:FILE or %s:QUANT: %s",
			ErrAmbiguous, repo, len(ggufs), repo, repo, candidates(ggufs))
	}
	for _, f := range files {
		if f.Path == spec {
			return f, nil
		}
	}
	// A bare name or a case slip in a path is still an unambiguous choice
	// when exactly one file fits.
	var byName []RepoFile
	for _, f := range files {
		if strings.EqualFold(f.Path, spec) || strings.EqualFold(path.Base(f.Path), spec) {
			byName = append(byName, f)
		}
	}
	if len(byName) == 1 {
		return byName[0], nil
	}
	if len(byName) > 1 {
		return RepoFile{}, fmt.Errorf("%w: %q matches %d files in %s: %s",
			ErrAmbiguous, spec, len(byName), repo, candidates(byName))
	}
	if looksLikeFile(spec) {
		return RepoFile{}, fmt.Errorf("%w: %s has no file %q (files: %s)", ErrNotFound, repo, spec, candidates(files))
	}
	m := matchQuant(ggufs, spec)
	switch len(m) {
	case 1:
		return m[0], nil
	case 0:
		return RepoFile{}, fmt.Errorf("%w: no .gguf file in %s matches %q (available: %s)",
			ErrNotFound, repo, spec, candidates(ggufs))
	}
	return RepoFile{}, fmt.Errorf("%w: %q matches %d files in %s; name one with %s:FILE: %s",
		ErrAmbiguous, spec, len(m), repo, repo, candidates(m))
}

// matchQuant prefers whole-tag matches so that Q4_K_M does not also pick
// Q4_K_M_L-style variants and Q4_0 does not pick Q4_0_4_4, falls back to a
// plain substring, and drops multimodal projector files when that leaves a
// single model (projectors share the quant tag of the model they belong to).
func matchQuant(ggufs []RepoFile, tag string) []RepoFile {
	tag = strings.ToLower(tag)
	var whole, sub []RepoFile
	for _, f := range ggufs {
		name := strings.ToLower(path.Base(f.Path))
		stem := strings.TrimSuffix(name, ".gguf")
		for i := strings.Index(stem, tag); i >= 0; {
			sub = appendOnce(sub, f)
			end := i + len(tag)
			before := i == 0 || strings.ContainsRune("-._", rune(stem[i-1]))
			after := end == len(stem) || strings.ContainsRune("-.", rune(stem[end]))
			if before && after {
				whole = appendOnce(whole, f)
			}
			j := strings.Index(stem[i+1:], tag)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	m := sub
	if len(whole) > 0 {
		m = whole
	}
	if len(m) > 1 {
		var models []RepoFile
		for _, f := range m {
			if !strings.HasPrefix(strings.ToLower(path.Base(f.Path)), "mmproj") {
				models = append(models, f)
			}
		}
		if len(models) == 1 {
			return models
		}
	}
	return m
}

func appendOnce(s []RepoFile, f RepoFile) []RepoFile {
	if len(s) > 0 && s[len(s)-1].Path == f.Path {
		return s
	}
	return append(s, f)
}

// candidates lists paths for an error message, capped so a huge repo does not
// flood the terminal.
func candidates(files []RepoFile) string {
	const max = 20
	var b strings.Builder
	for i, f := range files {
		if i == max {
			fmt.Fprintf(&b, ", ... (%d more)", len(files)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Path)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// FileURL is where the hub serves a file's content.
func (c *Client) FileURL(repo, revision, file string) string {
	if revision == "" {
		revision = DefaultRevision
	}
	segs := strings.Split(file, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return c.Endpoint + "/" + repo + "/resolve/" + url.PathEscape(revision) + "/" + strings.Join(segs, "/")
}

// do sends req with auth and turns transport failures into ErrUnreachable.
// onRedirect, when set, sees every redirect response before it is followed.
func (c *Client) do(req *http.Request, onRedirect func(*http.Response)) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("User-Agent", "fastgen")
	hc := http.Client{}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	hc.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if onRedirect != nil && r.Response != nil {
			onRedirect(r.Response)
		}
		// net/http already drops Authorization when the redirect leaves the
		// hub's domain (signed CDN URLs must not see the token); Range and
		// the rest are carried over, which resume depends on.
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("%w %s: %v (offline? set HF_ENDPOINT for a mirror or pass a local --model path)",
			ErrUnreachable, c.Endpoint, unwrapURLError(err))
	}
	return resp, nil
}

// unwrapURLError drops the "Get URL:" prefix that would repeat the endpoint.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// statusError maps a failed response to a message that says what to do. The
// hub's X-Error-Code tells a gated repo from a missing one; without it a 401
// is ambiguous because the hub answers 401 for repos that do not exist too.
func (c *Client) statusError(resp *http.Response, what string) error {
	code := resp.Header.Get("X-Error-Code")
	msg := resp.Header.Get("X-Error-Message")
	detail := ""
	if msg != "" {
		detail = " (" + msg + ")"
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s%s", ErrNotFound, what, detail)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		hint := "if it is gated or private, set HF_TOKEN to a token that has access"
		if code == "GatedRepo" {
			hint = "the repository is gated: accept its terms on the hub page, then set HF_TOKEN"
		}
		if c.Token != "" {
			hint = "HF_TOKEN was sent but does not grant access; check the token and that you accepted the repo's terms"
		}
		return fmt.Errorf("%w to %s: %s; %s%s", ErrAccessDenied, what, resp.Status, hint, detail)
	}
	return fmt.Errorf("fetching %s from %s: unexpected status %s%s", what, c.Endpoint, resp.Status, detail)
}

// normalizeSHA256 accepts an ETag-style value ("abc", W/"abc", sha256:abc)
// and returns the lowercase hex digest, or "" when it is not a SHA-256 (the
// hub's ETag for non-LFS files is a git SHA-1).
func normalizeSHA256(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	v = strings.TrimPrefix(strings.ToLower(v), "sha256:")
	if len(v) != 64 {
		return ""
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return ""
		}
	}
	return v
}
