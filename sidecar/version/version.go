// Package version names the build a binary came from, for `fastgen
// version`, the server's /props and bug reports: the commit it was built
// from (and whether the tree had uncommitted changes), when, and with which
// Go. The Go toolchain records these itself (debug.ReadBuildInfo) when it
// builds from a git checkout; test binaries and builds outside one have no
// commit and say "devel".
package version

import (
	"runtime"
	"runtime/debug"
)

// Info is what the build recorded.
type Info struct {
	Revision string // commit, shortened to 12 hex digits; "devel" when unknown
	Modified bool   // the tree had uncommitted changes
	Time     string // commit time, RFC 3339; empty when unknown
	Go       string // toolchain version, e.g. go1.26.4
	Platform string // GOOS/GOARCH
}

// Get reads the running binary's build information.
func Get() Info {
	info := Info{Revision: "devel", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
			if len(info.Revision) > 12 {
				info.Revision = info.Revision[:12]
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			info.Time = s.Value
		}
	}
	return info
}

// String is the one-line form: "fastgen 0123456789ab+dirty (2026-11-26T08:00:00Z) go1.26.4 linux/amd64".
func (i Info) String() string {
	s := "fastgen " + i.Revision
	if i.Modified {
		s += "+dirty"
	}
	if i.Time != "" {
		s += " (" + i.Time + ")"
	}
	return s + " " + i.Go + " " + i.Platform
}
