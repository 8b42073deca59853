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

func TestUntilBeat(t *testing.T) {
	o := time.Unix(0, 250*int64(time.Millisecond))
	at := func(ms int64) time.Time { return time.Unix(0, ms*int64(time.Millisecond)) }
	for _, c := range []struct {
		now    time.Time
		period time.Duration
		want   time.Duration
	}{
		{at(250), time.Second, time.Second}, // on a beat: the next one
		{at(251), time.Second, 999 * time.Millisecond},
		{at(1249), time.Second, time.Millisecond},
		{at(1250), 2 * time.Second, time.Second},
		{at(10_000), 2 * time.Second, 250 * time.Millisecond},
	} {
		if got := untilBeat(c.now, o, c.period); got != c.want {
			t.Errorf("untilBeat(%v, %v) = %v, want %v", c.now.Sub(o), c.period, got, c.want)
		}
	}
}

// TestTickersShareThePhase: tickers of 1 s and 2 s started at different
// moments tick at the same instants (within scheduling), on Origin's
// phase.
func TestTickersShareThePhase(t *testing.T) {
	a := NewTicker(100 * time.Millisecond)
	defer a.Stop()
	time.Sleep(37 * time.Millisecond) // a second ticker started off the first one's phase
	b := NewTicker(200 * time.Millisecond)
	defer b.Stop()
	for i := 0; i < 3; i++ {
		tb := <-b.C
		phase := tb.Sub(Origin()) % (100 * time.Millisecond)
		if phase > 20*time.Millisecond {
			t.Errorf("tick %d of the 200 ms ticker %v past its beat", i, phase)
		}
	}
	ta := <-a.C
	if phase := ta.Sub(Origin()) % (100 * time.Millisecond); phase > 20*time.Millisecond {
		t.Errorf("100 ms ticker %v past its beat", phase)
	}
}
