package app

import (
	"strconv"

	"github.com/fastgen/fastgen/shared"
)

// Turn is one message of the chat transcript. Assistant turns are filled
// by a run; their measurements come from its final stats.
type Turn struct {
	Role    string
	Content string
	Run     *Run
}

// Chat is a multi-turn conversation.
type Chat struct {
	System string
	Turns  []Turn
}

// History returns the messages to send: the system prompt, then every
// finished turn, ending with the user's newest message.
func (c *Chat) History() []shared.Message {
	var out []shared.Message
	if c.System != "" {
		out = append(out, shared.Message{Role: shared.RoleSystem, Content: c.System})
	}
	for _, t := range c.Turns {
		content := t.Content
		if t.Run != nil {
			content = t.Run.Primary().Text()
		}
		if t.Role == shared.RoleAssistant && t.Run != nil && !t.Run.Finished() {
			continue // the turn being generated is not part of the context
		}
		out = append(out, shared.Message{Role: t.Role, Content: content})
	}
	return out
}

// Ask appends a user turn and the assistant turn that will answer it.
func (c *Chat) Ask(text string, run *Run) {
	c.Turns = append(c.Turns, Turn{Role: shared.RoleUser, Content: text}, Turn{Role: shared.RoleAssistant, Run: run})
}

// DropLastAnswer removes the trailing assistant turn so it can be
// regenerated; it reports whether there was one.
func (c *Chat) DropLastAnswer() bool {
	if n := len(c.Turns); n > 0 && c.Turns[n-1].Role == shared.RoleAssistant {
		c.Turns = c.Turns[:n-1]
		return true
	}
	return false
}

// Answer attaches a run to the trailing assistant turn, adding it if needed.
func (c *Chat) Answer(run *Run) {
	c.Turns = append(c.Turns, Turn{Role: shared.RoleAssistant, Run: run})
}

// Current is the run of the trailing assistant turn, or nil.
func (c *Chat) Current() *Run {
	if n := len(c.Turns); n > 0 && c.Turns[n-1].Run != nil {
		return c.Turns[n-1].Run
	}
	return nil
}

// IDs hands out request ids unique within the page, prefixed so that two
// tabs' ids stay distinguishable in server logs.
type IDs struct {
	Prefix string
	n      int
}

// Next returns a fresh id.
func (g *IDs) Next() string {
	g.n++
	return g.Prefix + strconv.Itoa(g.n)
}

// TurnStats is the one-line measurement summary under an answer.
type TurnStats struct {
	TTFTms, TokS        float64
	Prompt, Generated   int
	SavedBytes          int64
	SavedRatio          float64
	HaveStats, HaveSave bool
}

// Measure gathers a finished (or running) stream's numbers.
func Measure(s *Stream) TurnStats {
	var t TurnStats
	if s.Stats != nil {
		t.HaveStats = true
		t.TTFTms, t.TokS = s.Stats.TTFTMS, s.Stats.DecodeTokS
		t.Prompt, t.Generated = s.Stats.PromptTokens, s.Stats.GeneratedTokens
	} else {
		t.Generated = len(s.Tokens)
	}
	t.SavedBytes, t.SavedRatio, t.HaveSave = s.KVSaved()
	return t
}

// String renders the summary line shown under a chat answer.
func (t TurnStats) String() string {
	s := ""
	if t.HaveStats {
		s = "TTFT " + Num(t.TTFTms, 0) + " ms · " + Num(t.TokS, 1) + " tok/s · " +
			strconv.Itoa(t.Prompt) + " prompt / " + strconv.Itoa(t.Generated) + " generated tokens"
	} else {
		s = strconv.Itoa(t.Generated) + " tokens"
	}
	if t.HaveSave {
		s += " · KV saved " + Bytes(t.SavedBytes) + " (" + Pct(t.SavedRatio) + ")"
	}
	return s
}
