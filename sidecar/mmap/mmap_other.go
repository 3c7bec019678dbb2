//go:build !unix

package mmap

import (
	"io"
	"os"
)

// File reads the file into memory where mmap is unavailable (Windows,
// wasm): correct, just not zero-copy.
func File(fd *os.File, size int) ([]byte, func() error, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(fd, 0, int64(size)), b); err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}
