package resync

import (
	"context"
	"testing"
	"time"
)

// Every subscriber gets each tick; one that unsubscribed gets none.
func TestClockTicksEverySubscriber(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, 10*time.Millisecond)
	a, stopA := c.Ticks(time.Hour)
	b, stopB := c.Ticks(time.Hour)
	defer stopA()
	gone, stopGone := c.Subscribe()
	stopGone()
	for i := 0; i < 3; i++ {
		for _, ch := range []<-chan time.Time{a, b} {
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("tick %d not delivered", i)
			}
		}
	}
	stopB()
	select {
	case <-gone:
		t.Fatal("an unsubscribed channel got a tick")
	default:
	}
}

// A subscriber that does not read keeps one pending tick, as a ticker's
// channel does, and the clock never blocks on it.
func TestClockDoesNotBlockOnASlowSubscriber(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, time.Millisecond)
	slow, stopSlow := c.Subscribe()
	defer stopSlow()
	fast, stopFast := c.Subscribe()
	defer stopFast()
	for i := 0; i < 20; i++ {
		select {
		case <-fast:
		case <-time.After(5 * time.Second):
			t.Fatalf("tick %d: the clock is stuck behind a subscriber that does not read", i)
		}
	}
	if n := len(slow); n != 1 {
		t.Errorf("slow subscriber holds %d ticks, want 1", n)
	}
}

// A nil clock gives a loop a ticker of its own.
func TestNilClockTicksAlone(t *testing.T) {
	var c *Clock
	ch, stop := c.Ticks(time.Millisecond)
	defer stop()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no tick from a nil clock's own ticker")
	}
}
