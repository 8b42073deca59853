package heartbeat

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestKeepHolding(t *testing.T) {
	ok := raft.AppendEntriesResponse{Term: 5, Success: true}
	cases := []struct {
		name     string
		resp     raft.AppendEntriesResponse
		err      error
		nonvoter bool
		slow     time.Duration
		forced   bool
		closed   bool
		newest   uint64
		want     bool
	}{
		{"a non-voter's good answer", ok, nil, true, time.Second, false, false, 5, true},
		{"a voter's: the lease counts it", ok, nil, false, time.Second, false, false, 5, false},
		{"non-voters not held", ok, nil, true, 0, false, false, 5, false},
		{"failed", ok, errors.New("cut"), true, time.Second, false, false, 5, false},
		{"refused", raft.AppendEntriesResponse{Term: 5}, nil, true, time.Second, false, false, 5, false},
		{"a higher term answered", raft.AppendEntriesResponse{Term: 6, Success: true}, nil, true, time.Second, false, false, 5, false},
		{"a newer term seen elsewhere", ok, nil, true, time.Second, false, false, 6, false},
		{"VerifyLeader in flight", ok, nil, true, time.Second, true, false, 5, false},
		{"stopped", ok, nil, true, time.Second, false, true, 5, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.resp
			if got := keepHolding(hbReq(5), &resp, tc.err, tc.nonvoter, tc.slow, tc.forced, tc.closed, tc.newest); got != tc.want {
				t.Fatalf("keepHolding = %v, want %v", got, tc.want)
			}
		})
	}
}

// scriptedLocked answers every AppendEntries with resp or err, safe
// for the held calls' concurrent use.
type scriptedLocked struct {
	raft.Transport
	mu    sync.Mutex
	resp  raft.AppendEntriesResponse
	err   error
	calls int
	// onSend, when set, runs inside the next AppendEntries (then is
	// cleared): what happens while a heartbeat is on the wire.
	onSend func()
}

func (s *scriptedLocked) AppendEntries(_ raft.ServerID, _ raft.ServerAddress,
	_ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if f := s.onSend; f != nil {
		s.onSend = nil
		f()
	}
	if s.err != nil {
		return s.err
	}
	*resp = s.resp
	return nil
}

func (s *scriptedLocked) set(f func()) { s.mu.Lock(); f(); s.mu.Unlock() }

func (s *scriptedLocked) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

// TestTransportKeepsNonvoterCall: with KeepNonvoters, one of raft's
// heartbeat calls to a non-voter sends a real heartbeat on every slow beat
// and returns only for what raft must see: a failure, a higher term, the
// peer's promotion, a forced verify, StopHolding, or after maxKept of
// them. Without it the call returns after its one heartbeat.
func TestTransportKeepsNonvoterCall(t *testing.T) {
	const slow = 20 * time.Millisecond
	good := raft.AppendEntriesResponse{Term: 5, Success: true}
	newT := func(keep bool) (*Transport, *scriptedLocked) {
		inner := &scriptedLocked{resp: good}
		tt := New(inner, Config{Interval: 10 * time.Millisecond, Slow: slow, KeepNonvoters: keep})
		tt.SetNonvoters([]raft.ServerID{"f"})
		return tt, inner
	}
	start := func(tt *Transport) <-chan error {
		done := make(chan error, 1)
		go func() {
			var resp raft.AppendEntriesResponse
			done <- tt.AppendEntries("f", "a-f", hbReq(5), &resp)
		}()
		return done
	}
	ended := func(done <-chan error) (error, bool) {
		select {
		case err := <-done:
			return err, true
		case <-time.After(5 * time.Second):
			return nil, false
		}
	}

	// Without: one heartbeat, then the call returns.
	tt, inner := newT(false)
	if err, ok := ended(start(tt)); !ok || err != nil || inner.count() != 1 {
		t.Fatalf("without KeepNonvoters: ended %v with %v after %d heartbeats, want nil after 1", ok, err, inner.count())
	}

	// On its own, after maxKept kept heartbeats (raft then sees its
	// goroutine's stop, should it have missed one).
	tt, inner = newT(true)
	if err, ok := ended(start(tt)); !ok || err != nil || inner.count() != maxKept+1 {
		t.Fatalf("kept call: ended %v with %v after %d heartbeats, want nil after %d", ok, err, inner.count(), maxKept+1)
	}

	// StopHolding may land while the call's heartbeat is on the wire:
	// the call then returns that heartbeat's real answer (nil), not
	// ErrTransportShutdown. Either way it returns, and nothing else.
	stopped := func(err error) bool { return err == nil || errors.Is(err, raft.ErrTransportShutdown) }
	cut := func(err error) bool { return err != nil && err.Error() == "cut" }
	none := func(err error) bool { return err == nil }
	type ender struct {
		name string
		end  func(*Transport, *scriptedLocked)
		want func(error) bool
	}
	for _, e := range []ender{
		{"a failure", func(_ *Transport, in *scriptedLocked) { in.set(func() { in.err = errors.New("cut") }) }, cut},
		{"a higher term", func(_ *Transport, in *scriptedLocked) { in.set(func() { in.resp.Term = 6 }) }, none},
		{"a refusal", func(_ *Transport, in *scriptedLocked) { in.set(func() { in.resp.Success = false }) }, none},
		{"the promotion", func(tt *Transport, _ *scriptedLocked) { tt.SetVoter("f") }, none},
		{"the peer leaving the non-voters", func(tt *Transport, _ *scriptedLocked) { tt.SetNonvoters(nil) }, none},
		{"a forced verify", func(tt *Transport, _ *scriptedLocked) { tt.ForceOn() }, none},
		{"StopHolding", func(tt *Transport, _ *scriptedLocked) { tt.StopHolding() }, stopped},
		{"StopHolding while a heartbeat is on the wire", func(tt *Transport, in *scriptedLocked) {
			in.set(func() { in.onSend = tt.StopHolding })
		}, none},
	} {
		t.Run(e.name, func(t *testing.T) {
			tt, inner := newT(true)
			done := start(tt)
			waitFor(t, "three real heartbeats in one call", func() bool { return inner.count() >= 3 })
			select {
			case err := <-done:
				t.Fatalf("the call returned (%v) after %d heartbeats, want it kept", err, inner.count())
			default:
			}
			if tt.Kept() < 2 {
				t.Fatalf("Kept() = %d after %d heartbeats, want >= 2", tt.Kept(), inner.count())
			}
			// One per slow beat, not more: the window is the measurement.
			from, began := inner.count(), time.Now()
			time.Sleep(10 * slow)
			if n, most := inner.count()-from, int(time.Since(began)/slow)+2; n > most {
				t.Fatalf("%d heartbeats in %v, want at most %d (one per %v)", n, time.Since(began), most, slow)
			}
			e.end(tt, inner)
			err, ok := ended(done)
			if !ok {
				t.Fatalf("the call did not return after %s", e.name)
			}
			if !e.want(err) {
				t.Fatalf("after %s: error %v", e.name, err)
			}
		})
	}
}

// TestAwaitReturn: a non-voter's kept call answers on the wire every beat
// but returns nothing to raft, so AwaitReturn sees no answer raft has;
// once the peer is set a voter, the released call's next answer returns,
// and AwaitReturn says so (what a promotion waits for, raftnode.AddVoter).
func TestAwaitReturn(t *testing.T) {
	const slow = 20 * time.Millisecond
	inner := &scriptedLocked{resp: raft.AppendEntriesResponse{Term: 5, Success: true}}
	tt := New(inner, Config{Interval: 10 * time.Millisecond, Slow: slow, KeepNonvoters: true})
	tt.SetNonvoters([]raft.ServerID{"f"})
	done := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		done <- tt.AppendEntries("f", "a-f", hbReq(5), &resp)
	}()
	waitFor(t, "two real heartbeats in the kept call", func() bool { return inner.count() >= 2 })
	since := time.Now()
	if tt.AwaitReturn(context.Background(), "f", since, 5*slow) {
		t.Fatal("AwaitReturn saw an answer while the call was kept from raft")
	}
	if tt.HeardFrom("f").IsZero() {
		t.Fatal("HeardFrom is zero although the peer answers on the wire")
	}
	since = time.Now()
	tt.SetVoter("f")
	if !tt.AwaitReturn(context.Background(), "f", since, 5*time.Second) {
		t.Fatal("AwaitReturn saw no answer after the promotion released the call")
	}
	if err := <-done; err != nil {
		t.Fatalf("released call: %v", err)
	}
	// A cancelled wait ends at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if tt.AwaitReturn(ctx, "f", time.Now(), time.Minute) {
		t.Fatal("AwaitReturn with a cancelled context found a later answer")
	}
}
