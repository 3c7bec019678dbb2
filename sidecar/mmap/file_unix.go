//go:build unix && !linux

package mmap

import (
	"os"
	"syscall"
)

// File maps size bytes of fd read-only. The mapping outlives fd.
func File(fd *os.File, size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(int(fd.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}

// adviseHuge does nothing: huge-page advice here is Linux's.
func adviseHuge([]byte) {}
