package harness

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// PollInterval is how often Eventually, Consistently and Poll re-check their
// condition. Short, because every check is a cheap CLI call and the
// benchmarks measure with this resolution.
const PollInterval = 100 * time.Millisecond

// Condition reports whether what a test waits for holds, and if not, a short
// description of what it saw instead (shown when the wait times out).
type Condition func() (ok bool, status string)

// Eventually polls cond every PollInterval until it holds, failing the test
// (t.Fatalf, so call it from the test goroutine) if it does not hold within
// timeout or before the test's deadline. It returns how long the wait took.
// Use it instead of sleeping "to let things settle".
func Eventually(t testing.TB, timeout time.Duration, cond Condition, what ...any) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), boundTimeout(t, timeout))
	defer cancel()
	took, err := Poll(ctx, cond)
	if err != nil {
		t.Fatalf("%s: %v", describe(what, "condition"), err)
	}
	return took
}

// Consistently checks cond every PollInterval for the whole duration d and
// fails the test the first time it does not hold. It is for negative
// properties ("the removed node never comes back"); d is an observation
// window, not a settling delay.
func Consistently(t testing.TB, d time.Duration, cond Condition, what ...any) {
	t.Helper()
	deadline := time.Now().Add(boundTimeout(t, d))
	for {
		ok, status := cond()
		if !ok {
			t.Fatalf("%s stopped holding: %s", describe(what, "condition"), status)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(PollInterval)
	}
}

// Poll checks cond every PollInterval until it holds or ctx ends. It returns
// the time from the call to the first check that held; on timeout the error
// carries the last status. It does not touch a testing.TB, so goroutines and
// benchmarks measuring a duration may use it.
func Poll(ctx context.Context, cond Condition) (time.Duration, error) {
	start := time.Now()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	last := ""
	for {
		ok, status := cond()
		if ok {
			return time.Since(start), nil
		}
		last = status
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("not reached after %s (%w); last: %s",
				time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// bounds holds the deadline Context set for a test (testing.TB → time.Time).
var bounds sync.Map

// Context bounds the whole test t: from now on every Eventually, Consistently
// and Cluster wait of t ends by now+timeout (or shortly before the test
// binary's -timeout, if earlier), so a test that would hang fails with the
// condition it was waiting for instead. It returns a context with the same
// deadline, cancelled when the test ends, for the test's own calls.
func Context(t testing.TB, timeout time.Duration) context.Context {
	d := boundTimeout(t, timeout)
	bounds.Store(t, time.Now().Add(d))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(func() {
		cancel()
		bounds.Delete(t)
	})
	return ctx
}

// boundTimeout shortens timeout so that it ends by the test's Context bound
// and before the test binary's deadline, leaving time for cleanup and log
// dumps. It never returns less than a second.
func boundTimeout(t testing.TB, timeout time.Duration) time.Duration {
	if v, ok := bounds.Load(t); ok {
		if left := time.Until(v.(time.Time)); left < timeout {
			timeout = max(left, time.Second)
		}
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			if left := time.Until(dl) - 30*time.Second; left < timeout {
				if left < time.Second {
					left = time.Second
				}
				return left
			}
		}
	}
	return timeout
}

func describe(what []any, def string) string {
	if len(what) == 0 {
		return def
	}
	if f, ok := what[0].(string); ok {
		return fmt.Sprintf(f, what[1:]...)
	}
	return fmt.Sprint(what...)
}
