package mmap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a page-middle-directory mapping on amd64 and
// arm64 (4 KB base pages).
const hugePage = 2 << 20

// File maps size bytes of fd read-only, on 2 MB pages where the page cache
// holds the file in 2 MB folios. The mapping outlives fd.
//
// Decode streams every weight once per token, several rows at a time; on a
// mapping of 4 KB pages the hardware prefetcher stops at every page
// crossing and every page costs a TLB entry, which measured 15–20% below
// the same bytes on 2 MB pages. Linux maps a file's 2 MB folios with one
// page-directory entry when the virtual address is 2 MB-aligned like the
// file offset, and a mapping advised MADV_HUGEPAGE reads the file ahead
// into 2 MB folios where the filesystem supports large folios (xfs since
// Linux 5.18, ext4 since 6.16, tmpfs mounted with huge pages). So the file
// is mapped at an aligned address with that advice. When its first 2 MB
// turn out to be cached in small folios (a file just written, or read with
// read(2)), File probes: it drops that 2 MB from the cache and faults it
// again. Only if it then comes back as one 2 MB page does File drop the
// rest of the file's cached pages that no process maps, so they are read
// again into 2 MB folios as decode first touches them: one extra read of
// the file for every token after it. On a filesystem without large folios
// the probe costs a re-read of 2 MB and the mapping stays on 4 KB pages.
func File(fd *os.File, size int) ([]byte, func() error, error) {
	b, err := mapAligned(fd, size)
	if err != nil {
		return nil, nil, err
	}
	if size < hugePage || pmdMapped(b) {
		return b, unmapper(b), nil
	}
	// Advice only, all three: where one is refused the mapping is simply
	// left on smaller pages.
	_ = unix.Madvise(b[:hugePage], unix.MADV_DONTNEED) // our entries for the probe's 2 MB
	_ = unix.Fadvise(int(fd.Fd()), 0, hugePage, unix.FADV_DONTNEED)
	if pmdMapped(b) {
		_ = unix.Fadvise(int(fd.Fd()), hugePage, 0, unix.FADV_DONTNEED) // to the end
	}
	return b, unmapper(b), nil
}

// mapAligned maps fd at a 2 MB-aligned address advised for huge pages: it
// reserves size+2 MB of address space, maps the file over the aligned part
// and returns the rest.
func mapAligned(fd *os.File, size int) ([]byte, error) {
	span := uintptr(size) + hugePage
	res, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	head := (hugePage - uintptr(res)%hugePage) % hugePage
	at := unsafe.Add(res, head)
	if _, err := unix.MmapPtr(int(fd.Fd()), 0, at, uintptr(size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
		_ = unix.MunmapPtr(res, span)
		return nil, err
	}
	if head > 0 {
		_ = unix.MunmapPtr(res, head)
	}
	_ = unix.MunmapPtr(unsafe.Add(at, size), span-head-uintptr(size))
	b := unsafe.Slice((*byte)(at), size)
	adviseHuge(b)
	return b, nil
}

// adviseHuge asks for 2 MB pages for b. Advice only: where transparent huge
// pages are off or unsupported the pages stay 4 KB.
func adviseHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }

// pmdMapped faults in the mapping's first 2 MB and reports whether the
// kernel mapped it with one page-directory entry, from the mapping's
// FilePmdMapped line in /proc/self/smaps.
func pmdMapped(b []byte) bool {
	faulted += b[0]
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return true // cannot tell: keep the mapping as it is
	}
	head := []byte(fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0]))))
	in := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		switch {
		case len(f) < 2:
		case !bytes.HasSuffix(f[0], []byte(":")): // a mapping's header line
			in = bytes.HasPrefix(f[0], head)
		case in && string(f[0]) == "FilePmdMapped:":
			kb, err := strconv.Atoi(string(f[1]))
			return err != nil || kb > 0
		}
	}
	return true
}

// faulted keeps pmdMapped's read of the mapping from being optimised away:
// it is written, never read, on purpose.
//
//lint:ignore U1000 the store is the point (see above)
var faulted byte

func unmapper(b []byte) func() error {
	return func() error { return unmap(b) }
}

func unmap(b []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)))
}
