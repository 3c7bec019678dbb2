//go:build unix

package mmap

import (
	"syscall"
)

// alloc returns size bytes of anonymous memory advised for huge pages.
func alloc(size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, err
	}
	adviseHuge(b)
	return b, func() error { return syscall.Munmap(b) }, nil
}
