package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/fastgen/fastgen/sidecar/tensor"
)

// Writer builds a GGUF version 3 file: metadata in insertion order, then
// tensors in the order they were added, each aligned.
type Writer struct {
	kv      []KV
	kvIndex map[string]int
	tensors []TensorInfo
	tIndex  map[string]int
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{kvIndex: map[string]int{}, tIndex: map[string]int{}}
}

// SetKV stores value under key with the GGUF type that matches its Go type:
// string, bool, uint8 ... int64, float32, float64, slices of those, []Value
// for arrays of arrays, or a Value as is. int and uint become int64 and
// uint64; use SetKVTyped (or convert first, e.g. uint32(n)) where a reader
// expects a narrower type, as llama.cpp does for most integer keys. Setting
// an existing key replaces its value and keeps its position.
func (w *Writer) SetKV(key string, value any) error {
	v, err := toValue(value)
	if err != nil {
		return fmt.Errorf("gguf: metadata key %q: %w", key, err)
	}
	return w.SetKVTyped(key, v)
}

// SetKVTyped stores a Value whose type is given explicitly. V must hold the
// Go type documented on Value for that Type (and Elem, for arrays).
func (w *Writer) SetKVTyped(key string, v Value) error {
	if err := checkValue(v, 0); err != nil {
		return fmt.Errorf("gguf: metadata key %q: %w", key, err)
	}
	if key == KeyAlignment {
		a, ok := scalarUint(v)
		if !ok || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: %s must be a non-zero power of two, not %v", KeyAlignment, v)
		}
	}
	if i, ok := w.kvIndex[key]; ok {
		w.kv[i].Value = v
		return nil
	}
	w.kvIndex[key] = len(w.kv)
	w.kv = append(w.kv, KV{Key: key, Value: v})
	return nil
}

// SetAlignment sets the tensor data alignment (stored as general.alignment,
// uint32, the type llama.cpp reads).
func (w *Writer) SetAlignment(a uint64) error {
	if a > math.MaxUint32 {
		return fmt.Errorf("gguf: alignment %d does not fit uint32", a)
	}
	return w.SetKVTyped(KeyAlignment, Value{Type: TypeUint32, V: uint32(a)})
}

func (w *Writer) alignment() uint64 {
	if i, ok := w.kvIndex[KeyAlignment]; ok {
		a, _ := scalarUint(w.kv[i].Value)
		return a
	}
	return DefaultAlignment
}

// AddTensor appends a tensor. data must be exactly the encoded size of dims
// elements of type t; it is referenced, not copied, until WriteTo.
func (w *Writer) AddTensor(name string, t tensor.DType, dims []uint64, data []byte) error {
	if _, dup := w.tIndex[name]; dup {
		return fmt.Errorf("gguf: tensor %q added twice", name)
	}
	if !t.Valid() {
		return fmt.Errorf("gguf: tensor %q: unsupported tensor type %s", name, ggmlTypeName(uint32(t)))
	}
	if len(dims) == 0 || len(dims) > maxDims {
		return fmt.Errorf("gguf: tensor %q has %d dimensions; ggml supports 1 to %d", name, len(dims), maxDims)
	}
	size, err := tensorBytes(t, dims)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q with dimensions %v %w", name, dims, err)
	}
	if uint64(len(data)) != size {
		return fmt.Errorf("gguf: tensor %q (%s, dimensions %v) needs %d bytes of data, got %d", name, t, dims, size, len(data))
	}
	w.tIndex[name] = len(w.tensors)
	w.tensors = append(w.tensors, TensorInfo{Name: name, Type: t, Dims: append([]uint64(nil), dims...), Data: data})
	return nil
}

// countingWriter tracks the write position for padding and the result of
// WriteTo, and keeps the first error so encoding code need not check each call.
type countingWriter struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (c *countingWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *countingWriter) u8(v uint8) { c.buf[0] = v; c.write(c.buf[:1]) }
func (c *countingWriter) u16(v uint16) {
	binary.LittleEndian.PutUint16(c.buf[:], v)
	c.write(c.buf[:2])
}
func (c *countingWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.buf[:], v)
	c.write(c.buf[:4])
}
func (c *countingWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(c.buf[:], v)
	c.write(c.buf[:8])
}
func (c *countingWriter) str(s string) {
	c.u64(uint64(len(s)))
	if c.err == nil {
		n, err := c.w.WriteString(s)
		c.n += int64(n)
		c.err = err
	}
}

func (c *countingWriter) pad(align uint64) {
	var zero [64]byte
	for r := (align - uint64(c.n)%align) % align; r > 0 && c.err == nil; {
		k := min(r, uint64(len(zero)))
		c.write(zero[:k])
		r -= k
	}
}

// WriteTo writes the file to out. The layout matches llama.cpp's writer:
// each tensor's data is padded to the alignment.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	align := w.alignment()
	c := &countingWriter{w: bufio.NewWriterSize(out, 1<<16)}
	c.write([]byte(Magic))
	c.u32(3)
	c.u64(uint64(len(w.tensors)))
	c.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		c.str(kv.Key)
		c.u32(uint32(kv.Value.Type))
		writeValue(c, kv.Value)
	}
	var offset uint64
	for _, t := range w.tensors {
		c.str(t.Name)
		c.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			c.u64(d)
		}
		c.u32(uint32(t.Type))
		c.u64(offset)
		offset, _ = alignUp(offset+uint64(len(t.Data)), align)
	}
	// Only tensor data needs aligning; a file of metadata alone ends here,
	// which also keeps a huge general.alignment from costing huge padding.
	if len(w.tensors) > 0 {
		c.pad(align)
	}
	for _, t := range w.tensors {
		c.write(t.Data)
		c.pad(align)
	}
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.n, c.err
}

func writeValue(c *countingWriter, v Value) {
	switch x := v.V.(type) {
	case uint8:
		c.u8(x)
	case int8:
		c.u8(uint8(x))
	case bool:
		if x {
			c.u8(1)
		} else {
			c.u8(0)
		}
	case uint16:
		c.u16(x)
	case int16:
		c.u16(uint16(x))
	case uint32:
		c.u32(x)
	case int32:
		c.u32(uint32(x))
	case float32:
		c.u32(math.Float32bits(x))
	case uint64:
		c.u64(x)
	case int64:
		c.u64(uint64(x))
	case float64:
		c.u64(math.Float64bits(x))
	case string:
		c.str(x)
	default:
		c.u32(uint32(v.Elem))
		c.u64(uint64(v.Len()))
		writeArray(c, v.V)
	}
}

func writeArray(c *countingWriter, s any) {
	switch s := s.(type) {
	case []uint8:
		c.write(s)
	case []int8:
		for _, x := range s {
			c.u8(uint8(x))
		}
	case []bool:
		for _, x := range s {
			writeValue(c, Value{V: x})
		}
	case []uint16:
		for _, x := range s {
			c.u16(x)
		}
	case []int16:
		for _, x := range s {
			c.u16(uint16(x))
		}
	case []uint32:
		for _, x := range s {
			c.u32(x)
		}
	case []int32:
		for _, x := range s {
			c.u32(uint32(x))
		}
	case []float32:
		for _, x := range s {
			c.u32(math.Float32bits(x))
		}
	case []uint64:
		for _, x := range s {
			c.u64(x)
		}
	case []int64:
		for _, x := range s {
			c.u64(uint64(x))
		}
	case []float64:
		for _, x := range s {
			c.u64(math.Float64bits(x))
		}
	case []string:
		for _, x := range s {
			c.str(x)
		}
	case []Value:
		for _, x := range s {
			writeValue(c, x)
		}
	}
}

// WriteFile writes the file to path atomically: into a temporary file in the
// same directory, synced, then renamed over path, so readers (or a crash)
// never see a partial model.
func (w *Writer) WriteFile(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = w.WriteTo(tmp); err != nil {
		return err
	}
	// CreateTemp makes the file private; a model file is ordinary data.
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Persist the rename itself; a failure here cannot undo it, so it is
	// reported only when the directory could be opened and synced fails.
	if d, derr := os.Open(dir); derr == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil && !errors.Is(serr, os.ErrInvalid) {
			return serr
		}
	}
	return nil
}

// toValue maps a Go value to the GGUF type named after it.
func toValue(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		return x, nil
	case int:
		return Value{Type: TypeInt64, V: int64(x)}, nil
	case uint:
		return Value{Type: TypeUint64, V: uint64(x)}, nil
	case []int:
		s := make([]int64, len(x))
		for i, v := range x {
			s[i] = int64(v)
		}
		return Value{Type: TypeArray, Elem: TypeInt64, V: s}, nil
	}
	if t, ok := scalarType(x); ok {
		return Value{Type: t, V: x}, nil
	}
	if elem, ok := sliceElem(x); ok {
		return Value{Type: TypeArray, Elem: elem, V: x}, nil
	}
	return Value{}, fmt.Errorf("gguf: Go type %T has no GGUF equivalent", x)
}

// scalarType gives the value type of the Go scalars a Value may hold.
func scalarType(x any) (ValueType, bool) {
	switch x.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	}
	return 0, false
}

// sliceElem gives the element type of the slices a Value may hold.
func sliceElem(x any) (ValueType, bool) {
	switch x.(type) {
	case []uint8:
		return TypeUint8, true
	case []int8:
		return TypeInt8, true
	case []uint16:
		return TypeUint16, true
	case []int16:
		return TypeInt16, true
	case []uint32:
		return TypeUint32, true
	case []int32:
		return TypeInt32, true
	case []float32:
		return TypeFloat32, true
	case []bool:
		return TypeBool, true
	case []string:
		return TypeString, true
	case []uint64:
		return TypeUint64, true
	case []int64:
		return TypeInt64, true
	case []float64:
		return TypeFloat64, true
	case []Value:
		return TypeArray, true
	}
	return 0, false
}

// checkValue verifies that V holds the Go type the declared types call for,
// so WriteTo never has to guess or fail midway.
func checkValue(v Value, depth int) error {
	if depth >= maxNesting {
		return fmt.Errorf("arrays nest more than %d deep", maxNesting)
	}
	if !v.Type.Valid() {
		return fmt.Errorf("unknown value type %d", uint32(v.Type))
	}
	if v.Type != TypeArray {
		if t, ok := scalarType(v.V); !ok || t != v.Type {
			return fmt.Errorf("value of Go type %T cannot be stored as %s", v.V, v.Type)
		}
		return nil
	}
	elem, ok := sliceElem(v.V)
	if !ok || elem != v.Elem {
		return fmt.Errorf("value of Go type %T cannot be stored as an array of %s", v.V, v.Elem)
	}
	if s, ok := v.V.([]Value); ok {
		for i, e := range s {
			if e.Type != TypeArray {
				return fmt.Errorf("element %d of an array of arrays is a %s", i, e.Type)
			}
			if err := checkValue(e, depth+1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return nil
}
