package hub

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress receives download progress. Byte counts are absolute positions in
// the file, so a resumed download starts part-way.
type Progress interface {
	// Start is called when bytes begin to flow; total is -1 when unknown.
	Start(name string, done, total int64)
	Update(done int64)
	// Finish is called once, with the error that ended the download or nil.
	Finish(done int64, err error)
}

// NewProgress returns a terminal progress bar when w is a terminal, and a
// silent reporter otherwise, so logs and pipes never fill with redraws.
func NewProgress(w io.Writer) Progress {
	if f, ok := w.(*os.File); ok && IsTerminal(f) {
		return NewBar(w)
	}
	return quiet{}
}

// IsTerminal reports whether f is a character device, which is how a
// terminal looks without platform-specific ioctls.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type quiet struct{}

func (quiet) Start(string, int64, int64) {}
func (quiet) Update(int64)               {}
func (quiet) Finish(int64, error)        {}

// Bar draws a one-line progress bar with bytes, rate and ETA, redrawn in
// place with a carriage return.
type Bar struct {
	w     io.Writer
	now   func() time.Time
	name  string
	total int64
	start time.Time
	base  int64 // bytes present before this transfer started
	last  time.Time
	done  int64
}

// NewBar returns a Bar writing to w.
func NewBar(w io.Writer) *Bar { return &Bar{w: w, now: time.Now} }

func (b *Bar) Start(name string, done, total int64) {
	b.name, b.total, b.base, b.done = name, total, done, done
	b.start = b.now()
	b.last = time.Time{}
	b.draw(false)
}

func (b *Bar) Update(done int64) {
	b.done = done
	// Redrawing on every 1 MiB chunk would cost more than the transfer on a
	// fast link and flicker; ten times a second reads as smooth.
	if t := b.now(); t.Sub(b.last) >= 100*time.Millisecond {
		b.last = t
		b.draw(false)
	}
}

func (b *Bar) Finish(done int64, err error) {
	if b.start.IsZero() {
		return
	}
	b.done = done
	b.draw(true)
	fmt.Fprintln(b.w)
}

func (b *Bar) draw(final bool) {
	elapsed := b.now().Sub(b.start).Seconds()
	var rate float64
	if elapsed > 0 {
		rate = float64(b.done-b.base) / elapsed
	}
	var s strings.Builder
	name := b.name
	if i := strings.LastIndexAny(name, ":/"); i >= 0 {
		name = name[i+1:]
	}
	if len(name) > 28 {
		name = name[:25] + "..."
	}
	fmt.Fprintf(&s, "\r%-28s ", name)
	if b.total > 0 {
		frac := min(float64(b.done)/float64(b.total), 1)
		const width = 20
		fill := int(frac * width)
		fmt.Fprintf(&s, "%3.0f%% [%s%s] %s/%s", frac*100, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			FormatBytes(b.done), FormatBytes(b.total))
	} else {
		s.WriteString(FormatBytes(b.done))
	}
	// The first chunks arrive in a burst from socket buffers, so a rate
	// measured over less than half a second wildly overstates the link.
	switch {
	case final:
		fmt.Fprintf(&s, " %s/s in %s", FormatBytes(int64(rate)), formatDuration(elapsed))
	case elapsed < 0.5:
	case b.total > 0 && rate > 0:
		fmt.Fprintf(&s, " %s/s ETA %s", FormatBytes(int64(rate)), formatDuration(float64(b.total-b.done)/rate))
	default:
		fmt.Fprintf(&s, " %s/s", FormatBytes(int64(rate)))
	}
	// Clear what a longer previous line left behind.
	s.WriteString("\x1b[K")
	io.WriteString(b.w, s.String())
}

// FormatBytes renders n with binary units, e.g. "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func formatDuration(sec float64) string {
	if sec < 0 || sec > 99*3600 {
		return "--:--"
	}
	s := int64(sec + 0.5)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
