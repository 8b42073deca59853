package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStartGateBounds: never more than n inside at once, and every caller
// gets in.
func TestStartGateBounds(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		g := newStartGate(n, time.Hour)
		var inside, most atomic.Int32
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leave, err := g.enter(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				now := inside.Add(1)
				for {
					m := most.Load()
					if now <= m || most.CompareAndSwap(m, now) {
						break
					}
				}
				time.Sleep(time.Millisecond) // hold the slot while others try
				inside.Add(-1)
				leave()
				leave() // a second call changes nothing
			}()
		}
		wg.Wait()
		if got := most.Load(); got > int32(n) || got < 1 {
			t.Errorf("n=%d: %d inside at once", n, got)
		}
		if len(g.slots) != 0 {
			t.Errorf("n=%d: %d slots still taken", n, len(g.slots))
		}
	}
}

// TestStartGateHeedsContext: a waiter whose context ends gets its error
// and takes no slot.
func TestStartGateHeedsContext(t *testing.T) {
	g := newStartGate(1, time.Hour)
	leave, err := g.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.enter(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("enter with a cancelled context: %v, want context.Canceled", err)
	}
	leave()
	if len(g.slots) != 0 {
		t.Fatalf("%d slots taken, want 0", len(g.slots))
	}
}

// TestStartGateStuckStart: a start that never leaves frees its slot after
// the stuck bound, so the next one gets in; its late leave does not free
// a slot it no longer holds.
func TestStartGateStuckStart(t *testing.T) {
	g := newStartGate(1, 20*time.Millisecond)
	late, err := g.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	next, err := g.enter(ctx) // the first one never called leave
	if err != nil {
		t.Fatalf("behind a stuck start: %v", err)
	}
	late() // must not free next's slot
	if len(g.slots) != 1 {
		t.Fatalf("%d slots taken after the stuck start's late leave, want 1 (next's)", len(g.slots))
	}
	next()
	if len(g.slots) != 0 {
		t.Fatalf("%d slots taken, want 0", len(g.slots))
	}
}
