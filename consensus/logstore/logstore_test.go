package logstore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testLogs(from, to, term uint64, tag string) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand,
			Data: []byte(tag + "-" + string(rune('a'+i%26))), AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return out
}

func TestLogStoreContract(t *testing.T) {
	s, err := OpenLogStore(filepath.Join(t.TempDir(), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if f, _ := s.FirstIndex(); f != 0 {
		t.Fatalf("empty first = %d", f)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("missing entry: %v", err)
	}
	want := &raft.Log{Index: 7, Term: 3, Type: raft.LogConfiguration, Data: []byte("data"),
		Extensions: []byte("ext"), AppendedAt: time.Unix(5, 6)}
	if err := s.StoreLog(want); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(7, &l); err != nil {
		t.Fatal(err)
	}
	if l.Index != 7 || l.Term != 3 || l.Type != raft.LogConfiguration || string(l.Data) != "data" ||
		string(l.Extensions) != "ext" || !l.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("round trip: %+v", l)
	}
	if err := s.StoreLogs(testLogs(8, 20, 3, "x")); err != nil {
		t.Fatal(err)
	}
	// Tail truncation then overwrite, head compaction.
	if err := s.DeleteRange(15, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testLogs(15, 16, 4, "y")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(7, 9); err != nil {
		t.Fatal(err)
	}
	f, _ := s.FirstIndex()
	la, _ := s.LastIndex()
	if f != 10 || la != 16 {
		t.Fatalf("first, last = %d, %d; want 10, 16", f, la)
	}
	if err := s.GetLog(16, &l); err != nil || l.Term != 4 || !strings.HasPrefix(string(l.Data), "y-") {
		t.Fatalf("overwritten entry: %+v %v", l, err)
	}
	// Stable store: raft compares the missing-key error's message.
	if _, err := s.Get([]byte("nope")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := s.GetUint64([]byte("nope")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing uint key: %v", err)
	}
	if err := s.SetUint64(keyCurrentTerm, 42); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64(keyCurrentTerm); err != nil || v != 42 {
		t.Fatalf("uint64 = %d, %v", v, err)
	}
}

// TestWriteFailing: a failed write of raft entries is reported until one
// succeeds (the node's disk health check reads it).
func TestWriteFailing(t *testing.T) {
	s, err := OpenLogStore(filepath.Join(t.TempDir(), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFailing(); err != nil {
		t.Fatalf("after a good write: %v", err)
	}
	s.noteWrite(errors.New("no space left on device"))
	if err := s.WriteFailing(); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("after a failed write: %v", err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 2, Term: 1, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFailing(); err != nil {
		t.Fatalf("after the next good write: %v", err)
	}
	_ = s.Close()
	if err := s.StoreLogs([]*raft.Log{{Index: 3, Term: 1}}); err == nil {
		t.Fatal("write to a closed store succeeded")
	}
	if s.WriteFailing() == nil {
		t.Fatal("a failed StoreLogs is not reported")
	}
}

// TestSyncFor: a non-voter's batches skip the fsync once a configuration
// entry has named it a non-voter; a batch with a configuration entry, and
// every batch of a voter or before any configuration entry, is synced.
func TestSyncFor(t *testing.T) {
	conf := func(servers ...raft.Server) *raft.Log {
		return &raft.Log{Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(raft.Configuration{Servers: servers})}
	}
	voter := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter} }
	nonvoter := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Nonvoter} }
	cmd := &raft.Log{Type: raft.LogCommand, Data: []byte("x")}
	steps := []struct {
		name     string
		self     string
		batch    []*raft.Log
		wantSync bool
		wantLazy bool
	}{
		{"before any configuration entry", "b", []*raft.Log{cmd}, true, false},
		{"made a non-voter: that batch synced", "b", []*raft.Log{cmd, conf(voter("a"), nonvoter("b"))}, true, true},
		{"a non-voter's commands", "b", []*raft.Log{cmd, cmd}, false, true},
		{"another node joins: synced, still lazy", "b", []*raft.Log{conf(voter("a"), nonvoter("b"), nonvoter("c"))}, true, true},
		{"still a non-voter", "b", []*raft.Log{cmd}, false, true},
		{"promoted in the middle of a batch", "b", []*raft.Log{cmd, conf(voter("a"), voter("b")), cmd}, true, false},
		{"a voter's commands", "b", []*raft.Log{cmd}, true, false},
		{"demoted", "b", []*raft.Log{conf(voter("a"), nonvoter("b"))}, true, true},
		{"removed from the configuration", "b", []*raft.Log{conf(voter("a"))}, true, false},
		{"after the removal: synced", "b", []*raft.Log{cmd}, true, false},
	}
	s := &LogStore{}
	for _, st := range steps {
		s.self = raft.ServerID(st.self)
		if got := s.syncFor(st.batch); got != st.wantSync || s.lazy != st.wantLazy {
			t.Fatalf("%s: sync %v lazy %v, want %v %v", st.name, got, s.lazy, st.wantSync, st.wantLazy)
		}
	}
	// Without SetSelf nothing is ever lazy.
	s = &LogStore{}
	s.syncFor([]*raft.Log{conf(voter("a"), nonvoter(""))})
	if !s.syncFor([]*raft.Log{cmd}) {
		t.Fatal("a store without SetSelf skipped a sync")
	}
}

// TestNonvoterStoreReadsBack: entries written without fsync read back and
// survive a reopen (a process restart), and the store's later writes are
// synced again (NoSync restored).
func TestNonvoterStoreReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSelf("b")
	cfg := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: "a", Suffrage: raft.Voter}, {ID: "b", Suffrage: raft.Nonvoter}}})
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: cfg}}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	if !s.lazy || s.db.NoSync {
		t.Fatalf("lazy %v NoSync %v after a non-voter's batch, want true false", s.lazy, s.db.NoSync)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil || string(l.Data) != "two" {
		t.Fatalf("entry 2 after reopen: %v %q", err, l.Data)
	}
}
