package mmap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLoaders checks that mapping and copying give the file's bytes, for an
// empty file, a small one and one spanning several 2 MB pages, and that
// both refuse a directory and a missing file.
func TestLoaders(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 13, 5<<20 + 7} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7 + i>>11)
		}
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, load := range map[string]Loader{"Open": Open, "Read": Read} {
			got, release, err := load(path)
			if err != nil {
				t.Fatalf("%s(%d bytes): %v", name, size, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s(%d bytes): contents differ", name, size)
			}
			if err := release(); err != nil {
				t.Errorf("%s(%d bytes): release: %v", name, size, err)
			}
		}
	}
	for name, load := range map[string]Loader{"Open": Open, "Read": Read} {
		if _, _, err := load(dir); !errors.Is(err, ErrDirectory) {
			t.Errorf("%s(directory) = %v, want ErrDirectory", name, err)
		}
		if _, _, err := load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s(missing) = %v, want ErrNotExist", name, err)
		}
	}
}
