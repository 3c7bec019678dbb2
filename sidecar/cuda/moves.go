package cuda

// moveLog collects one head's swap-remove moves (dst ← src) between two
// flushes and resolves chains, so that the device can apply them all at once.
//
// Eviction walks down from the head's end and fills each hole with the
// current last entry, so a later move may read an entry an earlier move
// wrote. Resolved against the entries as they were at the last flush, every
// surviving destination is below the head's new length and every source is
// at or above it: no source is a destination, and the copies are
// independent.
type moveLog struct {
	origin map[int32]int32 // entry → the entry (as of the last flush) it now holds
}

func (l *moveLog) move(dst, src int) {
	if l.origin == nil {
		l.origin = make(map[int32]int32)
	}
	o, ok := l.origin[int32(src)]
	if !ok {
		o = int32(src)
	}
	l.origin[int32(dst)] = o
	delete(l.origin, int32(src)) // src is beyond the end now
}

func (l *moveLog) empty() bool { return len(l.origin) == 0 }

// resolve appends the copies still needed for a head of n entries, as
// (dst, src) pairs, and clears the log.
func (l *moveLog) resolve(n int, dst, src []int32) ([]int32, []int32) {
	for d, s := range l.origin {
		if int(d) < n && d != s {
			dst = append(dst, d)
			src = append(src, s)
		}
	}
	clear(l.origin)
	return dst, src
}
