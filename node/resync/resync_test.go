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

// at is the instant n milliseconds after the Unix epoch; ms is n
// milliseconds: the grid tests' units.
func at(n int64) time.Time { return time.Unix(0, n*int64(time.Millisecond)) }

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

func TestUntilBeat(t *testing.T) {
	o := time.Unix(0, 250*int64(time.Millisecond))
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

func TestUntilTick(t *testing.T) {
	o := time.Unix(0, 0)
	for _, c := range []struct {
		name         string
		now          time.Time
		period, beat time.Duration
		want         time.Duration
	}{
		{"no beat: the period's next multiple", at(100), time.Second, 0, ms(900)},
		{"on both grids", at(2_900), time.Second, ms(300), ms(100)},
		{"1 s on 300 ms beats: 1.0 moves to 1.2", at(100), time.Second, ms(300), ms(1_100)},
		{"after 1.2: 2.0 moves to 2.1", at(1_200), time.Second, ms(300), ms(900)},
		{"after 2.1: 3.0 is a beat", at(2_100), time.Second, ms(300), ms(900)},
		{"2 s on 300 ms beats: 2.0 moves to 2.1", at(0), 2 * time.Second, ms(300), ms(2_100)},
		{"a whole number of beats", at(50), ms(900), ms(300), ms(850)},
		{"shorter than a beat: left alone", at(50), ms(100), ms(300), ms(50)},
		{"the beat itself", at(299), ms(300), ms(300), ms(1)},
		{"1 s beats (tolerant), 5 s period", at(4_999), 5 * time.Second, time.Second, ms(1)},
	} {
		if got := untilTick(c.now, o, c.period, c.beat); got != c.want {
			t.Errorf("%s: untilTick(%v, %v, %v) = %v, want %v", c.name, c.now.Sub(o), c.period, c.beat, got, c.want)
		}
	}
}

func TestUntilOnBeat(t *testing.T) {
	o := time.Unix(0, 0)
	for _, c := range []struct {
		name    string
		now     time.Time
		d, beat time.Duration
		want    time.Duration
	}{
		{"no beat: d", at(100), 5 * time.Second, 0, 5 * time.Second},
		{"lands on a beat: d", at(100), ms(200), ms(300), ms(200)},
		{"moved on to the next beat", at(100), 5 * time.Second, ms(300), ms(5_000)},
		{"moved on by almost a beat", at(101), 5 * time.Second, ms(300), ms(5_299)},
		{"zero on a beat: now", at(600), 0, ms(300), 0},
		{"zero off a beat: the next one", at(601), 0, ms(300), ms(299)},
		{"1 s beats: 5.2 moves to 6.0", at(4_500), ms(700), time.Second, ms(1_500)},
	} {
		if got := untilOnBeat(c.now, o, c.d, c.beat); got != c.want {
			t.Errorf("%s: untilOnBeat(%v, %v, %v) = %v, want %v", c.name, c.now.Sub(o), c.d, c.beat, got, c.want)
		}
	}
}

// TestTicksLandOnBeats: a 1 s ticker on 300 ms beats, stepped through a
// minute from every tick it gives, always lands on a beat, is never more
// than a beat late against its own grid, and averages its period.
func TestTicksLandOnBeats(t *testing.T) {
	o := time.Unix(0, 0)
	beat, period := 300*time.Millisecond, time.Second
	now := time.Unix(0, 0)
	var n int
	for now.Sub(o) < time.Minute {
		d := untilTick(now, o, period, beat)
		if d <= 0 {
			t.Fatalf("at %v: next tick %v, not after now", now.Sub(o), d)
		}
		now = now.Add(d)
		n++
		if off := now.Sub(o) % beat; off != 0 {
			t.Fatalf("tick at %v is %v off its beat", now.Sub(o), off)
		}
		if late := now.Sub(o) % period; late >= beat && late != 0 {
			t.Fatalf("tick at %v is %v past its period's instant", now.Sub(o), late)
		}
	}
	if n != 60 {
		t.Errorf("%d ticks in a minute of a 1 s ticker, want 60", n)
	}
}

func TestUntilBeatNeedsABeat(t *testing.T) {
	was := origin.Load()
	defer func() { SetBeat(0); origin.Store(was) }()
	ShareOrigin()
	if !Origin().Equal(time.Unix(0, 0)) {
		t.Fatalf("ShareOrigin: origin %v, want the Unix epoch", Origin())
	}
	SetBeat(0)
	if d := UntilBeat(time.Now()); d != 0 {
		t.Errorf("UntilBeat without a beat = %v, want 0", d)
	}
	SetBeat(300 * time.Millisecond)
	now := time.Unix(0, 0).Add(7*time.Second + 150*time.Millisecond)
	if d := UntilBeat(now); d != 50*time.Millisecond {
		t.Errorf("UntilBeat(7.15 s) on 300 ms beats = %v, want 50ms", d)
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
