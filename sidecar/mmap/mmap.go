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

// Open maps the whole regular file at path read-only. unmap releases the
// mapping; slices of data must not be used after it. An empty file maps to
// an empty slice.
func Open(path string) (data []byte, unmap func() error, err error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return nil, nil, ErrDirectory
	}
	size := st.Size()
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("is %d bytes, too large to map on this machine", size)
	}
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	return File(fd, int(size))
}
