package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testRepo = "ggml-org/models"
	testFile = "tinyllamas/stories260K.gguf"
)

// pullEnv is one fake hub plus a store-like pair of directories: the
// partial area and the store proper, which must only ever hold whole files.
type pullEnv struct {
	hub  *fakeHub
	c    *Client
	data []byte
	part string
	dest string
	dir  string
}

func newPullEnv(t *testing.T, size int) *pullEnv {
	h := newFakeHub(t)
	data := payload(size)
	h.add(testRepo, testFile, data)
	h.add(testRepo, "README.md", []byte("# models\n"))
	dir := t.TempDir()
	return &pullEnv{
		hub: h, c: h.client(), data: data, dir: dir,
		part: filepath.Join(dir, ".partial", "ggml-org--models", testFile+".x.part"),
		dest: filepath.Join(dir, "ggml-org--models", testFile),
	}
}

func (e *pullEnv) pull(t *testing.T, ctx context.Context, spec string, prog Progress) (Result, error) {
	t.Helper()
	f, err := e.c.Resolve(ctx, Ref{Repo: testRepo, Spec: spec}, "")
	if err != nil {
		return Result{}, err
	}
	return e.c.Download(ctx, Request{Repo: testRepo, File: f, PartPath: e.part, Dest: e.dest, Progress: prog})
}

// storeFiles lists regular files outside the partial area.
func (e *pullEnv) storeFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.Walk(e.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() && info.Name() == ".partial" {
			return filepath.SkipDir
		}
		if err == nil && info.Mode().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func (e *pullEnv) checkStored(t *testing.T) {
	t.Helper()
	got, err := os.ReadFile(e.dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, e.data) {
		t.Fatalf("stored file differs from the hub's (%d vs %d bytes)", len(got), len(e.data))
	}
	if _, err := os.Stat(e.part); !os.IsNotExist(err) {
		t.Errorf("partial file left after success: %v", err)
	}
}

func (e *pullEnv) checkNothingStored(t *testing.T) {
	t.Helper()
	if files := e.storeFiles(t); len(files) != 0 {
		t.Errorf("store holds files after a failed pull: %v", files)
	}
}

type recordingProgress struct {
	starts   []int64
	last     int64
	finished int
	err      error
	onUpdate func(int64)
}

func (p *recordingProgress) Start(_ string, done, _ int64) { p.starts = append(p.starts, done) }
func (p *recordingProgress) Update(done int64) {
	p.last = done
	if p.onUpdate != nil {
		p.onUpdate(done)
	}
}
func (p *recordingProgress) Finish(done int64, err error) { p.finished++; p.last, p.err = done, err }

func TestPullFull(t *testing.T) {
	e := newPullEnv(t, 3<<20+17)
	e.c.Token = "secret"
	prog := &recordingProgress{}
	res, err := e.pull(t, context.Background(), testFile, prog)
	if err != nil {
		t.Fatal(err)
	}
	e.checkStored(t)
	if res.Path != e.dest || res.Size != int64(len(e.data)) || res.SHA256 != sha(e.data) || res.Resumed != 0 || res.Existing {
		t.Errorf("result %+v", res)
	}
	if prog.finished != 1 || prog.err != nil || prog.last != int64(len(e.data)) {
		t.Errorf("progress %+v", prog)
	}
	var sawRedirect, sawCDN bool
	for _, r := range e.hub.log() {
		if r.Auth != "Bearer secret" {
			t.Errorf("request %s without the token", r.Path)
		}
		sawRedirect = sawRedirect || strings.Contains(r.Path, "/resolve/main/")
		sawCDN = sawCDN || strings.HasPrefix(r.Path, "/cdn/")
	}
	if !sawRedirect || !sawCDN {
		t.Errorf("expected resolve then CDN requests: %+v", e.hub.log())
	}

	// Pulling again hashes the stored file instead of downloading it.
	before := len(e.hub.log())
	res, err = e.pull(t, context.Background(), testFile, nil)
	if err != nil || !res.Existing {
		t.Fatalf("second pull: %+v, %v", res, err)
	}
	for _, r := range e.hub.log()[before:] {
		if !strings.HasPrefix(r.Path, "/api/") {
			t.Errorf("second pull downloaded again: %s", r.Path)
		}
	}
}

// TestPullNonLFS covers a small file without X-Linked-Etag: no digest to
// check, so the size alone decides.
func TestPullNonLFS(t *testing.T) {
	e := newPullEnv(t, 10)
	e.dest = filepath.Join(e.dir, "ggml-org--models", "README.md")
	res, err := e.pull(t, context.Background(), "README.md", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(e.dest); string(got) != "# models\n" || res.SHA256 != "" {
		t.Errorf("got %q, %+v", got, res)
	}
}

func TestPullResume(t *testing.T) {
	tests := []struct {
		name        string
		retries     int
		ignoreRange bool
	}{
		{name: "second pull resumes"},
		{name: "resumes in place", retries: 2},
		{name: "server ignores Range", ignoreRange: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newPullEnv(t, 2<<20+5)
			e.c.Retries = tt.retries
			const cut = 700_001
			e.hub.cutAfter, e.hub.cuts = cut, 1
			e.hub.ignoreRange = tt.ignoreRange
			res, err := e.pull(t, context.Background(), testFile, nil)
			if tt.retries == 0 {
				if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "pull again to resume") {
					t.Fatalf("interrupted pull: %v", err)
				}
				e.checkNothingStored(t)
				st, serr := os.Stat(e.part)
				if serr != nil || st.Size() != cut {
					t.Fatalf("partial file after interruption: %v, %v", st, serr)
				}
				prog := &recordingProgress{}
				res, err = e.pull(t, context.Background(), testFile, prog)
				if err != nil {
					t.Fatal(err)
				}
				if !tt.ignoreRange && (len(prog.starts) != 1 || prog.starts[0] != cut) {
					t.Errorf("progress did not start at the resume point: %v", prog.starts)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			e.checkStored(t)
			var ranges []string
			for _, r := range e.hub.log() {
				if r.Range != "" {
					ranges = append(ranges, r.Range)
				}
			}
			if len(ranges) == 0 || ranges[len(ranges)-1] != "bytes=700001-" {
				t.Errorf("no Range resume request: %v", ranges)
			}
			if want := int64(cut); !tt.ignoreRange && res.Resumed != want && tt.retries == 0 {
				t.Errorf("Resumed = %d, want %d", res.Resumed, want)
			}
		})
	}
}

func TestPullCancel(t *testing.T) {
	e := newPullEnv(t, 4<<20)
	e.hub.stallAfter = 1 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prog := &recordingProgress{onUpdate: func(done int64) {
		if done >= 1<<20 {
			cancel() // what SIGINT/SIGTERM does in the CLI
		}
	}}
	_, err := e.pull(t, ctx, testFile, prog)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "pull again to resume") {
		t.Fatalf("cancelled pull: %v", err)
	}
	e.checkNothingStored(t)
	if st, err := os.Stat(e.part); err != nil || st.Size() != 1<<20 {
		t.Fatalf("resumable partial file: %v, %v", st, err)
	}
	e.hub.stallAfter = 0
	if _, err := e.pull(t, context.Background(), testFile, nil); err != nil {
		t.Fatal(err)
	}
	e.checkStored(t)
}

func TestPullChecksumMismatch(t *testing.T) {
	t.Run("corrupt transfer", func(t *testing.T) {
		e := newPullEnv(t, 1<<20)
		e.hub.corrupt = true
		_, err := e.pull(t, context.Background(), testFile, nil)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("got %v, want ErrChecksum", err)
		}
		for _, s := range []string{"checksum mismatch", sha(e.data), "partial file was removed", "nothing was stored"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q lacks %q", err, s)
			}
		}
		e.checkNothingStored(t)
		if _, err := os.Stat(e.part); !os.IsNotExist(err) {
			t.Errorf("partial file kept after a checksum mismatch: %v", err)
		}
	})
	t.Run("corrupt partial file", func(t *testing.T) {
		e := newPullEnv(t, 1<<20)
		os.MkdirAll(filepath.Dir(e.part), 0o755)
		os.WriteFile(e.part, bytes.Repeat([]byte{0xee}, 4096), 0o644)
		_, err := e.pull(t, context.Background(), testFile, nil)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("got %v, want ErrChecksum", err)
		}
		e.checkNothingStored(t)
		if _, err := os.Stat(e.part); !os.IsNotExist(err) {
			t.Errorf("bad partial file kept: %v", err)
		}
		// The next pull starts clean and succeeds.
		if _, err := e.pull(t, context.Background(), testFile, nil); err != nil {
			t.Fatal(err)
		}
		e.checkStored(t)
	})
}

// TestPullPartialAlreadyComplete covers a crash between the last byte and
// the rename: the partial file is verified and moved without a request.
func TestPullPartialAlreadyComplete(t *testing.T) {
	e := newPullEnv(t, 5000)
	os.MkdirAll(filepath.Dir(e.part), 0o755)
	os.WriteFile(e.part, e.data, 0o644)
	before := len(e.hub.log())
	res, err := e.pull(t, context.Background(), testFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.checkStored(t)
	if res.Resumed != 5000 {
		t.Errorf("Resumed = %d", res.Resumed)
	}
	for _, r := range e.hub.log()[before:] {
		if !strings.HasPrefix(r.Path, "/api/") {
			t.Errorf("unexpected download request %s", r.Path)
		}
	}
}

func TestPullHTTPErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *pullEnv)
		repo    string
		spec    string
		wantErr error
		errHas  []string
	}{
		{
			name: "missing repo", repo: "nobody/nothing", spec: "model.gguf",
			wantErr: ErrNotFound, errHas: []string{"repository or file not found: nobody/nothing:model.gguf"},
		},
		{
			name: "missing file", repo: testRepo, spec: "tinyllamas/stories42M.gguf",
			wantErr: ErrNotFound, errHas: []string{"repository or file not found", "stories42M.gguf"},
		},
		{
			name: "gated without token", repo: testRepo, spec: testFile,
			setup:   func(e *pullEnv) { e.hub.gated[testRepo] = true; e.hub.token = "good" },
			wantErr: ErrAccessDenied, errHas: []string{"access denied", "401", "gated", "HF_TOKEN"},
		},
		{
			name: "gated with a wrong token", repo: testRepo, spec: testFile,
			setup:   func(e *pullEnv) { e.hub.gated[testRepo] = true; e.hub.token = "good"; e.c.Token = "bad" },
			wantErr: ErrAccessDenied, errHas: []string{"access denied", "HF_TOKEN was sent"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newPullEnv(t, 1000)
			if tt.setup != nil {
				tt.setup(e)
			}
			// Download directly: the resolve endpoint must give the clear
			// message by itself (a static mirror has no listing API).
			_, err := e.c.Download(context.Background(), Request{
				Repo: tt.repo, File: RepoFile{Path: tt.spec, Size: -1}, PartPath: e.part, Dest: e.dest,
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			e.checkNothingStored(t)
			// Resolution through the listing fails the same way.
			_, err = e.c.Resolve(context.Background(), Ref{Repo: tt.repo, Spec: "Q4_K_M"}, "")
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("resolve: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
