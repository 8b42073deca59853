// Package resync is the agent's one clock for level-triggered resyncs: the
// reconciler, the network loop and gossip's reconnect each look at the
// whole state every couple of seconds, in case a change slipped past their
// events.
//
// Why one clock: on an idle agent each of those ticks was a wake-up of its
// own, and a wake-up, not the work it does, is what an idle agent's CPU is
// made of (~0.1–0.2 ms each on small VMs; node/membership). Driven by one
// timer, the three passes run in one wake-up every period instead of three
// at unrelated instants.
package resync

import (
	"context"
	"sync"
	"time"
)

// Period is how often the agent's loops resync.
const Period = 2 * time.Second

// Clock sends the time to every subscriber once per period. Safe for
// concurrent use.
type Clock struct {
	mu   sync.Mutex
	subs map[chan time.Time]struct{}
}

// New starts a clock that ticks every period until ctx ends.
func New(ctx context.Context, period time.Duration) *Clock {
	c := &Clock{subs: map[chan time.Time]struct{}{}}
	go c.run(ctx, period)
	return c
}

func (c *Clock) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			for ch := range c.subs {
				// One slot, as a ticker's: a subscriber still busy with
				// the last tick gets the next one, not a backlog.
				select {
				case ch <- now:
				default:
				}
			}
			c.mu.Unlock()
		}
	}
}

// Subscribe returns a channel that receives each tick, and the function
// that unsubscribes it.
func (c *Clock) Subscribe() (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// Ticks returns c's ticks, or, when c is nil (a loop run on its own, as in
// its tests), those of a ticker of its own with period; stop releases
// either.
func (c *Clock) Ticks(period time.Duration) (ticks <-chan time.Time, stop func()) {
	if c == nil {
		t := time.NewTicker(period)
		return t.C, t.Stop
	}
	return c.Subscribe()
}
