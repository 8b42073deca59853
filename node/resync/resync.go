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
	"sync/atomic"
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
// wakes and makes a syscall, Go's sysmon thread is woken too and sleeps
// and wakes once more before the process is idle again (two of the ~3.5
// thread wake-ups of each burst of an idle follower, in a scheduler trace).
// Timers that expire at the same instant run in one wake-up, and so do
// messages that arrive together. So the agent's periodic loops tick on one
// grid: every aligned ticker ticks at Origin + k·period, moved on to the
// next beat of raft's heartbeats (SetBeat), the heartbeats are sent on
// those beats (raftnode.Config.BeatOrigin), and under fast gossip probes
// on them too (membership.Config.UntilBeat).
//
// Why one grid for the whole cluster, counted from the Unix epoch
// (ShareOrigin, the fast profile): what wakes a follower is mostly what its
// peers send, the leader's heartbeat and the other members' probes. With a
// phase of its own per agent they arrived at unrelated instants, each a
// wake-up. On a wall-clock grid a follower's probe, the probes it receives
// and the leader's heartbeat all fall on the same beats, within the
// clocks' skew (NTP keeps a LAN within a millisecond or so; unsynchronised
// clocks only lose the merging). Idle 3-node fast cluster: median agent
// 0.49/0.54 -> 0.40/0.41 % of a core (node/membership/README.md).
//
// Why not for every profile: agents that share a machine then all wake on
// the same beats. 100 tolerant agents on this 2-core machine, the same
// bench one idle window each: on the shared grid 34 wake-ups a second per
// agent against 25 on phases of their own (the bursts, all at once, are
// preempted and spread), 0.467 % of a core against 0.400 %. (Forming them,
// 99 joins at once, retried 84 joins on the shared grid and 47 and 157 on
// phases of their own: too noisy to tell.) The tolerant profile is the one
// for such rigs, so it keeps a random phase per agent.

// origin is the instant every aligned ticker counts from, in nanoseconds
// after the Unix epoch: random within a second per process unless
// ShareOrigin made it the epoch.
var origin atomic.Int64

func init() { origin.Store(rand.Int64N(int64(time.Second))) }

// ShareOrigin puts this agent on the cluster-wide grid: aligned tickers
// and raft's beats count from the Unix epoch. Call it at start, before the
// loops.
func ShareOrigin() { origin.Store(0) }

// beat is the grid's step (SetBeat); 0: none.
var beat atomic.Int64

// Origin is the instant every aligned ticker counts its periods from.
func Origin() time.Time { return time.Unix(0, origin.Load()) }

// SetBeat makes aligned tickers of period d or longer tick on beats of d
// counted from Origin (raft's heartbeat interval: the agent sets it at
// start, before its loops). A ticker whose period is not a whole number
// of beats then ticks on the first beat at or after each of its instants:
// a 1 s ticker on 300 ms beats ticks 1.2, 2.1, 3.0 s past a whole 3 s, a
// second apart on average. Shorter tickers are left alone. 0 turns it off.
func SetBeat(d time.Duration) { beat.Store(int64(max(d, 0))) }

// UntilBeat is how long after now the next beat comes (a whole beat when
// now is on one), or 0 when no beat is set.
func UntilBeat(now time.Time) time.Duration {
	b := time.Duration(beat.Load())
	if b <= 0 {
		return 0
	}
	return untilBeat(now, Origin(), b)
}

// untilBeat is how long after now the next multiple of period past origin
// comes (a whole period when now is on one).
func untilBeat(now, origin time.Time, period time.Duration) time.Duration {
	return period - now.Sub(origin)%period
}

// untilTick is how long after now an aligned ticker of period ticks next:
// at the next multiple of period past origin, moved on to the next
// multiple of beat when beat is set and period is at least a beat.
func untilTick(now, origin time.Time, period, beat time.Duration) time.Duration {
	d := untilBeat(now, origin, period)
	if period < beat {
		return d
	}
	return untilOnBeat(now, origin, d, beat)
}

// After is how long a one-shot timer meant to fire d after now waits
// when it fires on the agent's grid instead: until the first beat at or
// after now+d. For loops whose next wait varies from pass to pass (a
// Ticker's period is fixed); without a beat set, d.
func After(now time.Time, d time.Duration) time.Duration {
	return untilOnBeat(now, Origin(), d, time.Duration(beat.Load()))
}

// untilOnBeat is d moved on to the first multiple of beat past origin at
// or after now+d (d itself without a beat).
func untilOnBeat(now, origin time.Time, d, beat time.Duration) time.Duration {
	if beat <= 0 {
		return d
	}
	if r := now.Add(d).Sub(origin) % beat; r != 0 {
		d += beat - r
	}
	return d
}

// next is untilTick for a ticker of period now, on this agent's beat.
func next(now time.Time, period time.Duration) time.Duration {
	return untilTick(now, Origin(), period, time.Duration(beat.Load()))
}

// Ticker is time.Ticker on the agent's grid: it ticks at Origin + k·period,
// on a beat (untilTick), with one slot: a slow reader gets the next tick,
// not a backlog. Stop it.
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
	tk.t = time.AfterFunc(next(time.Now(), period), tk.fire)
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
		tk.t.Reset(next(now, tk.period))
	}
}

// Reset changes the period; the next tick comes on the new period's next
// beat.
func (tk *Ticker) Reset(period time.Duration) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.period = period
	if !tk.done {
		tk.t.Reset(next(time.Now(), period))
	}
}

// Stop ends the ticks; C is not closed.
func (tk *Ticker) Stop() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.done = true
	tk.t.Stop()
}
