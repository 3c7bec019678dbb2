// Package gguf reads and writes GGUF model files (versions 2 and 3).
//
// The reader maps the file read-only and hands out tensor data as slices of
// that mapping, so opening a multi-gigabyte model costs page-table entries,
// not memory. Every length and count in the file is checked against the bytes
// that remain before anything is allocated, so a corrupt or hostile file
// fails with an *Error instead of a panic or an enormous allocation.
//
// Metadata values keep their GGUF type next to their Go value (see Value), so
// a file read and written again keeps the exact types llama.cpp expects.
package gguf

import (
	"errors"
	"fmt"
	"math"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment applies when a file has no general.alignment key.
const DefaultAlignment = 32

// KeyAlignment names the metadata key that overrides DefaultAlignment.
const KeyAlignment = "general.alignment"

// maxDims matches GGML_MAX_DIMS: ggml cannot represent more dimensions.
const maxDims = 4

// ValueType is a GGUF metadata value type id.
type ValueType uint32

// The GGUF metadata value types, with the ids the specification assigns.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8: "uint8", TypeInt8: "int8", TypeUint16: "uint16", TypeInt16: "int16",
	TypeUint32: "uint32", TypeInt32: "int32", TypeFloat32: "float32", TypeBool: "bool",
	TypeString: "string", TypeArray: "array", TypeUint64: "uint64", TypeInt64: "int64",
	TypeFloat64: "float64",
}

// Valid reports whether t is a value type the specification defines.
func (t ValueType) Valid() bool { return t <= TypeFloat64 }

func (t ValueType) String() string {
	if t.Valid() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded size of a fixed-size scalar, or 0 for strings and arrays.
func (t ValueType) size() uint64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is one metadata value with its GGUF type.
//
// For a scalar, V holds the Go type of the same name: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64 or float64.
//
// For an array, Type is TypeArray, Elem is the element type and V is a typed
// slice: []uint8 ... []float64, []bool or []string for scalar elements, and
// []Value (each itself an array Value) for arrays of arrays. Elem is kept
// separately so that an empty array still records its element type.
//
// Slices returned by the reader are shared with the File; treat them as
// read-only.
type Value struct {
	Type ValueType
	Elem ValueType
	V    any
}

// Len is the number of elements of an array value, or 0 for a scalar.
func (v Value) Len() int {
	switch s := v.V.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []bool:
		return len(s)
	case []string:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	case []Value:
		return len(s)
	}
	return 0
}

func (v Value) String() string {
	if v.Type == TypeArray {
		return fmt.Sprintf("[%d]%s", v.Len(), v.Elem)
	}
	return fmt.Sprintf("%s(%v)", v.Type, v.V)
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor. Data is exactly the tensor's bytes, a
// slice of the read-only mapping: it is valid until File.Close and must not
// be written to.
type TensorInfo struct {
	Name string
	// Dims lists the extents fastest-varying first, as ggml does: Dims[0]
	// is the length of a row.
	Dims []uint64
	Type tensor.DType
	// Offset is relative to the start of the tensor data section, as stored.
	Offset uint64
	Data   []byte
}

// Elements is the product of Dims.
func (ti *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range ti.Dims {
		n *= d
	}
	return n
}

// File is an opened GGUF file.
type File struct {
	Path    string
	Version uint32
	// KV holds the metadata in file order.
	KV      []KV
	Tensors []TensorInfo
	// Alignment is the tensor data alignment in bytes.
	Alignment uint64
	// DataOffset is where the tensor data section starts in the file.
	DataOffset uint64

	kvIndex     map[string]int
	tensorIndex map[string]int
	unmap       func() error
	closed      bool
}

// Close releases the mapping. Tensor data obtained from the file must not be
// used afterwards. Close is safe to call more than once.
func (f *File) Close() error {
	if f == nil || f.closed {
		return nil
	}
	f.closed = true
	unmap := f.unmap
	f.unmap = nil
	for i := range f.Tensors {
		f.Tensors[i].Data = nil
	}
	if unmap == nil {
		return nil
	}
	return unmap()
}

// Lookup returns the metadata value stored under key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns a string value.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Lookup(key)
	if !ok || v.Type != TypeString {
		return "", false
	}
	return v.V.(string), true
}

// Bool returns a bool value.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Lookup(key)
	if !ok || v.Type != TypeBool {
		return false, false
	}
	return v.V.(bool), true
}

// Uint returns an integer value of any integer type, provided it is not
// negative: converters disagree on signedness for counts such as
// llama.context_length, and callers only care about the number.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, false
	}
	return scalarUint(v)
}

// Int returns an integer value of any integer type, provided it fits int64.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, false
	}
	return scalarInt(v)
}

// Float returns a float32, float64 or integer value as float64.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, false
	}
	switch x := v.V.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	if u, ok := scalarUint(v); ok {
		return float64(u), true
	}
	if i, ok := scalarInt(v); ok {
		return float64(i), true
	}
	return 0, false
}

// Strings returns an array of strings. The slice is shared; do not modify it.
func (f *File) Strings(key string) ([]string, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return nil, false
	}
	s, ok := v.V.([]string)
	return s, ok
}

// Float32s returns an array of float32. The slice is shared; do not modify it.
func (f *File) Float32s(key string) ([]float32, bool) {
	v, ok := f.Lookup(key)
	if !ok {
		return nil, false
	}
	s, ok := v.V.([]float32)
	return s, ok
}

// Int32s returns an integer array as []int32. An int32 array is returned
// shared (do not modify it); an array of another integer type is converted
// when every element fits, because converters store token types and ids with
// varying integer widths.
func (f *File) Int32s(key string) ([]int32, bool) {
	v, ok := f.Lookup(key)
	if !ok || v.Type != TypeArray {
		return nil, false
	}
	switch s := v.V.(type) {
	case []int32:
		return s, true
	case []uint8:
		return convertInts(s)
	case []int8:
		return convertInts(s)
	case []uint16:
		return convertInts(s)
	case []int16:
		return convertInts(s)
	case []uint32:
		return convertInts(s)
	case []uint64:
		return convertInts(s)
	case []int64:
		return convertInts(s)
	}
	return nil, false
}

type integer interface {
	~uint8 | ~int8 | ~uint16 | ~int16 | ~uint32 | ~int32 | ~uint64 | ~int64
}

func convertInts[T integer](s []T) ([]int32, bool) {
	out := make([]int32, len(s))
	for i, x := range s {
		y := int32(x)
		// Round-tripping through int32 and comparing signs catches both
		// truncation and the wrap of large unsigned values.
		if T(y) != x || (y < 0) != (x < 0) {
			return nil, false
		}
		out[i] = y
	}
	return out, true
}

func scalarUint(v Value) (uint64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return nonNegative(int64(x))
	case int16:
		return nonNegative(int64(x))
	case int32:
		return nonNegative(int64(x))
	case int64:
		return nonNegative(x)
	}
	return 0, false
}

func nonNegative(x int64) (uint64, bool) {
	if x < 0 {
		return 0, false
	}
	return uint64(x), true
}

func scalarInt(v Value) (int64, bool) {
	switch x := v.V.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

// Tensor returns the named tensor's description.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensorIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// Matrix views the named tensor as a row-major matrix: Cols is Dims[0] and
// Rows the product of the other dimensions, which is how ggml lays out data.
// The matrix shares the file's mapping.
func (f *File) Matrix(name string) (*tensor.Matrix, error) {
	ti, ok := f.Tensor(name)
	if !ok {
		return nil, f.errorf(ErrNoTensor, "there is no tensor named %q", name)
	}
	if f.closed {
		return nil, f.errorf(ErrClosed, "tensor %q was requested after the file was closed", name)
	}
	rows := uint64(1)
	for _, d := range ti.Dims[1:] {
		rows *= d
	}
	cols := ti.Dims[0]
	if rows > math.MaxInt || cols > math.MaxInt {
		return nil, f.errorf(ErrShape, "tensor %q has %d×%d elements, too many to index on this machine", name, rows, cols)
	}
	return &tensor.Matrix{Type: ti.Type, Rows: int(rows), Cols: int(cols), Data: ti.Data}, nil
}

// Error is a problem with a GGUF file: Error() is one sentence naming the
// file and what is wrong with it. Kind is one of the Err* sentinels, so
// callers can branch with errors.Is.
type Error struct {
	Path    string
	Problem string
	Kind    error
}

func (e *Error) Error() string { return e.Path + ": " + e.Problem }

// Unwrap exposes Kind to errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

// Kinds of Error.
var (
	ErrNotGGUF    = errors.New("not a GGUF file")
	ErrVersion    = errors.New("unsupported GGUF version")
	ErrTruncated  = errors.New("truncated GGUF file")
	ErrDuplicate  = errors.New("duplicate key or tensor name")
	ErrValueType  = errors.New("unknown metadata value type")
	ErrTensorType = errors.New("unknown tensor type")
	ErrShape      = errors.New("invalid tensor shape")
	ErrAlignment  = errors.New("invalid alignment")
	ErrBounds     = errors.New("tensor data out of place")
	ErrMalformed  = errors.New("malformed GGUF file")
	ErrNoTensor   = errors.New("no such tensor")
	ErrClosed     = errors.New("file closed")
)

func (f *File) errorf(kind error, format string, args ...any) *Error {
	return &Error{Path: f.Path, Problem: fmt.Sprintf(format, args...), Kind: kind}
}
