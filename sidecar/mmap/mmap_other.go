//go:build !unix

package mmap

import (
	"io"
	"os"
)

// alloc returns size bytes from the Go heap.
func alloc(size int) ([]byte, func() error, error) {
	return make([]byte, size), func() error { return nil }, nil
}

// File reads the file into memory where mmap is unavailable (Windows,
// wasm): correct, just not zero-copy.
func File(fd *os.File, size int) ([]byte, func() error, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(fd, 0, int64(size)), b); err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}
