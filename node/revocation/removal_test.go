package revocation

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/wire"
)

func TestRemovalVerdict(t *testing.T) {
	tests := []struct {
		name           string
		revoked, known bool
		want           bool
	}{
		{"removed: serial revoked, record gone", true, false, true},
		{"member: serial valid, record present", false, true, false},
		{"joining, record not replicated yet: serial valid", false, false, false},
		{"re-joined or re-issued: serial revoked but a record exists", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verdict(tt.revoked, tt.known); got != tt.want {
				t.Fatalf("Verdict(revoked=%v, known=%v) = %v, want %v", tt.revoked, tt.known, got, tt.want)
			}
		})
	}
}

func TestIsRemovalStatement(t *testing.T) {
	const self = "self"
	good := Witness{ID: "peer", Serial: "a1", Record: &api.Node{ID: "peer", CertSerial: "a1"}}
	removed := &wire.RemovalResponse{Removed: true}
	with := func(f func(*Witness)) Witness {
		w := good
		f(&w)
		return w
	}
	tests := []struct {
		name    string
		w       Witness
		answer  *wire.RemovalResponse
		callErr error
		want    bool
	}{
		{"positive answer from a known member", good, removed, nil, true},
		{"record without serial (older state)", with(func(w *Witness) { w.Record = &api.Node{ID: "peer"} }), removed, nil, true},
		// A partitioned node hears nothing, or hears "not removed": never a reset.
		{"no answer (partition)", good, nil, errors.New("connect: no route to host"), false},
		{"refusal", good, nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}, false},
		{"not removed", good, &wire.RemovalResponse{Removed: false}, nil, false},
		{"answer and an error", good, removed, errors.New("read: EOF"), false},
		{"nil answer", good, nil, nil, false},
		// Whoever says so must be a member by the asker's own replica.
		{"from itself", with(func(w *Witness) { w.ID = self; w.Record = &api.Node{ID: self, CertSerial: "a1"} }), removed, nil, false},
		{"from a node unknown to the replica and to raft", with(func(w *Witness) { w.Record = nil }), removed, nil, false},
		// A restarted removed node's replica is empty: its raft configuration vouches.
		{"empty replica, Witness in the raft configuration", with(func(w *Witness) { w.Record = nil; w.InRaft = true }), removed, nil, true},
		{"empty replica, raft member, revoked", with(func(w *Witness) { w.Record = nil; w.InRaft = true; w.Revoked = true }), removed, nil, false},
		{"replica record wins over raft", with(func(w *Witness) { w.Serial = "ff"; w.InRaft = true }), removed, nil, false},
		{"from a revoked certificate", with(func(w *Witness) { w.Revoked = true }), removed, nil, false},
		{"from another certificate than the replica's", with(func(w *Witness) { w.Serial = "ff" }), removed, nil, false},
		{"from its renewed certificate, not confirmed yet", with(func(w *Witness) {
			w.Serial = "b2"
			w.Record = &api.Node{ID: "peer", CertSerial: "a1", PendingCertSerial: "b2"}
		}), removed, nil, true},
		{"from a certificate without a name", with(func(w *Witness) { w.ID = "" }), removed, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsStatement(self, tt.w, tt.answer, tt.callErr); got != tt.want {
				t.Fatalf("IsStatement = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemovalSuspects(t *testing.T) {
	alive := map[string]membership.Meta{"self": {}, "a": {}, "gone": {}, "new": {}}
	known := map[string]bool{"self": true, "a": true}
	got := Suspects("self", alive, func(id string) bool { return known[id] })
	if want := []string{"gone", "new"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("suspects %v, want %v", got, want)
	}
	if got := Suspects("self", map[string]membership.Meta{"self": {}}, func(string) bool { return false }); len(got) != 0 {
		t.Fatalf("a node never suspects itself: %v", got)
	}
}

func TestShouldAskRemoval(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var never time.Time
	tests := []struct {
		name                          string
		now, lastAsk, leaderlessSince time.Time
		hinted                        bool
		want                          bool
	}{
		{"hint, never asked", at(0), never, never, true, true},
		{"hint right after a question", at(500 * time.Millisecond), at(0), never, true, false},
		{"hint a gap after a question", at(CheckGap), at(0), never, true, true},
		{"leader known, no hint", at(time.Hour), never, never, false, false},
		{"leaderless briefly (election)", at(Leaderless - time.Second), never, at(0), false, false},
		{"leaderless long", at(Leaderless), never, at(0), false, true},
		{"leaderless long, asked recently", at(Leaderless + 2*time.Second), at(Leaderless), at(0), false, false},
		{"leaderless long, asked long ago", at(2 * Leaderless), at(Leaderless), at(0), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShouldAsk(tt.now, tt.lastAsk, tt.leaderlessSince, tt.hinted); got != tt.want {
				t.Fatalf("ShouldAsk = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemovalHintFraming(t *testing.T) {
	h := Hint{From: "n1", Addr: "10.0.0.1:2377"}
	got, ok := ParseHint(EncodeHint(h))
	if !ok || got != h {
		t.Fatalf("round trip: %+v, %v", got, ok)
	}
	for name, msg := range map[string][]byte{
		"empty":          nil,
		"other type":     append([]byte{'X'}, EncodeHint(h)[1:]...),
		"not json":       []byte("R{"),
		"no port":        EncodeHint(Hint{From: "n1", Addr: "10.0.0.1"}),
		"type byte only": {hintType},
	} {
		if _, ok := ParseHint(msg); ok {
			t.Errorf("%s: parsed %q", name, msg)
		}
	}
}

func TestRemovalAskList(t *testing.T) {
	got := AskList([]string{"h:1", "self:1"}, []string{"a:1", "h:1", "b:1", "c:1", "d:1", "e:1"}, "self:1", 4)
	if want := []string{"h:1", "a:1", "b:1", "c:1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ask list %v, want %v", got, want)
	}
}

// An idle node with a leader and nobody to hint wakes for the removal loop
// every IdleTick, not every second (issue 10); a leaderless stretch
// or pending hints keep the one-second period the hint and ask timings need.
func TestRemovalTick(t *testing.T) {
	for _, c := range []struct {
		leaderKnown bool
		pending     int
		want        time.Duration
	}{
		{true, 0, IdleTick},
		{false, 0, time.Second},
		{true, 1, time.Second},
		{false, 2, time.Second},
	} {
		if got := Tick(c.leaderKnown, c.pending); got != c.want {
			t.Errorf("Tick(%v, %d) = %s, want %s", c.leaderKnown, c.pending, got, c.want)
		}
	}
	if IdleTick >= Leaderless {
		t.Errorf("IdleTick %s must stay well under Leaderless %s", IdleTick, Leaderless)
	}
}

// TestDueHints: a suspect is hinted once it has been unknown for
// SuspectGrace, then every HintEvery; one that stops being a suspect is
// forgotten, and its grace starts again if it comes back.
func TestDueHints(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	since, last := map[string]time.Time{}, map[string]time.Time{}
	steps := []struct {
		at       time.Duration
		suspects []string
		want     []string
	}{
		{0, []string{"a"}, nil}, // new: its grace starts
		{SuspectGrace - time.Millisecond, []string{"a", "b"}, nil}, // a still in grace, b new
		{SuspectGrace, []string{"a", "b"}, []string{"a"}},
		{SuspectGrace + HintEvery - time.Millisecond, []string{"a", "b"}, nil}, // a hinted lately, b in grace
		{SuspectGrace + HintEvery, []string{"a", "b"}, []string{"a"}},
		{SuspectGrace + HintEvery + time.Second, []string{"b"}, nil}, // a known now: forgotten
		{2 * SuspectGrace, []string{"a", "b"}, []string{"b"}},        // a back: grace again; b's is over
		{3 * SuspectGrace, []string{"a", "b"}, []string{"a", "b"}},
	}
	for i, st := range steps {
		now := t0.Add(st.at)
		got := DueHints(st.suspects, since, last, now)
		if !slices.Equal(got, st.want) {
			t.Fatalf("step %d (%v): due %v, want %v", i, st.at, got, st.want)
		}
		for _, id := range got {
			last[id] = now
		}
	}
}
