package logstore

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A follower that installed the leader's snapshot at 11 over its log 1..10
// appends 12.. and leaves 11 missing; raft never reads entries up to the
// snapshot, so that log is readable (it was quarantined as unreadable after
// a kill -9, and the node then hung in rejoin). A hole after the snapshot,
// or a missing last entry, is still unreadable.
func TestProbeLogStoreHoleCoveredBySnapshot(t *testing.T) {
	tests := []struct {
		name     string
		indexes  []uint64
		snapshot uint64
		wantErr  bool
	}{
		{"no hole, no snapshot", []uint64{1, 2, 3, 4}, 0, false},
		{"hole, no snapshot", []uint64{1, 2, 4, 5}, 0, true},
		{"hole at the snapshot", []uint64{1, 2, 4, 5}, 3, false},
		{"hole below the snapshot", []uint64{1, 2, 4, 5, 6}, 4, false},
		{"hole after the snapshot", []uint64{1, 2, 4, 5}, 2, true},
		{"snapshot past the log", []uint64{1, 2, 3}, 9, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "raft")
			s, err := OpenDir(base, 0, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range tt.indexes {
				if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = OpenDir(base, tt.snapshot, hclog.NewNullLogger())
			if err == nil {
				_ = s.Close()
			}
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("OpenDir(snapshot %d) over %v: %v, want error %v", tt.snapshot, tt.indexes, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrLogUnreadable) {
				t.Errorf("%v does not wrap ErrLogUnreadable", err)
			}
		})
	}
}
