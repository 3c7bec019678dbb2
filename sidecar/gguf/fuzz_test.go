package gguf

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

var writeSeeds = flag.Bool("gguf.seeds", false, "rewrite testdata/fuzz/FuzzOpen from fuzzSeeds")

// fuzzSeeds are small valid files plus a few corrupt variants, so the fuzzer
// starts from every section of the format.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	base := corruptBase(t)
	seeds["valid-base"] = base

	w := NewWriter()
	must(t, w.SetKV("a.nested", []Value{
		{Type: TypeArray, Elem: TypeString, V: []string{"x"}},
		{Type: TypeArray, Elem: TypeArray, V: []Value{{Type: TypeArray, Elem: TypeBool, V: []bool{true}}}},
	}))
	must(t, w.SetKV("f", float32(1)))
	must(t, w.SetKV("d", 2.0))
	must(t, w.SetKV("i8", int8(-1)))
	must(t, w.SetKV("u16", uint16(2)))
	must(t, w.SetAlignment(8))
	must(t, w.AddTensor("q4", tensor.Q4_0, []uint64{32}, make([]byte, 18)))
	must(t, w.AddTensor("h", tensor.F16, []uint64{2, 1, 1, 2}, make([]byte, 8)))
	must(t, w.AddTensor("b", tensor.BF16, []uint64{1}, make([]byte, 2)))
	seeds["valid-mixed"] = encode(t, w)

	w = NewWriter()
	must(t, w.SetKV("k", "v"))
	seeds["valid-metadata-only"] = encode(t, w)

	v2 := bytes.Clone(base)
	put32(v2, 4, 2)
	seeds["valid-v2"] = v2
	bad := bytes.Clone(base)
	put64(bad, after(t, bad, "k.two")+8, 1<<60)
	seeds["corrupt-count"] = bad
	bad = bytes.Clone(base)
	put32(bad, after(t, bad, "t.bbbb")+4+16, 3)
	seeds["corrupt-tensor-type"] = bad
	seeds["corrupt-truncated"] = base[:len(base)-40]
	return seeds
}

func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -gguf.seeds to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	must(t, os.MkdirAll(dir, 0o755))
	for name, b := range fuzzSeeds(t) {
		must(t, os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644))
	}
}

// FuzzOpen checks that no input panics or misreports its tensors, and that
// whatever parses survives a write/read cycle unchanged.
func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.gguf", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not a *gguf.Error: %v", err, err)
			}
			return
		}
		w := NewWriter()
		for _, kv := range file.KV {
			if err := w.SetKVTyped(kv.Key, kv.Value); err != nil {
				t.Fatalf("parsed value refused by the writer: %v", err)
			}
		}
		for _, ti := range file.Tensors {
			size, err := tensorBytes(ti.Type, ti.Dims)
			if err != nil || uint64(len(ti.Data)) != size || ti.Offset%file.Alignment != 0 {
				t.Fatalf("tensor %q: %d bytes, size %d (%v), offset %d", ti.Name, len(ti.Data), size, err, ti.Offset)
			}
			if _, err := file.Matrix(ti.Name); err != nil {
				t.Fatalf("Matrix(%q): %v", ti.Name, err)
			}
			if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, ti.Data); err != nil {
				t.Fatalf("parsed tensor refused by the writer: %v", err)
			}
		}
		once := encode(t, w)
		again, err := Parse("again.gguf", once)
		if err != nil {
			t.Fatalf("writer output does not parse: %v", err)
		}
		w2 := NewWriter()
		for _, kv := range again.KV {
			must(t, w2.SetKVTyped(kv.Key, kv.Value))
		}
		for _, ti := range again.Tensors {
			must(t, w2.AddTensor(ti.Name, ti.Type, ti.Dims, ti.Data))
		}
		if twice := encode(t, w2); !bytes.Equal(once, twice) {
			t.Fatal("write/read/write is not stable")
		}
	})
}
