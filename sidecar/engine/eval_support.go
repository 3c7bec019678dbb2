package engine

import (
	"context"
	"fmt"

	"github.com/fastgen/fastgen/sidecar/kvcache"
	"github.com/fastgen/fastgen/sidecar/model"
)

// DecodeObserved is Decode with an attention observer: obs sees every head's
// attention probabilities right after it attends and before its policy
// evicts anything. The evaluator runs a full-cache shadow this way to measure
// the attention mass a compressed cache loses. obs is called concurrently for
// different heads; a nil obs makes it exactly Decode.
func (s *Session) DecodeObserved(ctx context.Context, token int, obs model.AttentionObserver) ([]float32, error) {
	if obs == nil {
		return s.Decode(ctx, token)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.cache.Len() >= s.e.Model.Config.Ctx {
		return nil, fmt.Errorf("%w: the context length %d is reached", ErrContextFull, s.e.Model.Config.Ctx)
	}
	f := [1]kvcache.Flags{s.e.Classes.Of(token)}
	t := [1]int{token}
	s.e.compute.Lock()
	logits, err := s.state.Forward(s.cache, model.Batch{Tokens: t[:], Flags: f[:], Observe: true, Attention: obs})
	s.e.compute.Unlock()
	if err != nil {
		return nil, err
	}
	s.history = append(s.history, token)
	return logits, nil
}
