package fsm

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
)

type fsmSnapshot struct {
	view *consensus.Store
}

// Snapshot implements raft.FSM. It takes an O(1) point-in-time view; the
// encoding happens in Persist, off the FSM goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.store.Snapshot()}, nil
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := consensus.WriteSnapshot(s.view, sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole store atomically with
// the snapshot's content and notifies subscribers.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}
