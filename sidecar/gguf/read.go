package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/fastgen/fastgen/sidecar/mmap"
	"github.com/fastgen/fastgen/sidecar/tensor"
)

// maxNesting bounds arrays of arrays: each level costs only 12 bytes of file,
// so without a bound a small file could drive the parser's recursion deep.
// No real model nests arrays more than once.
const maxNesting = 16

// Minimal encoded sizes, used to reject counts that cannot fit in what is
// left of the file before allocating anything for them.
const (
	minKVSize     = 8 + 4 + 1     // empty key, type, one-byte value
	minTensorSize = 8 + 4 + 4 + 8 // empty name, n_dims = 0, type, offset
	headerSize    = 4 + 4 + 8 + 8
)

// Open maps path read-only and parses it. The returned File must be closed.
func Open(path string) (*File, error) { return OpenWith(path, mmap.Open) }

// OpenWith is Open with the file's bytes from load (mmap.Read copies them).
func OpenWith(path string, load mmap.Loader) (*File, error) {
	data, unmap, err := load(path)
	switch {
	case errors.Is(err, mmap.ErrDirectory):
		return nil, &Error{Path: path, Problem: "is a directory, not a GGUF file", Kind: ErrNotGGUF}
	case err != nil:
		return nil, err
	}
	f, err := Parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Parse parses a GGUF file held in data. Tensor data slices alias data, which
// must stay unchanged while the File is in use; path only names the file in
// errors. Close on the result is a no-op.
func Parse(path string, data []byte) (*File, error) {
	p := &parser{f: &File{Path: path}, b: data}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.f, nil
}

type parser struct {
	f   *File
	b   []byte
	off uint64
}

func (p *parser) size() uint64 { return uint64(len(p.b)) }

func (p *parser) left() uint64 { return p.size() - p.off }

// need fails unless n more bytes exist; what says what was being read.
func (p *parser) need(n uint64, what string) error {
	if n > p.left() {
		return p.f.errorf(ErrTruncated, "the file ends (%d bytes) in the middle of %s, which needs %d bytes at offset %d",
			p.size(), what, n, p.off)
	}
	return nil
}

func (p *parser) u8() uint8   { v := p.b[p.off]; p.off++; return v }
func (p *parser) u16() uint16 { v := binary.LittleEndian.Uint16(p.b[p.off:]); p.off += 2; return v }
func (p *parser) u32() uint32 { v := binary.LittleEndian.Uint32(p.b[p.off:]); p.off += 4; return v }
func (p *parser) u64() uint64 { v := binary.LittleEndian.Uint64(p.b[p.off:]); p.off += 8; return v }

func (p *parser) readU32(what string) (uint32, error) {
	if err := p.need(4, what); err != nil {
		return 0, err
	}
	return p.u32(), nil
}

func (p *parser) readU64(what string) (uint64, error) {
	if err := p.need(8, what); err != nil {
		return 0, err
	}
	return p.u64(), nil
}

func (p *parser) readString(what string) (string, error) {
	n, err := p.readU64("the length of " + what)
	if err != nil {
		return "", err
	}
	if n > p.left() {
		return "", p.f.errorf(ErrTruncated, "%s has length %d, which runs past the end of the file (%d bytes) from offset %d",
			what, n, p.size(), p.off)
	}
	s := string(p.b[p.off : p.off+n])
	p.off += n
	return s, nil
}

func (p *parser) parse() error {
	f := p.f
	if err := p.need(4, "the magic number"); err != nil {
		return err
	}
	if magic := string(p.b[:4]); magic != Magic {
		return f.errorf(ErrNotGGUF, "is not a GGUF file: it starts with %q, not %q", magic, Magic)
	}
	p.off = 4
	version, err := p.readU32("the version number")
	if err != nil {
		return err
	}
	f.Version = version
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return f.errorf(ErrVersion, "is GGUF version 1, an obsolete format that is not supported (re-convert the model to version 3)")
	case version != 0 && version&0xffff == 0 && bits.ReverseBytes32(version) <= 3:
		return f.errorf(ErrVersion, "looks like a big-endian GGUF file (version %d byte-swapped), which is not supported", bits.ReverseBytes32(version))
	default:
		return f.errorf(ErrVersion, "is GGUF version %d, which is not supported (only versions 2 and 3 are)", version)
	}
	nTensors, err := p.readU64("the tensor count")
	if err != nil {
		return err
	}
	nKV, err := p.readU64("the metadata count")
	if err != nil {
		return err
	}
	if nKV > p.left()/minKVSize {
		return f.errorf(ErrTruncated, "claims %d metadata entries, more than the remaining %d bytes of the file can hold", nKV, p.left())
	}
	f.kvIndex = make(map[string]int, capHint(nKV))
	f.KV = make([]KV, 0, capHint(nKV))
	for i := uint64(0); i < nKV; i++ {
		key, err := p.readString(fmt.Sprintf("the key of metadata entry %d", i))
		if err != nil {
			return err
		}
		if _, dup := f.kvIndex[key]; dup {
			return f.errorf(ErrDuplicate, "metadata key %q appears twice", key)
		}
		typ, err := p.readU32(fmt.Sprintf("the type of metadata key %q", key))
		if err != nil {
			return err
		}
		v, err := p.readValue(ValueType(typ), fmt.Sprintf("metadata key %q", key), 0)
		if err != nil {
			return err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Lookup(KeyAlignment); ok {
		a, ok := scalarUint(v)
		if !ok {
			return f.errorf(ErrAlignment, "%s is %v, not a non-negative integer", KeyAlignment, v)
		}
		if a == 0 || a&(a-1) != 0 {
			return f.errorf(ErrAlignment, "%s is %d, which is not a non-zero power of two", KeyAlignment, a)
		}
		f.Alignment = a
	}

	if nTensors > p.left()/minTensorSize {
		return f.errorf(ErrTruncated, "claims %d tensors, more than the remaining %d bytes of the file can hold", nTensors, p.left())
	}
	f.tensorIndex = make(map[string]int, capHint(nTensors))
	f.Tensors = make([]TensorInfo, 0, capHint(nTensors))
	sizes := make([]uint64, 0, capHint(nTensors))
	for i := uint64(0); i < nTensors; i++ {
		ti, size, err := p.readTensorInfo(i)
		if err != nil {
			return err
		}
		if _, dup := f.tensorIndex[ti.Name]; dup {
			return f.errorf(ErrDuplicate, "tensor name %q appears twice", ti.Name)
		}
		f.tensorIndex[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
		sizes = append(sizes, size)
	}

	// The data section starts at the next multiple of the alignment. A file
	// with no tensors may stop before that padding, which is harmless.
	start, ok := alignUp(p.off, f.Alignment)
	if !ok {
		return f.errorf(ErrBounds, "the tensor data section would start beyond any possible file size")
	}
	f.DataOffset = start
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		size := sizes[i]
		if ti.Offset%f.Alignment != 0 {
			return f.errorf(ErrBounds, "tensor %q data offset %d is not a multiple of the alignment %d", ti.Name, ti.Offset, f.Alignment)
		}
		begin := start + ti.Offset
		end := begin + size
		if begin < start || end < begin || end > p.size() {
			return f.errorf(ErrBounds, "tensor %q data [offset %d, %d bytes] runs past the end of the file (%d bytes)",
				ti.Name, start+ti.Offset, size, p.size())
		}
		ti.Data = p.b[begin:end:end]
	}
	return nil
}

// capHint bounds preallocation: a count that passed the size check can still
// be large for a large file, and entries whose Go form is bigger than their
// encoding (strings, nested arrays) would multiply that. Growing by append
// costs memory only for entries that actually parse.
func capHint(n uint64) int { return int(min(n, 1024)) }

func alignUp(n, a uint64) (uint64, bool) {
	r := (n + a - 1) &^ (a - 1)
	return r, r >= n
}

func (p *parser) readTensorInfo(i uint64) (TensorInfo, uint64, error) {
	f := p.f
	var ti TensorInfo
	name, err := p.readString(fmt.Sprintf("the name of tensor %d", i))
	if err != nil {
		return ti, 0, err
	}
	ti.Name = name
	what := fmt.Sprintf("tensor %q", name)
	nDims, err := p.readU32("the dimension count of " + what)
	if err != nil {
		return ti, 0, err
	}
	if nDims == 0 || nDims > maxDims {
		return ti, 0, f.errorf(ErrShape, "%s has %d dimensions; ggml supports 1 to %d", what, nDims, maxDims)
	}
	if err := p.need(8*uint64(nDims), "the dimensions of "+what); err != nil {
		return ti, 0, err
	}
	ti.Dims = make([]uint64, nDims)
	for j := range ti.Dims {
		ti.Dims[j] = p.u64()
	}
	typ, err := p.readU32("the type of " + what)
	if err != nil {
		return ti, 0, err
	}
	ti.Type = tensor.DType(typ)
	if !ti.Type.Valid() {
		return ti, 0, f.errorf(ErrTensorType, "%s has tensor type %s, which is unknown or not supported", what, ggmlTypeName(typ))
	}
	if ti.Offset, err = p.readU64("the data offset of " + what); err != nil {
		return ti, 0, err
	}
	size, err := tensorBytes(ti.Type, ti.Dims)
	if err != nil {
		return ti, 0, f.errorf(ErrShape, "%s with dimensions %v %s", what, ti.Dims, err.Error())
	}
	return ti, size, nil
}

// tensorBytes is the encoded size of a tensor, or an error phrased to follow
// "tensor X with dimensions D".
func tensorBytes(t tensor.DType, dims []uint64) (uint64, error) {
	bs := uint64(t.BlockSize())
	if dims[0]%bs != 0 {
		return 0, fmt.Errorf("has a row length that is not a multiple of the %s block size %d", t, bs)
	}
	// Counting elements as well as bytes catches shapes whose element count
	// overflows even when the packed byte count would not. Zero extents are
	// counted as one so that a zero cannot hide an overflowing row count
	// from Matrix, which needs every partial product to fit an int.
	elems, size := uint64(1), dims[0]/bs*uint64(t.BlockBytes())
	if hi, _ := bits.Mul64(dims[0]/bs, uint64(t.BlockBytes())); hi != 0 {
		return 0, fmt.Errorf("is too large")
	}
	for _, d := range dims {
		hi, lo := bits.Mul64(elems, max(d, 1))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("has more elements than fit in 63 bits")
		}
		elems = lo
	}
	for _, d := range dims[1:] {
		hi, lo := bits.Mul64(size, d)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("is too large")
		}
		size = lo
	}
	return size, nil
}

func (p *parser) readValue(t ValueType, what string, depth int) (Value, error) {
	f := p.f
	if !t.Valid() {
		return Value{}, f.errorf(ErrValueType, "%s has unknown value type %d", what, uint32(t))
	}
	switch t {
	case TypeString:
		s, err := p.readString("the string value of " + what)
		return Value{Type: t, V: s}, err
	case TypeArray:
		return p.readArray(what, depth)
	}
	if err := p.need(t.size(), "the value of "+what); err != nil {
		return Value{}, err
	}
	var v any
	switch t {
	case TypeUint8:
		v = p.u8()
	case TypeInt8:
		v = int8(p.u8())
	case TypeBool:
		// llama.cpp treats any non-zero byte as true; so do we.
		v = p.u8() != 0
	case TypeUint16:
		v = p.u16()
	case TypeInt16:
		v = int16(p.u16())
	case TypeUint32:
		v = p.u32()
	case TypeInt32:
		v = int32(p.u32())
	case TypeFloat32:
		v = math.Float32frombits(p.u32())
	case TypeUint64:
		v = p.u64()
	case TypeInt64:
		v = int64(p.u64())
	case TypeFloat64:
		v = math.Float64frombits(p.u64())
	}
	return Value{Type: t, V: v}, nil
}

func (p *parser) readArray(what string, depth int) (Value, error) {
	f := p.f
	if depth >= maxNesting {
		return Value{}, f.errorf(ErrMalformed, "%s nests arrays more than %d deep", what, maxNesting)
	}
	et, err := p.readU32("the element type of the array " + what)
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.Valid() {
		return Value{}, f.errorf(ErrValueType, "the array %s has unknown element type %d", what, et)
	}
	n, err := p.readU64("the length of the array " + what)
	if err != nil {
		return Value{}, err
	}
	// Strings need at least their 8-byte length, arrays their 12-byte header.
	minElem := elem.size()
	switch elem {
	case TypeString:
		minElem = 8
	case TypeArray:
		minElem = 12
	}
	if n > p.left()/minElem {
		return Value{}, f.errorf(ErrTruncated, "the array %s claims %d %s elements, which cannot fit in the remaining %d bytes of the file",
			what, n, elem, p.left())
	}
	v := Value{Type: TypeArray, Elem: elem}
	switch elem {
	case TypeString:
		s := make([]string, 0, capHint(n))
		for i := uint64(0); i < n; i++ {
			e, err := p.readString(fmt.Sprintf("element %d of %s", i, what))
			if err != nil {
				return Value{}, err
			}
			s = append(s, e)
		}
		v.V = s
	case TypeArray:
		s := make([]Value, 0, capHint(n))
		for i := uint64(0); i < n; i++ {
			e, err := p.readArray(fmt.Sprintf("element %d of %s", i, what), depth+1)
			if err != nil {
				return Value{}, err
			}
			s = append(s, e)
		}
		v.V = s
	default:
		v.V = p.scalarArray(elem, int(n))
	}
	return v, nil
}

// scalarArray decodes n fixed-size elements already known to be in bounds.
func (p *parser) scalarArray(t ValueType, n int) any {
	switch t {
	case TypeUint8:
		return decodeArray(p, n, (*parser).u8)
	case TypeInt8:
		return decodeArray(p, n, func(p *parser) int8 { return int8(p.u8()) })
	case TypeBool:
		return decodeArray(p, n, func(p *parser) bool { return p.u8() != 0 })
	case TypeUint16:
		return decodeArray(p, n, (*parser).u16)
	case TypeInt16:
		return decodeArray(p, n, func(p *parser) int16 { return int16(p.u16()) })
	case TypeUint32:
		return decodeArray(p, n, (*parser).u32)
	case TypeInt32:
		return decodeArray(p, n, func(p *parser) int32 { return int32(p.u32()) })
	case TypeFloat32:
		return decodeArray(p, n, func(p *parser) float32 { return math.Float32frombits(p.u32()) })
	case TypeUint64:
		return decodeArray(p, n, (*parser).u64)
	case TypeInt64:
		return decodeArray(p, n, func(p *parser) int64 { return int64(p.u64()) })
	case TypeFloat64:
		return decodeArray(p, n, func(p *parser) float64 { return math.Float64frombits(p.u64()) })
	}
	panic("gguf: scalarArray called with " + t.String())
}

func decodeArray[T any](p *parser, n int, read func(*parser) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = read(p)
	}
	return s
}

// ggmlTypeName names ggml type ids beyond the ones fastgen computes with, so
// that a rejected file says which type it used.
func ggmlTypeName(id uint32) string {
	names := map[uint32]string{
		0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 9: "q8_1",
		10: "q2_K", 11: "q3_K", 12: "q4_K", 13: "q5_K", 14: "q6_K", 15: "q8_K",
		16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s", 20: "iq4_nl", 21: "iq3_s",
		22: "iq2_s", 23: "iq4_xs", 24: "i8", 25: "i16", 26: "i32", 27: "i64", 28: "f64",
		29: "iq1_m", 30: "bf16", 34: "tq1_0", 35: "tq2_0", 39: "mxfp4",
	}
	if n, ok := names[id]; ok {
		return fmt.Sprintf("%s (%d)", n, id)
	}
	return fmt.Sprintf("%d", id)
}
