package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

func encode(t testing.TB, w *Writer) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// allValues covers every scalar type, every scalar array type, empty arrays
// and arrays of arrays (including an empty one and a doubly nested one).
func allValues() []KV {
	return []KV{
		{"u8", Value{Type: TypeUint8, V: uint8(200)}},
		{"i8", Value{Type: TypeInt8, V: int8(-100)}},
		{"u16", Value{Type: TypeUint16, V: uint16(60000)}},
		{"i16", Value{Type: TypeInt16, V: int16(-30000)}},
		{"u32", Value{Type: TypeUint32, V: uint32(4000000000)}},
		{"i32", Value{Type: TypeInt32, V: int32(-2000000000)}},
		{"f32", Value{Type: TypeFloat32, V: float32(1.5e-5)}},
		{"bool.t", Value{Type: TypeBool, V: true}},
		{"bool.f", Value{Type: TypeBool, V: false}},
		{"str", Value{Type: TypeString, V: "héllo ▁world"}},
		{"str.empty", Value{Type: TypeString, V: ""}},
		{"u64", Value{Type: TypeUint64, V: uint64(math.MaxUint64)}},
		{"i64", Value{Type: TypeInt64, V: int64(math.MinInt64)}},
		{"f64", Value{Type: TypeFloat64, V: math.Pi}},
		{"a.u8", Value{Type: TypeArray, Elem: TypeUint8, V: []uint8{0, 1, 255}}},
		{"a.i8", Value{Type: TypeArray, Elem: TypeInt8, V: []int8{-128, 0, 127}}},
		{"a.u16", Value{Type: TypeArray, Elem: TypeUint16, V: []uint16{1, 65535}}},
		{"a.i16", Value{Type: TypeArray, Elem: TypeInt16, V: []int16{-32768, 5}}},
		{"a.u32", Value{Type: TypeArray, Elem: TypeUint32, V: []uint32{1, 2, 0xffffffff}}},
		{"a.i32", Value{Type: TypeArray, Elem: TypeInt32, V: []int32{-1, 2, 3}}},
		{"a.f32", Value{Type: TypeArray, Elem: TypeFloat32, V: []float32{-1.25, 0, 3e38}}},
		{"a.bool", Value{Type: TypeArray, Elem: TypeBool, V: []bool{true, false, true}}},
		{"a.str", Value{Type: TypeArray, Elem: TypeString, V: []string{"a", "", "<0x0A>"}}},
		{"a.u64", Value{Type: TypeArray, Elem: TypeUint64, V: []uint64{math.MaxUint64}}},
		{"a.i64", Value{Type: TypeArray, Elem: TypeInt64, V: []int64{math.MinInt64, 7}}},
		{"a.f64", Value{Type: TypeArray, Elem: TypeFloat64, V: []float64{math.E}}},
		{"a.empty", Value{Type: TypeArray, Elem: TypeFloat32, V: []float32{}}},
		{"a.nested", Value{Type: TypeArray, Elem: TypeArray, V: []Value{
			{Type: TypeArray, Elem: TypeString, V: []string{"x", "y"}},
			{Type: TypeArray, Elem: TypeInt32, V: []int32{}},
			{Type: TypeArray, Elem: TypeArray, V: []Value{
				{Type: TypeArray, Elem: TypeUint8, V: []uint8{9}},
			}},
		}}},
		{"a.nested.empty", Value{Type: TypeArray, Elem: TypeArray, V: []Value{}}},
	}
}

func TestRoundTripValues(t *testing.T) {
	w := NewWriter()
	want := allValues()
	for _, kv := range want {
		must(t, w.SetKVTyped(kv.Key, kv.Value))
	}
	f, err := Parse("values.gguf", encode(t, w))
	must(t, err)
	if f.Version != 3 || f.Alignment != DefaultAlignment || len(f.Tensors) != 0 {
		t.Errorf("version %d alignment %d tensors %d, want 3, %d, 0", f.Version, f.Alignment, len(f.Tensors), DefaultAlignment)
	}
	if !reflect.DeepEqual(f.KV, want) {
		for i := range min(len(f.KV), len(want)) {
			if !reflect.DeepEqual(f.KV[i], want[i]) {
				t.Errorf("entry %d: got %#v, want %#v", i, f.KV[i], want[i])
			}
		}
		t.Fatalf("got %d entries, want %d", len(f.KV), len(want))
	}
}

func TestSetKVNaturalTypes(t *testing.T) {
	tests := []struct {
		in   any
		want Value
	}{
		{"s", Value{Type: TypeString, V: "s"}},
		{true, Value{Type: TypeBool, V: true}},
		{uint8(1), Value{Type: TypeUint8, V: uint8(1)}},
		{int8(-1), Value{Type: TypeInt8, V: int8(-1)}},
		{uint16(1), Value{Type: TypeUint16, V: uint16(1)}},
		{int16(-1), Value{Type: TypeInt16, V: int16(-1)}},
		{uint32(1), Value{Type: TypeUint32, V: uint32(1)}},
		{int32(-1), Value{Type: TypeInt32, V: int32(-1)}},
		{uint64(1), Value{Type: TypeUint64, V: uint64(1)}},
		{int64(-1), Value{Type: TypeInt64, V: int64(-1)}},
		{float32(0.5), Value{Type: TypeFloat32, V: float32(0.5)}},
		{0.25, Value{Type: TypeFloat64, V: 0.25}},
		{42, Value{Type: TypeInt64, V: int64(42)}},
		{uint(42), Value{Type: TypeUint64, V: uint64(42)}},
		{[]string{"a"}, Value{Type: TypeArray, Elem: TypeString, V: []string{"a"}}},
		{[]float32{1}, Value{Type: TypeArray, Elem: TypeFloat32, V: []float32{1}}},
		{[]int32{1}, Value{Type: TypeArray, Elem: TypeInt32, V: []int32{1}}},
		{[]uint32{1}, Value{Type: TypeArray, Elem: TypeUint32, V: []uint32{1}}},
		{[]uint8{1}, Value{Type: TypeArray, Elem: TypeUint8, V: []uint8{1}}},
		{[]int64{1}, Value{Type: TypeArray, Elem: TypeInt64, V: []int64{1}}},
		{[]int{1, -2}, Value{Type: TypeArray, Elem: TypeInt64, V: []int64{1, -2}}},
		{[]bool{true}, Value{Type: TypeArray, Elem: TypeBool, V: []bool{true}}},
		{[]float64{1}, Value{Type: TypeArray, Elem: TypeFloat64, V: []float64{1}}},
		{[]Value{{Type: TypeArray, Elem: TypeUint16, V: []uint16{3}}},
			Value{Type: TypeArray, Elem: TypeArray, V: []Value{{Type: TypeArray, Elem: TypeUint16, V: []uint16{3}}}}},
		{Value{Type: TypeUint32, V: uint32(5)}, Value{Type: TypeUint32, V: uint32(5)}},
	}
	for _, tt := range tests {
		w := NewWriter()
		must(t, w.SetKV("k", tt.in))
		f, err := Parse("natural.gguf", encode(t, w))
		must(t, err)
		if got, _ := f.Lookup("k"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SetKV(%T %v): read back %#v, want %#v", tt.in, tt.in, got, tt.want)
		}
	}
}

func TestSetKVOrderAndReplace(t *testing.T) {
	w := NewWriter()
	must(t, w.SetKV("b", "one"))
	must(t, w.SetKV("a", uint32(1)))
	must(t, w.SetKV("c", true))
	must(t, w.SetKV("b", int32(-2))) // replaced in place, type may change
	f, err := Parse("order.gguf", encode(t, w))
	must(t, err)
	var keys []string
	for _, kv := range f.KV {
		keys = append(keys, kv.Key)
	}
	if strings.Join(keys, ",") != "b,a,c" {
		t.Errorf("keys in order %v, want b,a,c", keys)
	}
	if v, ok := f.Int("b"); !ok || v != -2 {
		t.Errorf(`Int("b") = %d, %v; want -2, true`, v, ok)
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
	}{
		{"unsupported Go type", func(w *Writer) error { return w.SetKV("k", struct{}{}) }},
		{"unsupported slice", func(w *Writer) error { return w.SetKV("k", [][]string{{"a"}}) }},
		{"typed mismatch", func(w *Writer) error { return w.SetKVTyped("k", Value{Type: TypeUint32, V: int32(1)}) }},
		{"typed int", func(w *Writer) error { return w.SetKVTyped("k", Value{Type: TypeInt64, V: 1}) }},
		{"array elem mismatch", func(w *Writer) error {
			return w.SetKVTyped("k", Value{Type: TypeArray, Elem: TypeInt32, V: []uint32{1}})
		}},
		{"nested non-array", func(w *Writer) error {
			return w.SetKVTyped("k", Value{Type: TypeArray, Elem: TypeArray, V: []Value{{Type: TypeUint8, V: uint8(1)}}})
		}},
		{"unknown type", func(w *Writer) error { return w.SetKVTyped("k", Value{Type: 13, V: uint8(1)}) }},
		{"alignment 3", func(w *Writer) error { return w.SetAlignment(3) }},
		{"alignment 0", func(w *Writer) error { return w.SetAlignment(0) }},
		{"alignment as string", func(w *Writer) error { return w.SetKV(KeyAlignment, "32") }},
		{"tensor size", func(w *Writer) error { return w.AddTensor("t", tensor.F32, []uint64{4}, make([]byte, 15)) }},
		{"tensor type", func(w *Writer) error { return w.AddTensor("t", tensor.DType(3), []uint64{32}, make([]byte, 20)) }},
		{"tensor block", func(w *Writer) error { return w.AddTensor("t", tensor.Q8_0, []uint64{16}, make([]byte, 17)) }},
		{"tensor no dims", func(w *Writer) error { return w.AddTensor("t", tensor.F32, nil, nil) }},
		{"tensor 5 dims", func(w *Writer) error { return w.AddTensor("t", tensor.F32, []uint64{1, 1, 1, 1, 1}, make([]byte, 4)) }},
		{"tensor overflow", func(w *Writer) error {
			return w.AddTensor("t", tensor.F32, []uint64{1 << 40, 1 << 40}, nil)
		}},
		{"tensor twice", func(w *Writer) error {
			must(t, w.AddTensor("t", tensor.F32, []uint64{1}, make([]byte, 4)))
			return w.AddTensor("t", tensor.F32, []uint64{1}, make([]byte, 4))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(NewWriter()); err == nil {
				t.Error("accepted")
			} else if !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Errorf("error %q does not say where it comes from", err)
			}
		})
	}
}

var allDTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.Q4_0, tensor.Q8_0, tensor.Q4_K, tensor.Q6_K, tensor.BF16}

func TestRoundTripTensors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, align := range []uint64{0, 1, 8, 64, 4096} {
		w := NewWriter()
		want := DefaultAlignment
		if align != 0 {
			must(t, w.SetAlignment(align))
			want = int(align)
		}
		must(t, w.SetKV("general.architecture", "llama"))
		type added struct {
			name string
			dt   tensor.DType
			dims []uint64
			data []byte
		}
		var all []added
		for _, dt := range allDTypes {
			bs := uint64(dt.BlockSize())
			for _, dims := range [][]uint64{{bs}, {2 * bs, 3}, {bs, 2, 3}, {bs, 1, 2, 2}} {
				size, err := tensorBytes(dt, dims)
				must(t, err)
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				name := dt.String() + "." + string(rune('0'+len(dims)))
				must(t, w.AddTensor(name, dt, dims, data))
				all = append(all, added{name, dt, dims, data})
			}
		}
		path := filepath.Join(t.TempDir(), "tensors.gguf")
		must(t, w.WriteFile(path))
		f, err := Open(path)
		must(t, err)
		if f.Alignment != uint64(want) || f.DataOffset%uint64(want) != 0 {
			t.Errorf("alignment %d, data offset %d; want alignment %d", f.Alignment, f.DataOffset, want)
		}
		if len(f.Tensors) != len(all) {
			t.Fatalf("%d tensors, want %d", len(f.Tensors), len(all))
		}
		for i, a := range all {
			ti := &f.Tensors[i]
			if ti.Name != a.name || ti.Type != a.dt || !reflect.DeepEqual(ti.Dims, a.dims) || !bytes.Equal(ti.Data, a.data) {
				t.Errorf("align %d: tensor %d = %s %s %v (%d bytes), want %s %s %v (%d bytes)", align, i,
					ti.Name, ti.Type, ti.Dims, len(ti.Data), a.name, a.dt, a.dims, len(a.data))
			}
			if ti.Offset%uint64(want) != 0 {
				t.Errorf("tensor %s offset %d not aligned to %d", ti.Name, ti.Offset, want)
			}
			m, err := f.Matrix(a.name)
			must(t, err)
			rows := 1
			for _, d := range a.dims[1:] {
				rows *= int(d)
			}
			if m.Type != a.dt || m.Cols != int(a.dims[0]) || m.Rows != rows || len(m.Data) != m.Rows*a.dt.RowBytes(m.Cols) {
				t.Errorf("Matrix(%s) = %s %d×%d (%d bytes)", a.name, m.Type, m.Rows, m.Cols, len(m.Data))
			}
		}
		if _, err := f.Matrix("missing"); !errors.Is(err, ErrNoTensor) {
			t.Errorf("Matrix(missing) error %v, want ErrNoTensor", err)
		}
		must(t, f.Close())
		must(t, f.Close())
		if _, err := f.Matrix(all[0].name); !errors.Is(err, ErrClosed) {
			t.Errorf("Matrix after Close: error %v, want ErrClosed", err)
		}
	}
}

func TestGetters(t *testing.T) {
	w := NewWriter()
	for _, kv := range allValues() {
		must(t, w.SetKVTyped(kv.Key, kv.Value))
	}
	must(t, w.SetKV("neg32", int32(-5)))
	must(t, w.SetKV("pos32", int32(5)))
	f, err := Parse("getters.gguf", encode(t, w))
	must(t, err)

	uints := []struct {
		key  string
		want uint64
		ok   bool
	}{
		{"u8", 200, true}, {"u32", 4000000000, true}, {"u64", math.MaxUint64, true},
		{"pos32", 5, true}, {"neg32", 0, false}, {"i64", 0, false}, {"f32", 0, false}, {"str", 0, false}, {"nope", 0, false},
	}
	for _, tt := range uints {
		if got, ok := f.Uint(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Uint(%q) = %d, %v; want %d, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	ints := []struct {
		key  string
		want int64
		ok   bool
	}{
		{"i8", -100, true}, {"u32", 4000000000, true}, {"neg32", -5, true}, {"i64", math.MinInt64, true},
		{"u64", 0, false}, {"bool.t", 0, false},
	}
	for _, tt := range ints {
		if got, ok := f.Int(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	floats := []struct {
		key  string
		want float64
		ok   bool
	}{
		{"f32", float64(float32(1.5e-5)), true}, {"f64", math.Pi, true}, {"neg32", -5, true}, {"u16", 60000, true}, {"str", 0, false},
	}
	for _, tt := range floats {
		if got, ok := f.Float(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Float(%q) = %g, %v; want %g, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if s, ok := f.String("str"); !ok || s != "héllo ▁world" {
		t.Errorf("String(str) = %q, %v", s, ok)
	}
	if _, ok := f.String("u8"); ok {
		t.Error("String(u8) succeeded")
	}
	if b, ok := f.Bool("bool.t"); !ok || !b {
		t.Errorf("Bool(bool.t) = %v, %v", b, ok)
	}
	if _, ok := f.Bool("u8"); ok {
		t.Error("Bool(u8) succeeded")
	}
	if s, ok := f.Strings("a.str"); !ok || !reflect.DeepEqual(s, []string{"a", "", "<0x0A>"}) {
		t.Errorf("Strings(a.str) = %q, %v", s, ok)
	}
	if _, ok := f.Strings("a.i32"); ok {
		t.Error("Strings(a.i32) succeeded")
	}
	if s, ok := f.Float32s("a.f32"); !ok || len(s) != 3 || s[0] != -1.25 {
		t.Errorf("Float32s(a.f32) = %v, %v", s, ok)
	}
	int32s := []struct {
		key  string
		want []int32
		ok   bool
	}{
		{"a.i32", []int32{-1, 2, 3}, true},
		{"a.u8", []int32{0, 1, 255}, true},
		{"a.i16", []int32{-32768, 5}, true},
		{"a.u32", nil, false}, // 0xffffffff does not fit
		{"a.u64", nil, false},
		{"a.f32", nil, false},
		{"u8", nil, false},
	}
	for _, tt := range int32s {
		if got, ok := f.Int32s(tt.key); !reflect.DeepEqual(got, tt.want) || ok != tt.ok {
			t.Errorf("Int32s(%q) = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter()
	must(t, w.SetKV("k", "v"))
	path := filepath.Join(dir, "m.gguf")
	must(t, os.WriteFile(path, []byte("old contents"), 0o644))
	must(t, w.WriteFile(path))
	f, err := Open(path)
	must(t, err)
	f.Close()

	// Renaming onto a directory fails after the data was written: the
	// temporary file must not be left behind.
	blocker := filepath.Join(dir, "blocked.gguf")
	must(t, os.Mkdir(blocker, 0o755))
	if err := w.WriteFile(blocker); err == nil {
		t.Fatal("WriteFile onto a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "blocked.gguf,m.gguf" {
		t.Errorf("directory holds %v after a failed write; want only blocked.gguf and m.gguf", names)
	}
	if err := w.WriteFile(filepath.Join(dir, "no", "such", "dir.gguf")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// corruptBase is a small valid file whose parts the corruption table finds
// by searching for their unique names.
func corruptBase(t testing.TB) []byte {
	w := NewWriter()
	must(t, w.SetAlignment(32))
	must(t, w.SetKV("k.one", uint32(7)))
	must(t, w.SetKV("k.two", []string{"x", "y"}))
	must(t, w.SetKV("k.arr", []int32{1, 2}))
	must(t, w.AddTensor("t.aaaa", tensor.F32, []uint64{8, 2}, make([]byte, 64)))
	must(t, w.AddTensor("t.bbbb", tensor.Q8_0, []uint64{32, 1}, make([]byte, 34)))
	return encode(t, w)
}

// after returns the offset just past the first occurrence of s.
func after(t testing.TB, b []byte, s string) int {
	i := bytes.Index(b, []byte(s))
	if i < 0 {
		t.Fatalf("%q not found", s)
	}
	return i + len(s)
}

func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

func TestCorrupt(t *testing.T) {
	type mut func(t testing.TB, b []byte) []byte
	// Offsets inside the tensor info of "t.bbbb": n_dims, dims, type, offset.
	bInfo := func(t testing.TB, b []byte) int { return after(t, b, "t.bbbb") }
	tests := []struct {
		name string
		mut  mut
		kind error
		want string
	}{
		{"magic", func(t testing.TB, b []byte) []byte { b[0] = 'X'; return b }, ErrNotGGUF, `starts with "XGUF"`},
		{"empty", func(t testing.TB, b []byte) []byte { return b[:0] }, ErrTruncated, "magic number"},
		{"version 1", func(t testing.TB, b []byte) []byte { put32(b, 4, 1); return b }, ErrVersion, "version 1"},
		{"version 0", func(t testing.TB, b []byte) []byte { put32(b, 4, 0); return b }, ErrVersion, "version 0,"},
		{"version 4", func(t testing.TB, b []byte) []byte { put32(b, 4, 4); return b }, ErrVersion, "version 4"},
		{"big-endian", func(t testing.TB, b []byte) []byte { put32(b, 4, 3<<24); return b }, ErrVersion, "big-endian"},
		{"truncated header", func(t testing.TB, b []byte) []byte { return b[:12] }, ErrTruncated, "tensor count"},
		{"truncated kv", func(t testing.TB, b []byte) []byte { return b[:after(t, b, "k.two")+10] }, ErrTruncated, `"k.two"`},
		{"truncated tensor info", func(t testing.TB, b []byte) []byte { return b[:bInfo(t, b)+6] }, ErrTruncated, `tensor "t.bbbb"`},
		{"kv count", func(t testing.TB, b []byte) []byte { put64(b, 16, 1<<60); return b }, ErrTruncated, "1152921504606846976 metadata entries"},
		{"tensor count", func(t testing.TB, b []byte) []byte { put64(b, 8, 1<<60); return b }, ErrTruncated, "1152921504606846976 tensors"},
		{"key length", func(t testing.TB, b []byte) []byte { put64(b, 24, 1<<62); return b }, ErrTruncated, "runs past the end"},
		{"string length", func(t testing.TB, b []byte) []byte {
			put64(b, after(t, b, "k.two")+4+4+8, 1<<40) // type, elem type, count, then "x"'s length
			return b
		}, ErrTruncated, `element 0 of metadata key "k.two" has length 1099511627776`},
		{"string array count", func(t testing.TB, b []byte) []byte {
			put64(b, after(t, b, "k.two")+8, 1<<60)
			return b
		}, ErrTruncated, "claims 1152921504606846976 string elements"},
		{"int array count", func(t testing.TB, b []byte) []byte {
			put64(b, after(t, b, "k.arr")+8, 1<<62)
			return b
		}, ErrTruncated, "cannot fit"},
		{"duplicate key", func(t testing.TB, b []byte) []byte {
			copy(b[after(t, b, "k.two")-5:], "k.one")
			return b
		}, ErrDuplicate, `key "k.one" appears twice`},
		{"duplicate tensor", func(t testing.TB, b []byte) []byte {
			copy(b[bInfo(t, b)-6:], "t.aaaa")
			return b
		}, ErrDuplicate, `tensor name "t.aaaa" appears twice`},
		{"value type", func(t testing.TB, b []byte) []byte { put32(b, after(t, b, "k.one"), 13); return b }, ErrValueType, "unknown value type 13"},
		{"array elem type", func(t testing.TB, b []byte) []byte { put32(b, after(t, b, "k.arr")+4, 99); return b }, ErrValueType, "unknown element type 99"},
		{"tensor type q4_1", func(t testing.TB, b []byte) []byte { put32(b, bInfo(t, b)+4+16, 3); return b }, ErrTensorType, "q4_1 (3)"},
		{"tensor type 99", func(t testing.TB, b []byte) []byte { put32(b, bInfo(t, b)+4+16, 99); return b }, ErrTensorType, "type 99"},
		{"dims overflow", func(t testing.TB, b []byte) []byte {
			put64(b, bInfo(t, b)+4, 1<<40)
			put64(b, bInfo(t, b)+12, 1<<40)
			return b
		}, ErrShape, "more elements than fit"},
		{"zero dim hiding overflow", func(t testing.TB, b []byte) []byte {
			put64(b, bInfo(t, b)+4, 0)
			put64(b, bInfo(t, b)+12, 1<<63)
			return b
		}, ErrShape, "more elements than fit"},
		{"block multiple", func(t testing.TB, b []byte) []byte { put64(b, bInfo(t, b)+4, 33); return b }, ErrShape, "not a multiple of the q8_0 block size 32"},
		{"five dims", func(t testing.TB, b []byte) []byte { put32(b, bInfo(t, b), 5); return b }, ErrShape, "5 dimensions"},
		{"zero dims", func(t testing.TB, b []byte) []byte { put32(b, bInfo(t, b), 0); return b }, ErrShape, "0 dimensions"},
		{"misaligned offset", func(t testing.TB, b []byte) []byte {
			off := bInfo(t, b) + 4 + 16 + 4
			put64(b, off, binary.LittleEndian.Uint64(b[off:])+4)
			return b
		}, ErrBounds, "not a multiple of the alignment 32"},
		{"offset past end", func(t testing.TB, b []byte) []byte { put64(b, bInfo(t, b)+4+16+4, 1<<20); return b }, ErrBounds, "runs past the end of the file"},
		{"offset wraps", func(t testing.TB, b []byte) []byte { put64(b, bInfo(t, b)+4+16+4, math.MaxUint64-31); return b }, ErrBounds, "runs past the end"},
		{"truncated data", func(t testing.TB, b []byte) []byte { return b[:len(b)-40] }, ErrBounds, `tensor "t.bbbb" data [offset`},
		{"alignment zero", func(t testing.TB, b []byte) []byte { put32(b, after(t, b, KeyAlignment)+4, 0); return b }, ErrAlignment, "not a non-zero power of two"},
		{"alignment three", func(t testing.TB, b []byte) []byte { put32(b, after(t, b, KeyAlignment)+4, 3); return b }, ErrAlignment, "is 3"},
		{"alignment type", func(t testing.TB, b []byte) []byte {
			put32(b, after(t, b, KeyAlignment), uint32(TypeFloat32))
			return b
		}, ErrAlignment, "not a non-negative integer"},
		{"nesting", func(t testing.TB, _ []byte) []byte { return deeplyNested(40) }, ErrMalformed, "nests arrays more than 16 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mut(t, corruptBase(t))
			f, err := Parse("bad.gguf", b)
			if err == nil {
				t.Fatalf("accepted: %d tensors", len(f.Tensors))
			}
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("error %T %v is not a *gguf.Error", err, err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q is not %v", err, tt.kind)
			}
			if ge.Path != "bad.gguf" || !strings.HasPrefix(err.Error(), "bad.gguf: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the file and contain %q", err, tt.want)
			}
		})
	}
}

// deeplyNested builds by hand what the Writer refuses to produce: one key
// holding arrays of arrays depth levels deep.
func deeplyNested(depth int) []byte {
	b := []byte(Magic)
	b = binary.LittleEndian.AppendUint32(b, 3)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = append(b, 'k')
	b = binary.LittleEndian.AppendUint32(b, uint32(TypeArray))
	for range depth {
		b = binary.LittleEndian.AppendUint32(b, uint32(TypeArray))
		b = binary.LittleEndian.AppendUint64(b, 1)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(TypeUint8))
	return binary.LittleEndian.AppendUint64(b, 0)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrNotGGUF) {
		t.Errorf("directory: %v", err)
	}
	small := filepath.Join(dir, "small.gguf")
	must(t, os.WriteFile(small, []byte("GGUF\x03\x00"), 0o644))
	if _, err := Open(small); !errors.Is(err, ErrTruncated) || !strings.HasPrefix(err.Error(), small+": ") {
		t.Errorf("small file: %v", err)
	}
	bad := filepath.Join(dir, "bad.gguf")
	b := corruptBase(t)
	put32(b, 4, 1)
	must(t, os.WriteFile(bad, b, 0o644))
	if _, err := Open(bad); !errors.Is(err, ErrVersion) {
		t.Errorf("version 1 file: %v", err)
	}
}

// Zero extents are legal in ggml; such a tensor has no data and an empty
// matrix view.
func TestZeroSizedTensor(t *testing.T) {
	w := NewWriter()
	must(t, w.AddTensor("empty", tensor.Q8_0, []uint64{32, 0}, nil))
	must(t, w.AddTensor("after", tensor.F32, []uint64{1}, []byte{1, 2, 3, 4}))
	f, err := Parse("zero.gguf", encode(t, w))
	must(t, err)
	m, err := f.Matrix("empty")
	must(t, err)
	if m.Rows != 0 || m.Cols != 32 || len(m.Data) != 0 {
		t.Errorf("empty tensor: %d×%d with %d bytes", m.Rows, m.Cols, len(m.Data))
	}
	if a, _ := f.Tensor("after"); !bytes.Equal(a.Data, []byte{1, 2, 3, 4}) {
		t.Errorf("tensor after the empty one reads %v", a.Data)
	}
}

func TestVersion2(t *testing.T) {
	b := corruptBase(t)
	put32(b, 4, 2)
	f, err := Parse("v2.gguf", b)
	must(t, err)
	if f.Version != 2 || len(f.Tensors) != 2 {
		t.Errorf("version %d with %d tensors, want 2 with 2", f.Version, len(f.Tensors))
	}
}
