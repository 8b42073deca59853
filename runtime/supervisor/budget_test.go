package supervisor

import (
	"testing"
	"time"
)

func TestLineBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b lineBudget
	if d := b.wait(t0); d != 0 {
		t.Fatalf("a fresh budget waits %v", d)
	}
	b.take(LineBurst-10, t0)
	if d := b.wait(t0); d != 0 {
		t.Fatalf("within the burst: wait %v", d)
	}
	b.take(16384, t0) // one read of empty lines overdraws
	d := b.wait(t0)
	want := time.Duration(float64(16384-10+1) / LineRate * float64(time.Second))
	if d < want-time.Millisecond || d > want+time.Millisecond {
		t.Fatalf("overdrawn: wait %v, want about %v", d, want)
	}
	if d := b.wait(t0.Add(d + time.Millisecond)); d != 0 {
		t.Fatalf("after the wait: %v more", d)
	}
	// Idle for long: back to the burst, no more.
	b.take(LineBurst, t0.Add(time.Hour))
	if d := b.wait(t0.Add(time.Hour)); d == 0 {
		t.Fatal("the burst is the most a bucket holds")
	}
	// A steady rate at LineRate never waits long: 500 lines every 10 ms.
	var s lineBudget
	now := t0
	for i := 0; i < 1000; i++ {
		if d := s.wait(now); d > 0 {
			t.Fatalf("step %d: a container at the line rate paused %v", i, d)
		}
		s.take(LineRate/100, now)
		now = now.Add(10 * time.Millisecond)
	}
}
