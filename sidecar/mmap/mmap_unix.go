//go:build unix

package mmap

import (
	"os"
	"syscall"
)

// alloc returns size bytes of anonymous memory advised for huge pages.
func alloc(size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, err
	}
	// Advice only: where THP is off or unsupported the pages are 4 KB.
	_ = syscall.Madvise(b, madvHugepage)
	return b, func() error { return syscall.Munmap(b) }, nil
}

// madvHugepage is Linux's MADV_HUGEPAGE; other systems reject or ignore it.
const madvHugepage = 14

// File maps size bytes of fd read-only. The mapping outlives fd.
func File(fd *os.File, size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(int(fd.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
