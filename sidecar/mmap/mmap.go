// Package mmap maps model files read-only, so a multi-gigabyte model costs
// page-table entries rather than a copy in memory. Both model readers use it.
package mmap

import (
	"errors"
	"fmt"
	"math"
	"os"
)

// ErrDirectory is returned by Open for a directory.
var ErrDirectory = errors.New("is a directory")

// A Loader gives a file's bytes and the function that releases them; the
// model readers take one so that callers choose mapping or copying.
type Loader func(path string) (data []byte, release func() error, err error)

// Open maps the whole regular file at path read-only (see File). unmap
// releases the mapping; slices of data must not be used after it. An empty
// file maps to an empty slice.
func Open(path string) (data []byte, unmap func() error, err error) {
	return load(path, File)
}

// Read copies the whole regular file at path into memory of its own, asking
// the OS for 2 MB pages where it offers them (Linux transparent huge pages
// in madvise mode). Decode reads every weight once per token through
// several rows at a time; on 4 KB pages each row crosses a page every few
// hundred bytes and the hardware prefetcher stops at every crossing, which
// cost 110M decode 5–15% in this project's measurements. On Linux, File
// maps 2 MB pages too where the filesystem caches large folios; Read is for
// the rest. The copy takes a read of the file at load and is not shared
// between processes. free releases it.
func Read(path string) (data []byte, free func() error, err error) {
	return load(path, copyFile)
}

// load opens path and hands its descriptor and size to get, except for an
// empty file, which gives an empty slice.
func load(path string, get func(fd *os.File, size int) ([]byte, func() error, error)) ([]byte, func() error, error) {
	fd, size, err := regular(path)
	if err != nil {
		return nil, nil, err
	}
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	defer fd.Close()
	return get(fd, size)
}

// copyFile reads size bytes of fd into memory from alloc.
func copyFile(fd *os.File, size int) ([]byte, func() error, error) {
	data, free, err := alloc(size)
	if err != nil {
		return nil, nil, err
	}
	if _, err := fd.ReadAt(data, 0); err != nil {
		free()
		return nil, nil, err
	}
	return data, free, nil
}

// regular opens path, which must be a regular file that fits in memory.
// A zero size comes with a nil fd.
func regular(path string) (*os.File, int, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := fd.Stat()
	switch {
	case err != nil:
	case st.IsDir():
		err = ErrDirectory
	case st.Size() > math.MaxInt:
		err = fmt.Errorf("is %d bytes, too large to map on this machine", st.Size())
	case st.Size() == 0:
	default:
		return fd, int(st.Size()), nil
	}
	fd.Close()
	return nil, 0, err
}
