package hub

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{in: "ggml-org/models:tinyllamas/stories260K.gguf", want: Ref{"ggml-org/models", "tinyllamas/stories260K.gguf"}},
		{in: "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", want: Ref{"bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"}},
		{in: "owner/name", want: Ref{"owner/name", ""}},
		{in: "gpt2", want: Ref{"gpt2", ""}},
		{in: "", wantErr: true},
		{in: "a/b/c", wantErr: true},
		{in: "../etc:passwd", wantErr: true},
		{in: "owner/na--me", wantErr: true},
		{in: "owner/name:../../x.gguf", wantErr: true},
		{in: "owner/:x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRef(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadRef) {
				t.Errorf("ParseRef(%q) = %v, %v; want ErrBadRef", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestSelectFile resolves specs against golden listings in the hub's own
// JSON format, fetched through ListFiles so parsing is covered too.
func TestSelectFile(t *testing.T) {
	h := newFakeHub(t)
	h.golden["bartowski/Llama-3.2-1B-Instruct-GGUF"] = "bartowski-Llama-3.2-1B-Instruct-GGUF.json"
	h.golden["ggml-org/models"] = "ggml-org-models.json"
	h.golden["ggml-org/gemma-3-4b-it-GGUF"] = "ggml-org-gemma-3-4b-it-GGUF.json"
	h.pageSize = 5 // every listing spans pages, so Link following is exercised
	c := h.client()

	const bart = "bartowski/Llama-3.2-1B-Instruct-GGUF"
	tests := []struct {
		ref     string
		want    string
		wantErr error
		errHas  []string
	}{
		{ref: bart + ":Q4_K_M", want: "Llama-3.2-1B-Instruct-Q4_K_M.gguf"},
		{ref: bart + ":q4_k_m", want: "Llama-3.2-1B-Instruct-Q4_K_M.gguf"},
		{ref: bart + ":Q6_K", want: "Llama-3.2-1B-Instruct-Q6_K.gguf"}, // not Q6_K_L
		{ref: bart + ":Q4_0", want: "Llama-3.2-1B-Instruct-Q4_0.gguf"}, // not Q4_0_4_4
		{ref: bart + ":F16", want: "Llama-3.2-1B-Instruct-f16.gguf"},   // case-insensitive
		{ref: bart + ":Q3_K_XL", want: "Llama-3.2-1B-Instruct-Q3_K_XL.gguf"},
		{ref: bart + ":Llama-3.2-1B-Instruct-Q8_0.gguf", want: "Llama-3.2-1B-Instruct-Q8_0.gguf"},
		{ref: bart + ":Q4_K", wantErr: ErrAmbiguous, errHas: []string{"Q4_K_L", "Q4_K_M", "Q4_K_S", bart + ":FILE"}},
		{ref: bart, wantErr: ErrAmbiguous, errHas: []string{"18 .gguf files", "Q8_0"}},
		{ref: bart + ":Q9_K", wantErr: ErrNotFound, errHas: []string{`"Q9_K"`, "Llama-3.2-1B-Instruct-IQ3_M.gguf"}},
		{ref: "ggml-org/models:tinyllamas/stories260K.gguf", want: "tinyllamas/stories260K.gguf"},
		{ref: "ggml-org/models:stories260K.gguf", want: "tinyllamas/stories260K.gguf"},
		{ref: "ggml-org/models:TINYLLAMAS/STORIES260K.GGUF", want: "tinyllamas/stories260K.gguf"},
		{ref: "ggml-org/models:stories260K", want: "tinyllamas/stories260K.gguf"},
		{ref: "ggml-org/models:stories15M", wantErr: ErrAmbiguous, errHas: []string{"stories15M-q4_0.gguf", "stories15M.gguf"}},
		{ref: "ggml-org/models:tinyllamas/stories42.gguf", wantErr: ErrNotFound, errHas: []string{"has no file", "tinyllamas/stories260K.gguf"}},
		{ref: "ggml-org/gemma-3-4b-it-GGUF:f16", want: "gemma-3-4b-it-f16.gguf"}, // projector skipped
		{ref: "ggml-org/gemma-3-4b-it-GGUF:mmproj", want: "mmproj-model-f16.gguf"},
		{ref: "nobody/nothing:Q4_K_M", wantErr: ErrNotFound, errHas: []string{"repository or file not found: nobody/nothing"}},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			ref, err := ParseRef(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve(context.Background(), ref, "")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, %v; want %v", got, err, tt.wantErr)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil || got.Path != tt.want {
				t.Fatalf("got %v, %v; want %s", got, err, tt.want)
			}
			if got.SHA256 == "" || got.Size <= 0 {
				t.Errorf("listing lost lfs digest or size: %+v", got)
			}
		})
	}
}

func TestSelectFileSingleGGUF(t *testing.T) {
	files := []RepoFile{{Path: "README.md"}, {Path: "model.Q8_0.gguf"}, {Path: "config.json"}}
	got, err := SelectFile("o/r", files, "")
	if err != nil || got.Path != "model.Q8_0.gguf" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := SelectFile("o/r", files[:1], ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("repo without gguf: %v", err)
	}
}

func TestNormalizeSHA256(t *testing.T) {
	d := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		`"` + d + `"`:       d,
		`W/"` + d + `"`:     d,
		strings.ToUpper(d):  d,
		"sha256:" + d:       d,
		`"` + d[:40] + `"`:  "", // git SHA-1 of a non-LFS file
		`"` + d[:63] + `z"`: "",
		"":                  "",
	} {
		if got := normalizeSHA256(in); got != want {
			t.Errorf("normalizeSHA256(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */500", 0, 500, true},
		{"items 1-2/3", 0, 0, false},
		{"bytes x-1/2", 0, 0, false},
	}
	for _, tt := range tests {
		s, n, ok := parseContentRange(tt.in)
		if s != tt.start || n != tt.total || ok != tt.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tt.in, s, n, ok)
		}
	}
}

func TestBar(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(&buf)
	now := int64(0)
	b.now = func() time.Time { return time.Unix(0, now) }
	b.Start("o/r:dir/model.gguf", 1<<20, 4<<20)
	now = 1e9
	b.Update(2 << 20)
	b.Finish(4<<20, nil)
	out := buf.String()
	for _, s := range []string{"model.gguf", "50%", "2.0 MiB/4.0 MiB", "1.0 MiB/s", "ETA 0:02", "100%"} {
		if !strings.Contains(out, s) {
			t.Errorf("bar output %q lacks %q", out, s)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("finished bar does not end the line: %q", out)
	}
	if NewProgress(&buf) != (quiet{}) {
		t.Error("a buffer is not a terminal; progress must be quiet")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if NewProgress(f) != (quiet{}) {
		t.Error("a regular file is not a terminal; progress must be quiet")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536 << 20: "1.5 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	endpoint := srv.URL
	srv.Close() // nothing listens there any more: connection refused
	c := &Client{Endpoint: endpoint}
	_, err := c.Resolve(context.Background(), Ref{Repo: "o/r", Spec: "Q4_K_M"}, "")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	for _, s := range []string{"cannot reach " + endpoint, "offline?", "HF_ENDPOINT", "--model"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	dir := t.TempDir()
	_, err = c.Download(context.Background(), Request{
		Repo: "o/r", File: RepoFile{Path: "m.gguf", Size: -1},
		PartPath: filepath.Join(dir, "p", "m.part"), Dest: filepath.Join(dir, "s", "m.gguf"),
	})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("download: got %v, want ErrUnreachable", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s")); !os.IsNotExist(err) {
		t.Errorf("store dir created by a failed download: %v", err)
	}
}
