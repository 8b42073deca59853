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
