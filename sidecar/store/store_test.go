package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// fill creates files in a store the way a pull leaves them, plus a partial
// download that must stay invisible.
func fill(t *testing.T, root string, files map[string]string) *Store {
	t.Helper()
	s := &Store{Root: root}
	for name, content := range files {
		repo, file, _ := strings.Cut(name, ":")
		p, err := s.Path(repo, file)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var sample = map[string]string{
	"ggml-org/models:tinyllamas/stories260K.gguf":                            "a",
	"ggml-org/models:tinyllamas/stories15M.gguf":                             "bb",
	"bartowski/Llama-3.2-1B-Instruct-GGUF:Llama-3.2-1B-Instruct-Q4_K_M.gguf": "ccc",
	"bartowski/Llama-3.2-1B-Instruct-GGUF:Llama-3.2-1B-Instruct-Q8_0.gguf":   "dddd",
	"karpathy/tinyllamas:stories110M.bin":                                    "eeeee",
}

func TestDir(t *testing.T) {
	t.Setenv(EnvDir, "/tmp/somewhere")
	if d, err := Dir(); err != nil || d != "/tmp/somewhere" {
		t.Errorf("Dir() = %q, %v", d, err)
	}
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_CACHE_HOME", "/tmp/cache")
	t.Setenv("HOME", "/tmp/home")
	c, _ := os.UserCacheDir()
	if d, err := Dir(); err != nil || d != filepath.Join(c, "fastgen", "models") {
		t.Errorf("Dir() = %q, %v", d, err)
	}
}

func TestList(t *testing.T) {
	root := t.TempDir()
	s := fill(t, root, sample)
	part, err := s.PartialPath("ggml-org/models", "tinyllamas/stories42M.gguf", "main")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, []byte("half"), 0o644)
	os.WriteFile(filepath.Join(root, "stray.txt"), nil, 0o644)

	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bartowski/Llama-3.2-1B-Instruct-GGUF:Llama-3.2-1B-Instruct-Q4_K_M.gguf",
		"bartowski/Llama-3.2-1B-Instruct-GGUF:Llama-3.2-1B-Instruct-Q8_0.gguf",
		"ggml-org/models:tinyllamas/stories15M.gguf",
		"ggml-org/models:tinyllamas/stories260K.gguf",
		"karpathy/tinyllamas:stories110M.bin",
	}
	if len(got) != len(want) {
		t.Fatalf("List() = %+v", got)
	}
	for i, e := range got {
		if e.Name != want[i] || e.Size != int64(len(sample[e.Name])) || e.Name != Name(e.Repo, e.File) {
			t.Errorf("entry %d = %+v, want %s", i, e, want[i])
		}
		if _, err := os.Stat(e.Path); err != nil {
			t.Errorf("entry path: %v", err)
		}
	}

	empty := &Store{Root: filepath.Join(root, "does-not-exist")}
	if got, err := empty.List(); err != nil || len(got) != 0 {
		t.Errorf("missing store: %v, %v", got, err)
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	s := fill(t, root, sample)
	local := filepath.Join(t.TempDir(), "local.gguf")
	os.WriteFile(local, []byte("x"), 0o644)
	// A local file named like a store suffix must still win.
	cwdFile := filepath.Join(t.TempDir(), "stories15M.gguf")
	os.WriteFile(cwdFile, []byte("x"), 0o644)

	path := func(name string) string { p, _ := filepath.Abs(filepath.Join(root, name)); return p }
	tests := []struct {
		arg     string
		want    string
		wantErr error
		errHas  string
	}{
		{arg: local, want: local},
		{arg: cwdFile, want: cwdFile},
		{arg: "ggml-org/models:tinyllamas/stories260K.gguf", want: path("ggml-org--models/tinyllamas/stories260K.gguf")},
		{arg: "GGML-ORG/models:tinyllamas/STORIES260K.gguf", want: path("ggml-org--models/tinyllamas/stories260K.gguf")},
		{arg: "stories260K.gguf", want: path("ggml-org--models/tinyllamas/stories260K.gguf")},
		{arg: "stories260K", want: path("ggml-org--models/tinyllamas/stories260K.gguf")},
		{arg: "tinyllamas/stories15M.gguf", want: path("ggml-org--models/tinyllamas/stories15M.gguf")},
		{arg: "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", want: path("bartowski--Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf")},
		{arg: "bartowski/Llama-3.2-1B-Instruct-GGUF:q8_0", want: path("bartowski--Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q8_0.gguf")},
		{arg: "karpathy/tinyllamas", want: path("karpathy--tinyllamas/stories110M.bin")},
		{arg: "karpathy/tinyllamas:stories110M.bin", want: path("karpathy--tinyllamas/stories110M.bin")},
		{arg: "ggml-org/models", wantErr: ErrAmbiguous, errHas: "stories15M.gguf"},
		{arg: "bartowski/Llama-3.2-1B-Instruct-GGUF", wantErr: ErrAmbiguous, errHas: "Q8_0"},
		{arg: "260K.gguf", wantErr: ErrNotFound, errHas: "fastgen pull"},
		{arg: "mistral", wantErr: ErrNotFound, errHas: "fastgen models"},
		{arg: filepath.Join(root, "missing.gguf"), wantErr: ErrNotFound, errHas: "no such file"},
		{arg: "./missing.gguf", wantErr: ErrNotFound, errHas: "no such file"},
		{arg: "", wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := s.Resolve(tt.arg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Resolve = %q, %v; want %v containing %q", got, err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if abs, _ := filepath.Abs(got); abs != tt.want && got != tt.want {
				t.Errorf("Resolve = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPackageLevelUsesEnv(t *testing.T) {
	root := t.TempDir()
	t.Setenv(EnvDir, root)
	fill(t, root, sample)
	got, err := Resolve("stories15M")
	if err != nil || !strings.HasPrefix(got, root) {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	list, err := List()
	if err != nil || len(list) != len(sample) {
		t.Fatalf("List = %v, %v", list, err)
	}
	if _, err := Remove("stories15M"); err != nil {
		t.Fatal(err)
	}
	if list, _ := List(); len(list) != len(sample)-1 {
		t.Errorf("after Remove: %v", list)
	}
}

func TestRemove(t *testing.T) {
	root := t.TempDir()
	s := fill(t, root, sample)
	part, _ := s.PartialPath("karpathy/tinyllamas", "stories110M.bin", "main")
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, []byte("half"), 0o644)

	if _, err := s.Remove("ggml-org/models"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous remove: %v", err)
	}
	if _, err := s.Remove("nothing-like-this"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing remove: %v", err)
	}
	e, err := s.Remove("karpathy/tinyllamas:stories110M.bin")
	if err != nil || e.Name != "karpathy/tinyllamas:stories110M.bin" {
		t.Fatalf("Remove = %+v, %v", e, err)
	}
	for _, p := range []string{e.Path, filepath.Join(root, "karpathy--tinyllamas"), part, filepath.Dir(part)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("store root removed: %v", err)
	}
	e, err = s.Remove("stories260K")
	if err != nil {
		t.Fatal(err)
	}
	// The repo directory still holds stories15M, so it must stay.
	if _, err := os.Stat(filepath.Join(root, "ggml-org--models", "tinyllamas", "stories15M.gguf")); err != nil {
		t.Errorf("sibling removed: %v", err)
	}
	if list, _ := s.List(); len(list) != len(sample)-2 {
		t.Errorf("after two removals: %v", list)
	}
}

func TestPathRejectsEscapes(t *testing.T) {
	s := &Store{Root: t.TempDir()}
	for _, c := range [][2]string{
		{"o/r", "../../etc/passwd"}, {"o/r", "/abs.gguf"}, {"o/r", ""}, {"o/r", "a//b"},
		{"../x", "m.gguf"}, {"o/r/extra", "m.gguf"}, {"o/r", `a\..\..\b`},
	} {
		if p, err := s.Path(c[0], c[1]); err == nil {
			t.Errorf("Path(%q, %q) = %q, want an error", c[0], c[1], p)
		}
		if p, err := s.PartialPath(c[0], c[1], "main"); err == nil {
			t.Errorf("PartialPath(%q, %q) = %q, want an error", c[0], c[1], p)
		}
	}
	p, err := s.PartialPath("o/r", "dir/m.gguf", "refs/pr/1")
	if err != nil || !strings.HasSuffix(filepath.ToSlash(p), ".partial/o--r/dir/m.gguf.refs_pr_1.part") {
		t.Errorf("PartialPath = %q, %v", p, err)
	}
}

func TestDescribe(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, kv map[string]any, dt tensor.DType) string {
		w := gguf.NewWriter()
		for k, v := range kv {
			if err := w.SetKV(k, v); err != nil {
				t.Fatal(err)
			}
		}
		rows, cols := 2, 256
		data := make([]byte, rows*dt.RowBytes(cols))
		if err := w.AddTensor("token_embd.weight", dt, []uint64{uint64(cols), uint64(rows)}, data); err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor("output_norm.weight", tensor.F32, []uint64{uint64(cols)}, make([]byte, 4*cols)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full := write("full.gguf", map[string]any{
		"general.architecture": "llama", "general.file_type": uint32(15), "llama.context_length": uint32(2048),
	}, tensor.Q4_K)
	bare := write("bare.gguf", map[string]any{"general.architecture": "llama"}, tensor.Q8_0)
	notGGUF := filepath.Join(dir, "model.bin")
	os.WriteFile(notGGUF, []byte("not a gguf file at all"), 0o644)

	info, err := Describe(full)
	if err != nil || info != (Info{Architecture: "llama", Quantization: "Q4_K_M", ContextLength: 2048}) {
		t.Errorf("Describe(full) = %+v, %v", info, err)
	}
	info, err = Describe(bare)
	if err != nil || info != (Info{Architecture: "llama", Quantization: "Q8_0"}) {
		t.Errorf("Describe(bare) = %+v, %v", info, err)
	}
	if _, err := Describe(notGGUF); err == nil {
		t.Error("Describe accepted a non-GGUF file")
	}
}

func TestFileTypeName(t *testing.T) {
	for ft, want := range map[uint64]string{0: "F32", 1: "F16", 7: "Q8_0", 15: "Q4_K_M", 18: "Q6_K", 32: "BF16", 5: "file type 5", 1 << 40: "file type 1099511627776"} {
		if got := FileTypeName(ft); got != want {
			t.Errorf("FileTypeName(%d) = %q, want %q", ft, got, want)
		}
	}
}
