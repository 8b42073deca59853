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
	"math/rand/v2"
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
	t := NewTicker(period)
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
		t := NewTicker(period)
		return t.C, t.Stop
	}
	return c.Subscribe()
}

// Why aligned tickers: an idle agent's CPU is mostly wake-ups, and much of
// a wake-up's cost is the runtime's, not the work's: each time the process
// wakes and makes a syscall, Go's sysmon thread is woken too and polls
// every 20 µs until the process sleeps again (a third of an idle leader's
// CPU in a perf profile). Timers that expire at the same instant run in
// one wake-up. So the agent's periodic loops tick on one phase: every
// aligned ticker ticks at Origin + k·period, and raft's heartbeat beats
// start there too (raftnode.Config.BeatOrigin). A 1 s and a 2 s loop
// then wake together every other second instead of at unrelated instants.

// origin is this agent's phase, random per process so that agents sharing
// a machine (100 on one host in the dense tests) do not all wake in step.
var origin = time.Unix(0, rand.Int64N(int64(time.Second)))

// Origin is the instant every aligned ticker counts its periods from.
func Origin() time.Time { return origin }

// untilBeat is how long after now the next multiple of period past origin
// comes (a whole period when now is on one).
func untilBeat(now, origin time.Time, period time.Duration) time.Duration {
	return period - now.Sub(origin)%period
}

// Ticker is time.Ticker on the agent's phase: it ticks at Origin + k·period
// (one slot: a slow reader gets the next tick, not a backlog). Stop it.
type Ticker struct {
	C <-chan time.Time

	c      chan time.Time
	period time.Duration
	mu     sync.Mutex
	t      *time.Timer
	done   bool
}

// NewTicker starts a Ticker of period, which must be positive.
func NewTicker(period time.Duration) *Ticker {
	c := make(chan time.Time, 1)
	tk := &Ticker{C: c, c: c, period: period}
	tk.mu.Lock()
	tk.t = time.AfterFunc(untilBeat(time.Now(), origin, period), tk.fire)
	tk.mu.Unlock()
	return tk
}

func (tk *Ticker) fire() {
	now := time.Now()
	select {
	case tk.c <- now:
	default:
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if !tk.done {
		tk.t.Reset(untilBeat(now, origin, tk.period))
	}
}

// Reset changes the period; the next tick comes on the new period's next
// beat.
func (tk *Ticker) Reset(period time.Duration) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.period = period
	if !tk.done {
		tk.t.Reset(untilBeat(time.Now(), origin, period))
	}
}

// Stop ends the ticks; C is not closed.
func (tk *Ticker) Stop() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.done = true
	tk.t.Stop()
}
