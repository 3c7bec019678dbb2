package app

import (
	"github.com/fastgen/fastgen/shared"
)

// PolicyIndexes lays a profile out as one policy index per flat head
// (layer-major), -1 for heads the profile does not mention.
func PolicyIndexes(p *shared.Profile, layers, kvHeads int) []int {
	out := make([]int, layers*kvHeads)
	for i := range out {
		out[i] = -1
	}
	if p == nil {
		return out
	}
	for _, h := range p.Heads {
		if h.Layer < 0 || h.Layer >= layers || h.KVHead < 0 || h.KVHead >= kvHeads {
			continue
		}
		out[h.Layer*kvHeads+h.KVHead] = shared.PolicyIndex(h.Policy)
	}
	return out
}

// Masses lays a profile's category masses out per flat head.
func Masses(p *shared.Profile, layers, kvHeads int) []shared.Mass {
	out := make([]shared.Mass, layers*kvHeads)
	if p == nil {
		return out
	}
	for _, h := range p.Heads {
		if h.Layer < 0 || h.Layer >= layers || h.KVHead < 0 || h.KVHead >= kvHeads {
			continue
		}
		out[h.Layer*kvHeads+h.KVHead] = h.Mass
	}
	return out
}

// PolicyCounts counts heads per policy, in shared.Policies order, for the
// legend (the paper's Fig. 3 histogram).
func PolicyCounts(policy []int) []int {
	counts := make([]int, len(shared.Policies))
	for _, p := range policy {
		if p >= 0 && p < len(counts) {
			counts[p]++
		}
	}
	return counts
}

// ChangedHeads marks heads whose policy differs between two profiles of the
// same prompt (the classroom's threshold slider re-runs it). Heads unknown
// in either profile are not marked.
func ChangedHeads(prev, cur []int) []bool {
	out := make([]bool, len(cur))
	for i := range cur {
		if i < len(prev) && prev[i] >= 0 && cur[i] >= 0 && prev[i] != cur[i] {
			out[i] = true
		}
	}
	return out
}

// LayerMass averages category masses per layer, for the text alternative
// of the mass chart (one row per layer stays readable at 32 × 32 heads).
func LayerMass(mass []shared.Mass, kvHeads int) []shared.Mass {
	if kvHeads <= 0 {
		return nil
	}
	layers := len(mass) / kvHeads
	out := make([]shared.Mass, layers)
	for l := range layers {
		for _, m := range mass[l*kvHeads : (l+1)*kvHeads] {
			out[l].Special += m.Special / float64(kvHeads)
			out[l].Punct += m.Punct / float64(kvHeads)
			out[l].Local += m.Local / float64(kvHeads)
			out[l].Other += m.Other / float64(kvHeads)
		}
	}
	return out
}

// Player is the classroom's step mode over recorded decode steps. Live it
// follows the stream; paused it holds a cursor the user moves one step at a
// time or scrubs, while frames keep being recorded behind it.
type Player struct {
	recorded int
	cursor   int // number of steps shown
	live     bool
}

// NewPlayer starts live.
func NewPlayer() *Player { return &Player{live: true} }

// Reset forgets the recording (a new request started).
func (p *Player) Reset() { p.recorded, p.cursor = 0, 0 }

// Record notes that n steps are now recorded.
func (p *Player) Record(n int) {
	p.recorded = n
	if p.live {
		p.cursor = n
	}
}

// Shown is the number of steps on screen; the last shown step is Shown-1.
func (p *Player) Shown() int { return p.cursor }

// Recorded is the number of steps available to scrub through.
func (p *Player) Recorded() int { return p.recorded }

// Live reports whether the view follows new steps.
func (p *Player) Live() bool { return p.live }

// Pause freezes the view where it is.
func (p *Player) Pause() { p.live = false }

// Play jumps to the newest step and follows again.
func (p *Player) Play() { p.live, p.cursor = true, p.recorded }

// Step pauses and advances one step (at most to the newest).
func (p *Player) Step() {
	p.live = false
	p.cursor = min(p.cursor+1, p.recorded)
}

// Back pauses and goes back one step.
func (p *Player) Back() {
	p.live = false
	p.cursor = max(p.cursor-1, 0)
}

// Seek pauses at n shown steps (clamped); seeking to the end resumes live.
func (p *Player) Seek(n int) {
	p.cursor = min(max(n, 0), p.recorded)
	p.live = p.cursor == p.recorded
}
