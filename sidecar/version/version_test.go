package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		info Info
		want string
	}{
		{Info{Revision: "0123456789ab", Time: "2026-11-26T08:00:00Z", Go: "go1.26.4", Platform: "linux/amd64"},
			"fastgen 0123456789ab (2026-11-26T08:00:00Z) go1.26.4 linux/amd64"},
		{Info{Revision: "0123456789ab", Modified: true, Go: "go1.26.4", Platform: "linux/arm64"},
			"fastgen 0123456789ab+dirty go1.26.4 linux/arm64"},
		{Info{Revision: "devel", Go: "go1.26.4", Platform: "darwin/arm64"}, "fastgen devel go1.26.4 darwin/arm64"},
	} {
		if got := c.info.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.info, got, c.want)
		}
	}
}

// TestGet: a test binary records no commit, so Get falls back to "devel",
// and always knows the toolchain and platform.
func TestGet(t *testing.T) {
	i := Get()
	if i.Revision == "" || i.Go != runtime.Version() || !strings.Contains(i.Platform, "/") {
		t.Fatalf("%+v", i)
	}
	if len(i.Revision) > 12 {
		t.Errorf("revision %q not shortened", i.Revision)
	}
}
