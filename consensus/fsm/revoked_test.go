package fsm

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// revocationHistory is a log with revocations of every kind, each
// certificate's expiry (NotAfter) an offset from t0:
//
//   - "legacy": revoked by a log of level 1, no expiry known;
//   - n1 holds serial-n1, expired at +30m, not revoked (a node down past
//     its certificate's end);
//   - n2 renewed twice: serial-n2 (+1h) and b (+2h) revoked, c (+3h) current;
//   - "orphan" (+1h): recorded, but its node's record was refused;
//   - n3 joined with d (+1h) and was removed: d has no expiry any more.
func revocationHistory(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.bootstrap()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	h.must(command.RevokeCert{Serial: "legacy"})
	h.must(command.RecordCertExpiry{Serial: "serial-n1", NotAfter: at(30 * time.Minute)})
	h.must(command.Batch{Commands: []command.Command{
		command.UpsertNode{Node: testNode("n2", "host2")},
		command.RecordCertExpiry{Serial: "serial-n2", NotAfter: at(time.Hour)},
	}})
	h.must(command.Batch{Commands: []command.Command{
		command.SetNodeCert{ID: "n2", Serial: "b", Revoke: []string{"serial-n2"}},
		command.RecordCertExpiry{Serial: "b", NotAfter: at(2 * time.Hour)},
	}})
	h.must(command.Batch{Commands: []command.Command{
		command.SetNodeCert{ID: "n2", Serial: "c", Revoke: []string{"b"}},
		command.RecordCertExpiry{Serial: "c", NotAfter: at(3 * time.Hour)},
	}})
	if r := h.apply(command.Batch{Commands: []command.Command{
		command.SetNodeCert{ID: "gone", Serial: "orphan"},
		command.RecordCertExpiry{Serial: "orphan", NotAfter: at(time.Hour)},
	}}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("renewal of a node without a record: %v", r.Err)
	}
	n3 := testNode("n3", "host3")
	n3.CertSerial = "d"
	h.must(command.Batch{Commands: []command.Command{
		command.UpsertNode{Node: n3},
		command.RecordCertExpiry{Serial: "d", NotAfter: at(time.Hour)},
	}})
	h.must(command.RemoveNode{ID: "n3", Now: at(10 * time.Minute)})
	return h
}

// TestTrimRevoked: a trim drops the serials whose certificate expired
// before the time it carries — from the revocation list and from the
// expiries — and nothing else: not a revoked certificate still valid then,
// not a serial of unknown expiry (revoked by an old log, or at a removal),
// not the expiry of a node's current certificate. Every replica that
// applies the same entry gets the same state: the time is in the command.
func TestTrimRevoked(t *testing.T) {
	hour := time.Hour
	for _, tc := range []struct {
		name        string
		before      time.Duration // ExpiredBefore, from t0
		gone        int           // the answer: serials that left the list
		wantRevoked []string
		wantExpiry  []string
	}{
		{"nothing expired", 0, 0,
			[]string{"legacy", "serial-n2", "b", "d"}, []string{"b", "c", "orphan", "serial-n1", "serial-n2"}},
		{"a node's expired current certificate keeps its expiry", hour - time.Nanosecond, 0,
			[]string{"legacy", "serial-n2", "b", "d"}, []string{"b", "c", "orphan", "serial-n1", "serial-n2"}},
		{"valid up to the instant it expires", hour, 0,
			[]string{"legacy", "serial-n2", "b", "d"}, []string{"b", "c", "orphan", "serial-n1", "serial-n2"}},
		{"the first renewal's serial and the orphan go", 90 * time.Minute, 1,
			[]string{"legacy", "b", "d"}, []string{"b", "c", "serial-n1"}},
		{"both renewals' serials go", 150 * time.Minute, 2,
			[]string{"legacy", "d"}, []string{"c", "serial-n1"}},
		{"long after: unknown expiries and current certificates stay", 1000 * hour, 2,
			[]string{"legacy", "d"}, []string{"c", "serial-n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := revocationHistory(t)
			pre := h.store.Cluster()
			cut := t0.Add(tc.before)
			got := h.must(command.TrimRevoked{ExpiredBefore: cut})
			if got != tc.gone {
				t.Errorf("answer %v, want %d", got, tc.gone)
			}
			c := h.store.Cluster()
			if !slices.Equal(c.Revoked, tc.wantRevoked) {
				t.Errorf("revoked %v, want %v", c.Revoked, tc.wantRevoked)
			}
			if keys := slices.Sorted(maps.Keys(c.CertExpiry)); !slices.Equal(keys, tc.wantExpiry) {
				t.Errorf("expiries of %v, want %v", keys, tc.wantExpiry)
			}
			// Never un-revoked: a serial whose certificate is valid at the
			// cut, or whose end is unknown.
			for _, s := range pre.Revoked {
				if exp, ok := pre.CertExpiry[s]; (!ok || !exp.Before(cut)) && !h.store.IsRevoked(s) {
					t.Errorf("serial %s (expiry %v known %v) is no longer revoked", s, exp, ok)
				}
			}
			// A second trim at the same time finds nothing.
			if again := h.must(command.TrimRevoked{ExpiredBefore: cut}); again != 0 {
				t.Errorf("second trim answered %v", again)
			}
		})
	}
}

// TestRevokedUnexpiredStaysRefused walks the clock through a node's
// renewals with a trim after each: the store keeps refusing every revoked
// certificate until it has expired, and the list stays as short as the
// certificates still valid (plus those of unknown expiry).
func TestRevokedUnexpiredStaysRefused(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	const life = 30 * 24 * time.Hour
	prev := "serial-n2" // issued before expiries were recorded: never trimmed
	expiry := map[string]time.Time{}
	for i := range 20 {
		now := t0.Add(time.Duration(i) * life / 3) // a renewal at a third of the life
		serial := "r" + string(rune('a'+i))
		h.must(command.Batch{Commands: []command.Command{
			command.SetNodeCert{ID: "n2", Serial: serial, Revoke: []string{prev}},
			command.RecordCertExpiry{Serial: serial, NotAfter: now.Add(life)},
		}})
		expiry[serial] = now.Add(life)
		prev = serial
		h.must(command.TrimRevoked{ExpiredBefore: now})
		for s, end := range expiry {
			revoked := h.store.IsRevoked(s)
			switch {
			case s == serial && revoked:
				t.Fatalf("step %d: the current certificate %s is revoked", i, s)
			case s != serial && !end.Before(now) && !revoked:
				t.Fatalf("step %d: %s, valid until %v, is not revoked at %v", i, s, end, now)
			case end.Before(now) && revoked:
				t.Fatalf("step %d: %s expired at %v and is still listed", i, s, end)
			}
		}
		if !h.store.IsRevoked("serial-n2") {
			t.Fatalf("step %d: the serial of unknown expiry was trimmed", i)
		}
		if n := len(h.store.Cluster().Revoked); n > 4 {
			t.Fatalf("step %d: %d serials listed: %v", i, n, h.store.Cluster().Revoked)
		}
	}
}

// TestRecordCertExpiry: an expiry needs a serial and a time, is never given
// to a revoked serial (one revoked without it stays revoked for good), and
// a removal forgets the removed node's so that its serial stays revoked:
// the removed host's question is answered from it.
func TestRecordCertExpiry(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.RevokeCert{Serial: "old"})
	for _, c := range []command.RecordCertExpiry{
		{NotAfter: t0},
		{Serial: "x"},
		{Serial: "old", NotAfter: t0},
	} {
		before := stateOf(t, h.store)
		if r := h.apply(c); !errors.Is(r.Err, consensus.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", c, r.Err)
		}
		if stateOf(t, h.store) != before {
			t.Errorf("%+v changed the state", c)
		}
	}
	if r := h.apply(command.TrimRevoked{}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Errorf("trim without a time: %v, want ErrInvalid", r.Err)
	}
	h.must(command.RecordCertExpiry{Serial: "serial-n1", NotAfter: t0})
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.RecordCertExpiry{Serial: "serial-n2", NotAfter: t0})
	h.must(command.RemoveNode{ID: "n2", Now: t0})
	if _, ok := h.store.Cluster().CertExpiry["serial-n2"]; ok {
		t.Fatal("the removed node's serial keeps its expiry")
	}
	h.must(command.TrimRevoked{ExpiredBefore: t0.Add(1000 * time.Hour)})
	if !h.store.IsRevoked("serial-n2") || !h.store.IsRevoked("old") {
		t.Fatalf("revoked after the trim: %v", h.store.Cluster().Revoked)
	}
	if _, ok := h.store.Cluster().CertExpiry["serial-n1"]; !ok {
		t.Fatal("the trim dropped the expiry of n1's current certificate")
	}
}

// TestRevocationsOfOldLogs: a log of protocol level 1 (no expiries)
// applies as before — its snapshot has no field it did not have — a
// snapshot written before expiries existed restores, and no trim drops
// what either revoked; a snapshot with expiries round-trips.
func TestRevocationsOfOldLogs(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.SetNodeCert{ID: "n2", Serial: "b", Revoke: []string{"serial-n2"}})
	h.must(command.Batch{Commands: []command.Command{command.RevokeCert{Serial: "x"}, command.UpsertNode{Node: testNode("n3", "host3")}}})
	h.must(command.RemoveNode{ID: "n2", Now: t0})
	var buf bytes.Buffer
	if err := consensus.WriteSnapshot(h.store, &buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "cert_expiry") {
		t.Fatalf("a level-1 log's snapshot holds expiries: %s", buf.String())
	}
	want := []string{"serial-n2", "x", "b"}
	if got := h.store.Cluster().Revoked; !slices.Equal(got, want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}

	// The same document restored (as one an older binary wrote), then
	// trimmed by a newer leader long after.
	other := newHarness(t)
	if err := other.fsm.Restore(readCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	other.idx = h.idx
	other.must(command.TrimRevoked{ExpiredBefore: t0.Add(1000 * time.Hour)})
	if got := other.store.Cluster().Revoked; !slices.Equal(got, want) {
		t.Fatalf("after a trim: revoked %v, want %v", got, want)
	}
	for _, s := range want {
		if !other.store.IsRevoked(s) {
			t.Fatalf("%s not revoked after restore", s)
		}
	}

	// Expiries survive a snapshot.
	other.must(command.RecordCertExpiry{Serial: "serial-n3", NotAfter: t0})
	buf.Reset()
	if err := consensus.WriteSnapshot(other.store, &buf); err != nil {
		t.Fatal(err)
	}
	third := newHarness(t)
	if err := third.fsm.Restore(readCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got := third.store.Cluster().CertExpiry; len(got) != 1 || !got["serial-n3"].Equal(t0) {
		t.Fatalf("expiries after restore: %v", got)
	}
}

// TestTrimRevokedBoundsUnknown: a trim that carries UnknownUntil gives it
// as the expiry of every revoked serial that has none (a legacy one, a
// removed node's), and of no other; those leave at a later trim past it,
// never before. Before, they stayed listed for good.
func TestTrimRevokedBoundsUnknown(t *testing.T) {
	h := revocationHistory(t)
	pre := h.store.Cluster()
	bound := t0.Add(500 * time.Hour)
	h.must(command.TrimRevoked{ExpiredBefore: t0, UnknownUntil: bound})
	c := h.store.Cluster()
	for _, s := range c.Revoked {
		old, had := pre.CertExpiry[s]
		got, ok := c.CertExpiry[s]
		switch {
		case !ok:
			t.Errorf("revoked %s has no expiry after the bound", s)
		case had && !got.Equal(old):
			t.Errorf("%s: known expiry %v changed to %v", s, old, got)
		case !had && !got.Equal(bound):
			t.Errorf("%s: bounded at %v, want %v", s, got, bound)
		}
	}
	for s := range c.CertExpiry {
		if _, had := pre.CertExpiry[s]; !had && !c.IsRevoked(s) {
			t.Errorf("%s, not revoked, got an expiry", s)
		}
	}
	h.must(command.TrimRevoked{ExpiredBefore: bound})
	for _, s := range pre.Revoked {
		if _, had := pre.CertExpiry[s]; !had && !h.store.IsRevoked(s) {
			t.Errorf("%s left the list at the bound itself", s)
		}
	}
	h.must(command.TrimRevoked{ExpiredBefore: bound.Add(time.Second)})
	if c := h.store.Cluster(); len(c.Revoked) != 0 {
		t.Fatalf("revoked after the bound passed: %v", c.Revoked)
	}
}
