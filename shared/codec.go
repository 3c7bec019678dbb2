package shared

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits DecodeClient enforces before any allocation, so a hostile client
// cannot make the server build large or deeply nested values.
const (
	MaxClientFrameBytes = 1 << 20
	MaxDepth            = 16
	// MaxServerFrameBytes bounds Decode: a profile of a 80-layer model with
	// an 8k-token prompt stays well below it.
	MaxServerFrameBytes = 64 << 20
)

// Sentinel errors, wrapped by *DecodeError; test with errors.Is.
var (
	ErrTooLarge   = errors.New("frame too large")
	ErrTooDeep    = errors.New("frame nested too deeply")
	ErrNotMsgpack = errors.New("not a msgpack frame")
	ErrNoType     = errors.New("frame has no string \"type\"")
)

// DecodeError says why bytes are not a valid frame. Type is the frame type
// when it was read before the failure.
type DecodeError struct {
	Type string
	Err  error
}

func (e *DecodeError) Error() string {
	if e.Type != "" {
		return "shared: decode " + e.Type + ": " + e.Err.Error()
	}
	return "shared: decode: " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// UnknownTypeError is returned for a well-formed frame whose type this
// side does not accept (including server frames sent to DecodeClient).
type UnknownTypeError struct {
	Type string
}

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("shared: unknown frame type %q", e.Type)
}

// Encode marshals a frame (value or pointer) with its "type" key set from
// FrameType. Map keys are sorted so equal frames give equal bytes.
func Encode(f Frame) ([]byte, error) {
	if f == nil {
		return nil, errors.New("shared: encode nil frame")
	}
	rv := reflect.ValueOf(f)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, errors.New("shared: encode nil frame")
		}
		rv = rv.Elem()
	}
	// Work on a copy so Encode never mutates the caller's frame.
	cp := reflect.New(rv.Type()).Elem()
	cp.Set(rv)
	tf := cp.FieldByName("Type")
	if !tf.IsValid() || tf.Kind() != reflect.String {
		return nil, fmt.Errorf("shared: %T has no Type field", f)
	}
	tf.SetString(f.FrameType())

	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(cp.Addr().Interface()); err != nil {
		return nil, fmt.Errorf("shared: encode %s: %w", f.FrameType(), err)
	}
	return buf.Bytes(), nil
}

// Decode reads any frame, server or client, and returns a pointer to its
// struct (*Token, *Hello, …). The type is read first so the rest decodes
// strictly into the right struct; unknown keys are ignored so that fields
// added later do not break older readers.
func Decode(b []byte) (Frame, error) {
	return decode(b, MaxServerFrameBytes, false)
}

// DecodeClient is Decode for the server side: it accepts only generate,
// cancel and ping, rejects frames over MaxClientFrameBytes or nested deeper
// than MaxDepth, and validates Generate before returning it.
func DecodeClient(b []byte) (Frame, error) {
	f, err := decode(b, MaxClientFrameBytes, true)
	if err != nil {
		return nil, err
	}
	if g, ok := f.(*Generate); ok {
		if err := g.Validate(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func decode(b []byte, maxBytes int, clientOnly bool) (f Frame, err error) {
	if len(b) > maxBytes {
		return nil, &DecodeError{Err: fmt.Errorf("%w: %d bytes > %d", ErrTooLarge, len(b), maxBytes)}
	}
	if err := checkStructure(b, MaxDepth, clientOnly); err != nil {
		return nil, &DecodeError{Err: err}
	}
	typ, err := readType(b)
	if err != nil {
		return nil, &DecodeError{Err: err}
	}
	f, isClient := newFrame(typ)
	if f == nil || (clientOnly && !isClient) {
		return nil, &UnknownTypeError{Type: typ}
	}
	// The structure check makes a panic inside msgpack very unlikely; this
	// turns any that remains into an error, because a frame from the
	// network must never bring the process down.
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, &DecodeError{Type: typ, Err: fmt.Errorf("%w: %v", ErrNotMsgpack, r)}
		}
	}()
	if err := msgpack.Unmarshal(b, f); err != nil {
		return nil, &DecodeError{Type: typ, Err: err}
	}
	return f, nil
}

// readType scans the top-level map for "type" without decoding anything
// else; other values are skipped by the structure walker, which allocates
// nothing (msgpack's own Skip copies every string it passes). A duplicate
// "type" key is rejected: two readers could otherwise disagree about which
// frame this is. b has passed checkStructure.
func readType(b []byte) (string, error) {
	w := walker{b: b, maxDepth: MaxDepth}
	n, err := w.mapLen()
	if err != nil {
		return "", err
	}
	typ, found := "", false
	for i := 0; i < n; i++ {
		key, ok := w.str()
		if !ok {
			return "", fmt.Errorf("%w: map key is not a string", ErrNotMsgpack)
		}
		if key != "type" {
			if err := w.value(2); err != nil {
				return "", err
			}
			continue
		}
		if found {
			return "", fmt.Errorf("duplicate \"type\" key")
		}
		v, ok := w.str()
		if !ok {
			return "", ErrNoType
		}
		typ, found = v, true
	}
	if !found {
		return "", ErrNoType
	}
	return typ, nil
}

// mapLen reads a map header.
func (w *walker) mapLen() (int, error) {
	if w.off >= len(w.b) {
		return 0, ErrNotMsgpack
	}
	c := w.b[w.off]
	w.off++
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	case c == 0xde:
		n, err := w.uint(2)
		return int(n), err
	case c == 0xdf:
		n, err := w.uint(4)
		return int(n), err
	}
	return 0, fmt.Errorf("%w: top level is not a map", ErrNotMsgpack)
}

// str reads a string value; ok is false (and nothing is consumed) for any
// other kind of value.
func (w *walker) str() (s string, ok bool) {
	if w.off >= len(w.b) {
		return "", false
	}
	start := w.off
	c := w.b[w.off]
	w.off++
	var n uint64
	var err error
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, err = w.uint(1)
	case c == 0xda:
		n, err = w.uint(2)
	case c == 0xdb:
		n, err = w.uint(4)
	default:
		w.off = start
		return "", false
	}
	if err != nil || n > uint64(len(w.b)-w.off) {
		w.off = start
		return "", false
	}
	s = string(w.b[w.off : w.off+int(n)])
	w.off += int(n)
	return s, true
}

// checkStructure walks raw msgpack once, before any decoding: the input
// must be exactly one value whose top level is a map, every declared length
// must fit in the bytes that remain (so no length can trigger a large
// allocation), and nesting stays within maxDepth. Client frames may not use
// extension types, which the protocol never sends.
func checkStructure(b []byte, maxDepth int, noExt bool) error {
	if len(b) == 0 {
		return ErrNotMsgpack
	}
	if c := b[0]; !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		return fmt.Errorf("%w: top level is not a map", ErrNotMsgpack)
	}
	w := walker{b: b, maxDepth: maxDepth, noExt: noExt}
	if err := w.value(1); err != nil {
		return err
	}
	if w.off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrNotMsgpack, len(b)-w.off)
	}
	return nil
}

type walker struct {
	b        []byte
	off      int
	maxDepth int
	noExt    bool
}

func (w *walker) take(n uint64) error {
	if n > uint64(len(w.b)-w.off) {
		return fmt.Errorf("%w: truncated", ErrNotMsgpack)
	}
	w.off += int(n)
	return nil
}

// uint reads a big-endian length of size bytes.
func (w *walker) uint(size int) (uint64, error) {
	if size > len(w.b)-w.off {
		return 0, fmt.Errorf("%w: truncated", ErrNotMsgpack)
	}
	p := w.b[w.off : w.off+size]
	w.off += size
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	default:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
}

func (w *walker) value(depth int) error {
	if w.off >= len(w.b) {
		return fmt.Errorf("%w: truncated", ErrNotMsgpack)
	}
	c := w.b[w.off]
	w.off++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return nil
	case c >= 0x80 && c <= 0x8f:
		return w.container(depth, uint64(c&0x0f), 2)
	case c >= 0x90 && c <= 0x9f:
		return w.container(depth, uint64(c&0x0f), 1)
	case c >= 0xa0 && c <= 0xbf:
		return w.take(uint64(c & 0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return w.sized(1, 0)
	case 0xc5, 0xda:
		return w.sized(2, 0)
	case 0xc6, 0xdb:
		return w.sized(4, 0)
	case 0xc7, 0xc8, 0xc9: // ext8/16/32: length, type byte, data
		if w.noExt {
			return fmt.Errorf("%w: extension types are not allowed", ErrNotMsgpack)
		}
		return w.sized(1<<(c-0xc7), 1)
	case 0xca:
		return w.take(4)
	case 0xcb:
		return w.take(8)
	case 0xcc, 0xd0:
		return w.take(1)
	case 0xcd, 0xd1:
		return w.take(2)
	case 0xce, 0xd2:
		return w.take(4)
	case 0xcf, 0xd3:
		return w.take(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 plus the type byte
		if w.noExt {
			return fmt.Errorf("%w: extension types are not allowed", ErrNotMsgpack)
		}
		return w.take(1 + 1<<(c-0xd4))
	case 0xdc:
		n, err := w.uint(2)
		if err != nil {
			return err
		}
		return w.container(depth, n, 1)
	case 0xdd:
		n, err := w.uint(4)
		if err != nil {
			return err
		}
		return w.container(depth, n, 1)
	case 0xde:
		n, err := w.uint(2)
		if err != nil {
			return err
		}
		return w.container(depth, n, 2)
	case 0xdf:
		n, err := w.uint(4)
		if err != nil {
			return err
		}
		return w.container(depth, n, 2)
	}
	return fmt.Errorf("%w: invalid code 0x%02x", ErrNotMsgpack, c)
}

// sized skips a length-prefixed payload (plus extra header bytes).
func (w *walker) sized(lenBytes int, extra uint64) error {
	n, err := w.uint(lenBytes)
	if err != nil {
		return err
	}
	return w.take(n + extra)
}

// container checks an array (per=1) or map (per=2) of n entries.
func (w *walker) container(depth int, n uint64, per uint64) error {
	if depth > w.maxDepth {
		return fmt.Errorf("%w: depth > %d", ErrTooDeep, w.maxDepth)
	}
	// Every element takes at least one byte.
	if n*per > uint64(len(w.b)-w.off) {
		return fmt.Errorf("%w: %d elements declared, %d bytes left", ErrNotMsgpack, n*per, len(w.b)-w.off)
	}
	for i := uint64(0); i < n*per; i++ {
		if err := w.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// ErrorCode maps an error from DecodeClient or Validate to the protocol
// error code the server should answer with.
func ErrorCode(err error) string {
	var de *DecodeError
	var ue *UnknownTypeError
	var ve *ValidationError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return CodeTooLong
	case errors.As(err, &de), errors.As(err, &ue), errors.As(err, &ve):
		return CodeBadRequest
	}
	return CodeInternal
}
