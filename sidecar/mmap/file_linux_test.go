package mmap

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// TestFileAligned checks that a mapping is 2 MB-aligned, the precondition
// for the kernel to map the file's 2 MB folios with one entry each, and
// that it holds the file's bytes, also after the probe that small cached
// folios trigger (which drops cached pages under the mapping).
func TestFileAligned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	want := make([]byte, 3*hugePage+123)
	for i := range want {
		want[i] = byte(i ^ i>>9)
	}
	// Written just now, so cached in the folios the write made (and
	// synced, so they can be dropped): File probes whenever they are small.
	f, err := os.Create(path)
	if err == nil {
		_, err = f.Write(want)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, release, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if at := uintptr(unsafe.Pointer(&got[0])); at%hugePage != 0 {
			t.Errorf("mapping at %#x, not 2 MB-aligned", at)
		}
		if string(got) != string(want) {
			t.Error("mapping differs from the file")
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
}
