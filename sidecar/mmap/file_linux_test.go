package mmap

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// TestFileAligned checks that a mapping is 2 MB-aligned, the precondition
// for the kernel to map the file's 2 MB folios with one entry each, that it
// holds the file's bytes, also after the re-map that small cached folios
// trigger.
func TestFileAligned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	want := make([]byte, 3*hugePage+123)
	for i := range want {
		want[i] = byte(i ^ i>>9)
	}
	// Written just now, so cached in the folios the write made: File
	// takes its drop-and-map-again path whenever they are small.
	if err := os.WriteFile(path, want, 0o644); err != nil {
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
