// Package app is the browser client's logic without the browser: the state
// each page builds from protocol frames, and the derived views (divergence,
// diffs, agreement, strips, markdown). The syscall/js glue in wasm/ only
// moves events in and draws what this package computes, so everything here
// is tested natively and under Node.
package app

import (
	"math"
	"strings"

	"github.com/fastgen/fastgen/shared"
	"github.com/fastgen/fastgen/wasm/draw"
)

// Stream is what one stream of a request has produced so far.
type Stream struct {
	Name   string
	Tokens []shared.Token
	// Mem has one point per occupancy frame: compressed and full KV bytes.
	Mem      []MemPoint
	LastKept []uint32
	History  *History
	Stats    *shared.Stats
	Finish   string // "" while running
	text     strings.Builder
}

// MemPoint is the cache size after one decode step.
type MemPoint struct {
	KVBytes, KVBytesFull int64
}

// Text is the stream's generated text so far.
func (s *Stream) Text() string { return s.text.String() }

// Run is one generate request and everything the server sent for it.
type Run struct {
	ID        string
	Req       shared.Generate
	Processed int
	Total     int
	Profile   *shared.Profile
	Streams   []*Stream
	Err       *shared.Error
	nLayers   int
	nKVHeads  int
}

// NewRun starts tracking a request. The model shape (from hello) sizes the
// per-head histories; zero means "learn it from the first occupancy".
func NewRun(req shared.Generate, model shared.ModelInfo) *Run {
	r := &Run{ID: req.ID, Req: req, nLayers: model.NLayers, nKVHeads: model.NKVHeads}
	for _, name := range req.Streams() {
		r.Streams = append(r.Streams, &Stream{Name: name})
	}
	return r
}

// Stream returns the named stream, adding it if the server reports one the
// request did not predict (a newer server may name baselines differently).
func (r *Run) Stream(name string) *Stream {
	for _, s := range r.Streams {
		if s.Name == name {
			return s
		}
	}
	s := &Stream{Name: name}
	r.Streams = append(r.Streams, s)
	return s
}

// Primary is the request's own stream (fastgen unless another mode was
// asked for); Baseline is the compare stream or nil.
func (r *Run) Primary() *Stream { return r.Streams[0] }

func (r *Run) Baseline() *Stream {
	if len(r.Streams) < 2 {
		return nil
	}
	return r.Streams[1]
}

// Heads is the number of (layer, KV head) pairs, 0 when unknown.
func (r *Run) Heads() int { return r.nLayers * r.nKVHeads }

// Finished reports whether every stream is done or the request failed.
func (r *Run) Finished() bool {
	if r.Err != nil {
		return true
	}
	for _, s := range r.Streams {
		if s.Finish == "" {
			return false
		}
	}
	return true
}

// PromptLen is the prompt length in tokens, once known.
func (r *Run) PromptLen() int {
	if r.Profile != nil {
		return len(r.Profile.PromptTokens)
	}
	return r.Total
}

// Apply folds one frame for this run into its state and reports whether
// anything visible changed.
func (r *Run) Apply(f shared.Frame) bool {
	switch f := f.(type) {
	case *shared.Progress:
		r.Processed, r.Total = f.Processed, f.Total
	case *shared.Profile:
		r.Profile = f
		r.fillHeadShape(f)
		s := r.Stream(f.Stream)
		if s.History == nil {
			s.History = NewHistory(r.Heads())
		}
		s.History.SetPrompt(f, r.nKVHeads)
	case *shared.Token:
		s := r.Stream(f.Stream)
		s.Tokens = append(s.Tokens, *f)
		s.text.WriteString(f.Text)
		if s.History != nil {
			s.History.SetClass(r.PromptLen()+f.Index, f.Class)
		}
	case *shared.Occupancy:
		s := r.Stream(f.Stream)
		s.Mem = append(s.Mem, MemPoint{f.KVBytes, f.KVBytesFull})
		s.LastKept = f.Kept
		if s.History == nil {
			s.History = NewHistory(max(r.Heads(), len(f.Kept)))
			s.History.promptLen = r.PromptLen()
		}
		s.History.Apply(f)
	case *shared.Stats:
		r.Stream(f.Stream).Stats = f
	case *shared.Done:
		if f.Stream == "" {
			// A stream-less done ends every stream, e.g. a request refused
			// before it started.
			for _, s := range r.Streams {
				if s.Finish == "" {
					s.Finish = f.FinishReason
				}
			}
			return true
		}
		r.Stream(f.Stream).Finish = f.FinishReason
	case *shared.Error:
		r.Err = f
	default:
		return false
	}
	return true
}

// fillHeadShape derives the grid shape from the profile when hello did not
// give it, so a profile alone is enough to draw the grid.
func (r *Run) fillHeadShape(p *shared.Profile) {
	if r.Heads() > 0 {
		return
	}
	for _, h := range p.Heads {
		r.nLayers = max(r.nLayers, h.Layer+1)
		r.nKVHeads = max(r.nKVHeads, h.KVHead+1)
	}
}

// Shape returns layers × KV heads.
func (r *Run) Shape() (layers, kvHeads int) { return r.nLayers, r.nKVHeads }

// KVSaved is the share of a full cache the run did not need, from the last
// occupancy or the final stats.
func (s *Stream) KVSaved() (saved int64, ratio float64, ok bool) {
	var b, full int64
	switch {
	case s.Stats != nil && s.Stats.KVBytesFull > 0:
		b, full = s.Stats.KVBytes, s.Stats.KVBytesFull
	case len(s.Mem) > 0 && s.Mem[len(s.Mem)-1].KVBytesFull > 0:
		m := s.Mem[len(s.Mem)-1]
		b, full = m.KVBytes, m.KVBytesFull
	default:
		return 0, 0, false
	}
	return full - b, 1 - float64(b)/float64(full), true
}

// never marks an entry that was never evicted.
const never = math.MaxInt32

// History replays occupancy deltas so that any head's kept set at any
// recorded step can be drawn again (the classroom scrubs back through it).
// Per head it stores, for each position, the step at which it was evicted:
// one int32 per evicted-or-kept position, allocated only for heads that
// evict anything.
type History struct {
	heads     int
	promptLen int
	window    int
	policy    []int
	steps     int
	lengths   []int // cache length after each step
	evictedAt [][]int32
	class     []uint8
}

// Class codes stored per position.
const (
	classNormal uint8 = iota
	classSpecial
	classPunct
)

func classCode(c string) uint8 {
	switch c {
	case shared.ClassSpecial:
		return classSpecial
	case shared.ClassPunct:
		return classPunct
	}
	return classNormal
}

// NewHistory tracks heads (layer-major flat indexes).
func NewHistory(heads int) *History {
	return &History{heads: heads, evictedAt: make([][]int32, heads)}
}

// SetPrompt records the prompt's classes, local window and policies.
func (h *History) SetPrompt(p *shared.Profile, nKVHeads int) {
	h.promptLen = len(p.PromptTokens)
	h.window = p.LocalWindow
	for i, t := range p.PromptTokens {
		h.SetClass(i, t.Class)
	}
	if h.heads == 0 {
		return
	}
	h.policy = make([]int, h.heads)
	for i := range h.policy {
		h.policy[i] = -1
	}
	for _, hd := range p.Heads {
		if i := hd.Layer*nKVHeads + hd.KVHead; hd.KVHead < nKVHeads && i >= 0 && i < h.heads {
			h.policy[i] = shared.PolicyIndex(hd.Policy)
		}
	}
}

// SetClass records the class of the token at an absolute position.
func (h *History) SetClass(pos int, class string) {
	if pos < 0 || pos > 1<<24 {
		return
	}
	for len(h.class) <= pos {
		h.class = append(h.class, classNormal)
	}
	h.class[pos] = classCode(class)
}

// Steps is the number of recorded decode steps.
func (h *History) Steps() int { return h.steps }

// Length is the cache length after a step (0 when out of range).
func (h *History) Length(step int) int {
	if step < 0 || step >= len(h.lengths) {
		return 0
	}
	return h.lengths[step]
}

// Apply records one occupancy frame as the next step. The cache after step
// i covers prompt + i positions; an eviction beyond that extends it, since
// a server may count steps differently and the data should still show.
func (h *History) Apply(o *shared.Occupancy) {
	step := h.steps
	length := h.promptLen + o.Index
	if len(h.lengths) > 0 {
		length = max(length, h.lengths[len(h.lengths)-1])
	}
	for _, ev := range o.Evicted {
		if ev.Head < 0 || ev.Head >= h.heads {
			continue
		}
		e := h.evictedAt[ev.Head]
		for _, p := range ev.Positions {
			if p > 1<<24 {
				continue // not a plausible position; never allocate for it
			}
			length = max(length, int(p)+1)
			for len(e) <= int(p) {
				e = append(e, never)
			}
			// Evicted entries are gone for good: the first eviction wins.
			if e[p] == never {
				e[p] = int32(step)
			}
		}
		h.evictedAt[ev.Head] = e
	}
	h.lengths = append(h.lengths, length)
	h.steps++
}

// KeptAt counts a head's kept positions after a step.
func (h *History) KeptAt(head, step int) int {
	n := h.Length(step)
	if head < 0 || head >= h.heads {
		return 0
	}
	kept := n
	for p, s := range h.evictedAt[head] {
		if p < n && int(s) <= step {
			kept--
		}
	}
	return kept
}

// Policy is a head's policy index, -1 when unknown.
func (h *History) Policy(head int) int {
	if head < 0 || head >= len(h.policy) {
		return -1
	}
	return h.policy[head]
}

// HeadStrip adapts one head of a history to draw.StripSource.
type HeadStrip struct {
	H    *History
	Head int
}

// Row fills the strip cells of one step: evicted, or kept and coloured by
// the reason it is most likely kept (class, then the local window for heads
// whose policy has one).
func (s HeadStrip) Row(step int, dst []draw.Cell) {
	h := s.H
	n := min(h.Length(step), len(dst))
	if s.Head < 0 || s.Head >= h.heads {
		return
	}
	ev := h.evictedAt[s.Head]
	local := h.Policy(s.Head) == shared.PolicyIndex(shared.PolicySpecialPunctFrequentLocal)
	for p := 0; p < n; p++ {
		if p < len(ev) && int(ev[p]) <= step {
			dst[p] = draw.Evicted
			continue
		}
		c := classNormal
		if p < len(h.class) {
			c = h.class[p]
		}
		switch {
		case c == classSpecial:
			dst[p] = draw.Special
		case c == classPunct:
			dst[p] = draw.Punct
		case local && h.window > 0 && n-p <= h.window:
			dst[p] = draw.InWindow
		default:
			dst[p] = draw.Kept
		}
	}
}
