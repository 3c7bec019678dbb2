package app

import "time"

// Backoff spaces reconnection attempts: doubling from Base up to Max, with
// up to a quarter of jitter so that many tabs reconnecting after a server
// restart do not arrive in lockstep.
type Backoff struct {
	Base, Max time.Duration
	attempt   int
	// Rand returns a value in [0,1); nil means no jitter (tests).
	Rand func() float64
}

// Next is the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	d := b.Base
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	if b.Rand != nil {
		d -= time.Duration(float64(d) / 4 * b.Rand())
	}
	return d
}

// Reset is called once a connection is up.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts is how many delays were handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }
