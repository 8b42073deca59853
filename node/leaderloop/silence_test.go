package leaderloop

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestSilent(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	w := time.Second
	cases := []struct {
		name               string
		heardAgo, readyAgo time.Duration
		never, seeded      bool
		window             time.Duration
		want               bool
	}{
		{"answered a moment ago", 200 * time.Millisecond, 5 * time.Second, false, false, w, false},
		{"silent for the window", time.Second, 5 * time.Second, false, false, w, true},
		{"silent past the window", 3 * time.Second, 5 * time.Second, false, false, w, true},
		{"never heard", 0, 5 * time.Second, true, false, w, false},
		{"not heard since it was seen ready", 3 * time.Second, 2 * time.Second, false, false, w, false},
		{"seeded previous leader (ready since zero)", 2 * time.Second, 0, false, true, w, true},
		{"verdict off", 3 * time.Second, 5 * time.Second, false, false, 0, false},
	}
	for _, c := range cases {
		heard := now.Add(-c.heardAgo)
		if c.never {
			heard = time.Time{}
		}
		ready := now.Add(-c.readyAgo)
		if c.seeded {
			ready = time.Time{}
		}
		if got := Silent(heard, ready, now, c.window); got != c.want {
			t.Errorf("%s: Silent = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSilenceWindowFor(t *testing.T) {
	base := 1800 * time.Millisecond
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{0, base}, {3, base}, {10, base}, {100, 2 * base}} {
		if got := SilenceWindowFor(base, c.n); got != c.want {
			t.Errorf("n=%d: %v, want %v", c.n, got, c.want)
		}
	}
}

// TestSilenceRecord: a node counts only once raft answered after this term
// saw it ready; one marked down for silence is unanswered until raft hears
// from it again; a non-member is left to gossip; due times only nodes that
// missed an answer.
func TestSilenceRecord(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	interval := 300 * time.Millisecond
	s := newSilence(time.Second)
	s.seed("old", t0.Add(-500*time.Millisecond))
	statuses := map[string]string{"a": api.NodeReady, "b": api.NodeReady, "old": api.NodeReady,
		"worker": api.NodeReady, "d": api.NodeDown}
	members := map[string]bool{"a": true, "b": true, "old": true}
	s.observe(statuses, members, t0)
	heard := map[string]time.Time{"a": t0.Add(100 * time.Millisecond), "b": t0.Add(-time.Second), "worker": t0.Add(100 * time.Millisecond)}
	heardOf := func(id string) time.Time { return heard[id] }

	now := t0.Add(400 * time.Millisecond)
	if s.silent("b", heardOf, now.Add(time.Hour)) {
		t.Error("b: not heard since it was seen ready, yet silent")
	}
	if !s.silent("old", heardOf, t0.Add(600*time.Millisecond)) {
		t.Error("old: seeded answer 1.1 s ago, a answered 500 ms ago, not silent")
	}
	if s.silent("a", heardOf, now) {
		t.Error("a: answered 300 ms ago, silent")
	}
	heard["b"] = t0.Add(time.Second) // b answers again
	if !s.silent("a", heardOf, t0.Add(1100*time.Millisecond)) {
		t.Error("a: silent 1 s while b answered 100 ms ago, not silent")
	}
	// A stalled leader: every answer is old at once, nobody is silent.
	if s.silent("a", heardOf, t0.Add(3*time.Second)) {
		t.Error("a: silent while no member was heard within the window (the leader stalled)")
	}
	heard["b"] = t0.Add(-time.Second)
	if s.silent("worker", heardOf, t0.Add(time.Hour)) {
		t.Error("worker: not a raft member, yet silent")
	}
	// Due: at 400 ms only the seeded old leader has missed an answer.
	if due, ok := s.due(heardOf, now, interval); !ok || !due.Equal(t0.Add(500*time.Millisecond)) {
		t.Errorf("due at 400 ms = %v %v, want old's at 500 ms", due, ok)
	}
	// At 350 ms after a's answer, a is overdue too, but old is due first.
	delete(s.seeded, "old")
	delete(s.readySince, "old")
	if due, ok := s.due(heardOf, t0.Add(450*time.Millisecond), interval); !ok || !due.Equal(t0.Add(1100*time.Millisecond)) {
		t.Errorf("due at 450 ms = %v %v, want a's at 1.1 s", due, ok)
	}
	if _, ok := s.due(heardOf, t0.Add(350*time.Millisecond), interval); ok {
		t.Error("due with every member answered within the interval")
	}

	// a is marked down for silence: unanswered until raft hears it again.
	downAt := t0.Add(1200 * time.Millisecond)
	s.silenced["a"] = downAt
	statuses["a"] = api.NodeDown
	s.observe(statuses, members, downAt)
	if !s.unanswered("a", heard["a"]) {
		t.Error("a: down for silence, not heard since, yet answered")
	}
	if s.unanswered("a", downAt.Add(time.Millisecond)) {
		t.Error("a: heard after its mark, still unanswered")
	}
	if s.unanswered("d", time.Time{}) {
		t.Error("d: down for gossip, counted unanswered")
	}
	// Back to ready: the mark goes, and its ready time is new.
	statuses["a"] = api.NodeReady
	later := downAt.Add(5 * time.Second)
	s.observe(statuses, members, later)
	if _, ok := s.silenced["a"]; ok {
		t.Error("a: ready again, still marked")
	}
	if !s.readySince["a"].Equal(later) {
		t.Errorf("a: ready since %v, want %v", s.readySince["a"], later)
	}
	// A node that left the state leaves the record.
	delete(statuses, "b")
	s.observe(statuses, members, later)
	if _, ok := s.readySince["b"]; ok {
		t.Error("b: gone from the state, still recorded")
	}
}
