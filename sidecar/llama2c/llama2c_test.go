package llama2c

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/gguf"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// synth builds a checkpoint whose every float is its own index in the weight
// stream, so a test can tell exactly which offset each view starts at.
func synth(h [7]int32, rope bool) []byte {
	c := Config{Dim: int(h[0]), HiddenDim: int(h[1]), NLayers: int(h[2]), NHeads: int(h[3]), NKVHeads: int(h[4]),
		VocabSize: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0}
	if c.VocabSize < 0 {
		c.VocabSize = -c.VocabSize
	}
	l := newLayout(c)
	n := (l.end - headerSize) / 4
	if rope {
		n += uint64(c.SeqLen * c.HeadSize())
	}
	if !c.SharedClassifier {
		n += uint64(c.VocabSize * c.Dim)
	}
	b := make([]byte, 0, headerSize+4*n)
	for _, v := range h {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	for i := range n {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(i)))
	}
	return b
}

var tiny = [7]int32{8, 12, 2, 4, 2, 10, 6} // head size 2, kv_dim 4

func first(m *tensor.Matrix) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(m.Data)) }

// view is where a named tensor should start (as a float index) and its shape.
type view struct {
	name       string
	rows, cols int
	start      int
}

func TestSynthetic(t *testing.T) {
	const d, hd, kv, L, V, S = 8, 12, 4, 2, 10, 6
	// Float index where each group starts in run.c's order.
	emb := 0
	rmsAtt := emb + V*d
	wq := rmsAtt + L*d
	wk := wq + L*d*d
	wv := wk + L*kv*d
	wo := wv + L*kv*d
	rmsFFN := wo + L*d*d
	w1 := rmsFFN + L*d
	w2 := w1 + L*hd*d
	w3 := w2 + L*d*hd
	rmsFinal := w3 + L*hd*d
	end := rmsFinal + d
	for _, tt := range []struct {
		name   string
		shared bool
		rope   bool
		wcls   int
	}{
		{"shared with rope", true, true, emb},
		{"shared without rope", true, false, emb},
		{"unshared with rope", false, true, end + S*2},
		{"unshared without rope", false, false, end},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := tiny
			if !tt.shared {
				h[5] = -h[5]
			}
			c, err := Parse("tiny.bin", synth(h, tt.rope))
			must(t, err)
			want := Config{d, hd, L, 4, 2, V, S, tt.shared}
			if c.Config != want || c.HasRoPETables != tt.rope {
				t.Fatalf("config %+v rope %v, want %+v rope %v", c.Config, c.HasRoPETables, want, tt.rope)
			}
			views := []view{
				{"token_embd.weight", V, d, emb},
				{"output_norm.weight", 1, d, rmsFinal},
				{"output.weight", V, d, tt.wcls},
			}
			for i := range L {
				blk := fmt.Sprintf("blk.%d.", i)
				views = append(views,
					view{blk + "attn_norm.weight", 1, d, rmsAtt + i*d},
					view{blk + "attn_q.weight", d, d, wq + i*d*d},
					view{blk + "attn_k.weight", kv, d, wk + i*kv*d},
					view{blk + "attn_v.weight", kv, d, wv + i*kv*d},
					view{blk + "attn_output.weight", d, d, wo + i*d*d},
					view{blk + "ffn_norm.weight", 1, d, rmsFFN + i*d},
					view{blk + "ffn_gate.weight", hd, d, w1 + i*hd*d},
					view{blk + "ffn_down.weight", d, hd, w2 + i*d*hd},
					view{blk + "ffn_up.weight", hd, d, w3 + i*hd*d},
				)
			}
			if got := c.Names(); len(got) != len(views) {
				t.Errorf("Names() has %d entries, want %d: %v", len(got), len(views), got)
			}
			for _, v := range views {
				m, ok := c.Tensor(v.name)
				if !ok {
					t.Errorf("tensor %s missing", v.name)
					continue
				}
				if m.Type != tensor.F32 || m.Rows != v.rows || m.Cols != v.cols || len(m.Data) != 4*v.rows*v.cols {
					t.Errorf("%s: %s %d×%d (%d bytes), want f32 %d×%d", v.name, m.Type, m.Rows, m.Cols, len(m.Data), v.rows, v.cols)
				}
				if got := first(m); got != float32(v.start) {
					t.Errorf("%s starts at float %v, want %d", v.name, got, v.start)
				}
			}
			if _, ok := c.Tensor("blk.2.attn_q.weight"); ok {
				t.Error("tensor of a layer past n_layers exists")
			}
		})
	}
}

func TestNamesStable(t *testing.T) {
	c, err := Parse("tiny.bin", synth(tiny, true))
	must(t, err)
	a, b := c.Names(), c.Names()
	if !slices.Equal(a, b) || a[0] != "token_embd.weight" || a[3] != "blk.0.attn_q.weight" || a[len(a)-1] != "blk.1.ffn_norm.weight" {
		t.Errorf("Names() = %v", a)
	}
	a[0] = "changed"
	if c.Names()[0] != "token_embd.weight" {
		t.Error("Names() shares its slice with the checkpoint")
	}
}

func TestCorrupt(t *testing.T) {
	set := func(i int, v int32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4*i:], uint32(v)); return b }
	}
	tests := []struct {
		name string
		mut  func([]byte) []byte
		kind error
		want string
	}{
		{"empty", func(b []byte) []byte { return b[:0] }, ErrTruncated, "shorter than the 28-byte llama2.c header"},
		{"short header", func(b []byte) []byte { return b[:20] }, ErrTruncated, "is 20 bytes"},
		{"dim zero", set(0, 0), ErrHeader, "dim = 0"},
		{"hidden negative", set(1, -5), ErrHeader, "hidden_dim = -5"},
		{"layers zero", set(2, 0), ErrHeader, "n_layers = 0"},
		{"heads zero", set(3, 0), ErrHeader, "n_heads = 0"},
		{"kv heads zero", set(4, 0), ErrHeader, "n_kv_heads = 0"},
		{"vocab zero", set(5, 0), ErrHeader, "vocab_size = 0"},
		{"seq zero", set(6, 0), ErrHeader, "seq_len = 0"},
		{"dim not divisible", set(3, 3), ErrHeader, "not divisible by n_heads 3"},
		{"kv heads not dividing", set(4, 3), ErrHeader, "not a multiple of n_kv_heads 3"},
		{"odd head size", func(b []byte) []byte { return set(4, 1)(set(3, 8)(b)) }, ErrHeader, "odd head size 1"},
		{"absurd", func(b []byte) []byte {
			for i, v := range []int32{1 << 30, math.MaxInt32, math.MaxInt32, 2, 2, math.MinInt32, math.MaxInt32} {
				set(i, v)(b)
			}
			return b
		}, ErrHeader, "more weights than any file can hold"},
		{"large dims", set(1, 1<<30), ErrTruncated, "implies"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, ErrTruncated, "RoPE tables"},
		{"one float short", func(b []byte) []byte { return b[:len(b)-4] }, ErrSize, "implies exactly"},
		{"trailing bytes", func(b []byte) []byte { return append(b, 0, 0, 0, 0) }, ErrSize, "is 4400 bytes"},
		{"unshared missing wcls", set(5, -10), ErrTruncated, "vocab_size 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mut(synth(tiny, true))
			c, err := Parse("bad.bin", b)
			if err == nil {
				t.Fatalf("accepted with config %+v", c.Config)
			}
			var le *Error
			if !errors.As(err, &le) || !errors.Is(err, tt.kind) {
				t.Fatalf("error %T %q, want a *llama2c.Error of kind %v", err, err, tt.kind)
			}
			if le.Path != "bad.bin" || !strings.HasPrefix(err.Error(), "bad.bin: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the file and contain %q", err, tt.want)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.bin")
	must(t, os.WriteFile(path, synth(tiny, true), 0o644))
	c, err := Open(path)
	must(t, err)
	emb, _ := c.Tensor("token_embd.weight")
	if first(emb) != 0 {
		t.Error("embedding does not start at the first weight")
	}
	must(t, c.Close())
	must(t, c.Close())
	if _, ok := c.Tensor("token_embd.weight"); ok {
		t.Error("Tensor works after Close")
	}

	short := filepath.Join(dir, "short.bin")
	must(t, os.WriteFile(short, []byte{1, 2, 3}, 0o644))
	if _, err := Open(short); !errors.Is(err, ErrTruncated) || !strings.HasPrefix(err.Error(), short+": ") {
		t.Errorf("short file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrHeader) {
		t.Errorf("directory: %v", err)
	}
}

func TestStories260K(t *testing.T) {
	dir := os.Getenv("FASTGEN_TEST_MODELS")
	if dir == "" {
		t.Skip("FASTGEN_TEST_MODELS is unset; set it to the folder holding stories260K.bin and .gguf (e.g. ../shared/models) to run this test")
	}
	c, err := Open(filepath.Join(dir, "stories260K.bin"))
	must(t, err)
	defer c.Close()
	want := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}
	if c.Config != want || !c.HasRoPETables {
		t.Fatalf("config %+v (RoPE tables %v), want %+v with tables", c.Config, c.HasRoPETables, want)
	}

	g, err := gguf.Open(filepath.Join(dir, "stories260K.gguf"))
	must(t, err)
	defer g.Close()

	// The embedding's first rows, checked separately so a failure here
	// points at the most basic mismatch.
	emb, _ := c.Tensor("token_embd.weight")
	gemb, err := g.Matrix("token_embd.weight")
	must(t, err)
	if !bytes.Equal(emb.Data[:4*4*64], gemb.Data[:4*4*64]) {
		t.Error("embedding rows 0..3 differ between the .bin and the .gguf")
	}

	names := c.Names()
	var gnames []string
	for _, ti := range g.Tensors {
		gnames = append(gnames, ti.Name)
	}
	if !slices.Equal(names, gnames) {
		t.Errorf("tensor names or their order differ:\n.bin  %v\n.gguf %v", names, gnames)
	}
	for _, name := range names {
		m, _ := c.Tensor(name)
		gm, err := g.Matrix(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if m.Type != gm.Type || m.Rows != gm.Rows || m.Cols != gm.Cols {
			t.Errorf("%s: .bin is %s %d×%d, .gguf is %s %d×%d", name, m.Type, m.Rows, m.Cols, gm.Type, gm.Rows, gm.Cols)
			continue
		}
		if !bytes.Equal(m.Data, gm.Data) {
			t.Errorf("%s: data differs between the .bin and the .gguf", name)
		}
	}
}
