package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// pullTestModel is a small real GGUF file, so `fastgen models` has headers
// to read after the pull.
func pullTestModel(t *testing.T) []byte {
	t.Helper()
	w := gguf.NewWriter()
	for k, v := range map[string]any{
		"general.architecture": "llama", "general.file_type": uint32(7), "llama.context_length": uint32(512),
	} {
		if err := w.SetKV(k, v); err != nil {
			t.Fatal(err)
		}
	}
	const rows, cols = 4, 64
	if err := w.AddTensor("token_embd.weight", tensor.Q8_0, []uint64{cols, rows}, make([]byte, rows*tensor.Q8_0.RowBytes(cols))); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pullTestHub serves one repo the way the hub does: a tree listing, and
// resolve/ redirecting to a CDN path with the digest in X-Linked-Etag.
func pullTestHub(t *testing.T, repo string, files map[string][]byte) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/models/"+repo+"/tree/main", func(w http.ResponseWriter, r *http.Request) {
		var entries []map[string]any
		for p, data := range files {
			s := sha256.Sum256(data)
			entries = append(entries, map[string]any{"type": "file", "path": p, "size": len(data),
				"lfs": map[string]any{"oid": hex.EncodeToString(s[:]), "size": len(data)}})
		}
		json.NewEncoder(w).Encode(entries)
	})
	mux.HandleFunc("/"+repo+"/resolve/main/", func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/"+repo+"/resolve/main/")
		data, ok := files[p]
		if !ok {
			w.Header().Set("X-Error-Code", "EntryNotFound")
			http.NotFound(w, r)
			return
		}
		s := sha256.Sum256(data)
		w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(s[:])+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		http.Redirect(w, r, "/cdn/"+p, http.StatusFound)
	})
	mux.HandleFunc("/cdn/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(files[strings.TrimPrefix(r.URL.Path, "/cdn/")]))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func runCmd(t *testing.T, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(append([]string{name}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPullModelsRm(t *testing.T) {
	const repo = "ggml-org/models"
	model := pullTestModel(t)
	srv := pullTestHub(t, repo, map[string][]byte{"tinyllamas/stories260K.gguf": model, "tinyllamas/stories15M.gguf": model})
	storeDir := t.TempDir()
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("FASTGEN_MODELS", storeDir)

	code, out, errOut := runCmd(t, "pull", repo+":stories260K.gguf", "--quiet")
	want := filepath.Join(storeDir, "ggml-org--models", "tinyllamas", "stories260K.gguf")
	if code != exitOK || strings.TrimSpace(out) != want || errOut != "" {
		t.Fatalf("pull: %d %q %q", code, out, errOut)
	}
	if got, _ := os.ReadFile(want); !bytes.Equal(got, model) {
		t.Fatal("stored file differs")
	}
	code, out, errOut = runCmd(t, "pull", "--revision", "main", repo+":tinyllamas/stories15M.gguf")
	if code != exitOK || !strings.Contains(errOut, "verified sha256") || !strings.HasSuffix(strings.TrimSpace(out), "stories15M.gguf") {
		t.Fatalf("pull with messages: %d %q %q", code, out, errOut)
	}

	code, out, _ = runCmd(t, "models")
	if code != exitOK {
		t.Fatalf("models: %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("models table:\n%s", out)
	}
	for _, s := range []string{repo + ":tinyllamas/stories260K.gguf", "llama", "Q8_0", "512"} {
		if !strings.Contains(lines[2], s) {
			t.Errorf("models row %q lacks %q", lines[2], s)
		}
	}

	code, out, _ = runCmd(t, "models", "--json")
	var rows []map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
		t.Fatalf("models --json: %d %q", code, out)
	}
	if rows[1]["name"] != repo+":tinyllamas/stories260K.gguf" || rows[1]["architecture"] != "llama" ||
		rows[1]["quantization"] != "Q8_0" || rows[1]["context_length"] != float64(512) || rows[1]["size"] != float64(len(model)) {
		t.Errorf("models --json row: %v", rows[1])
	}

	code, out, _ = runCmd(t, "rm", "stories260K")
	if code != exitOK || !strings.Contains(out, "removed "+repo+":tinyllamas/stories260K.gguf") {
		t.Fatalf("rm: %d %q", code, out)
	}
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Errorf("rm left the file: %v", err)
	}
	code, _, errOut = runCmd(t, "rm", "stories260K")
	if code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Errorf("rm of a missing model: %d %q", code, errOut)
	}
}

func TestPullErrors(t *testing.T) {
	srv := pullTestHub(t, "o/r", map[string][]byte{"m-Q8_0.gguf": []byte("x")})
	dead := httptest.NewServer(nil)
	deadURL := dead.URL
	dead.Close()
	tests := []struct {
		name     string
		endpoint string
		args     []string
		code     int
		errHas   string
	}{
		{name: "no argument", args: nil, code: exitBadInput, errHas: "exactly one REPO"},
		{name: "two arguments", args: []string{"o/r", "o/s"}, code: exitBadInput, errHas: "exactly one REPO"},
		{name: "bad repo", args: []string{"../../x"}, code: exitBadInput, errHas: "bad model reference"},
		{name: "bad flag", args: []string{"o/r", "--nope"}, code: exitBadInput},
		{name: "help", args: []string{"-h"}, code: exitOK, errHas: "HF_ENDPOINT"},
		{name: "missing file", args: []string{"o/r:other.gguf"}, code: exitFailure, errHas: "repository or file not found"},
		{name: "missing quant", args: []string{"o/r:Q4_K_M"}, code: exitFailure, errHas: "m-Q8_0.gguf"},
		{name: "missing repo", args: []string{"x/y:Q4_K_M"}, code: exitFailure, errHas: "repository or file not found: x/y"},
		{name: "offline", endpoint: deadURL, args: []string{"o/r:Q8_0"}, code: exitFailure, errHas: "cannot reach " + deadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := srv.URL
			if tt.endpoint != "" {
				ep = tt.endpoint
			}
			t.Setenv("HF_ENDPOINT", ep)
			t.Setenv("FASTGEN_MODELS", t.TempDir())
			code, out, errOut := runCmd(t, "pull", tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.errHas) || out != "" {
				t.Errorf("pull %v = %d, stdout %q, stderr %q; want %d with %q", tt.args, code, out, errOut, tt.code, tt.errHas)
			}
		})
	}
}

func TestModelsEmptyAndBadArgs(t *testing.T) {
	t.Setenv("FASTGEN_MODELS", filepath.Join(t.TempDir(), "none"))
	if code, out, errOut := runCmd(t, "models"); code != exitOK || out != "" || !strings.Contains(errOut, "fastgen pull") {
		t.Errorf("empty store: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runCmd(t, "models", "--json"); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty store as JSON: %d %q", code, out)
	}
	if code, _, _ := runCmd(t, "models", "extra"); code != exitBadInput {
		t.Errorf("models with an argument: %d", code)
	}
	if code, _, _ := runCmd(t, "rm"); code != exitBadInput {
		t.Errorf("rm without a name: %d", code)
	}
}
