package netloop

import (
	"testing"
	"time"
)

func TestCoalesceWait(t *testing.T) {
	cases := []struct {
		since, want time.Duration
	}{
		{0, 50 * time.Millisecond},                     // in the middle of a burst: the rest of the window
		{20 * time.Millisecond, 30 * time.Millisecond}, // still in it
		{50 * time.Millisecond, 0},                     // the window is over: at once
		{2 * time.Second, 0},                           // after a quiet spell: at once (a stop's drain waits on it)
		{49*time.Millisecond + 999*time.Microsecond, time.Microsecond},
	}
	for _, c := range cases {
		if got := CoalesceWait(c.since); got != c.want {
			t.Errorf("CoalesceWait(%s) = %s, want %s", c.since, got, c.want)
		}
	}
}
