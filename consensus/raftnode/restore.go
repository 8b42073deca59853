package raftnode

import (
	"bytes"
	"context"
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
)

// RestoreSnapshot installs plan as this leader's state (raft.Restore) and
// returns once an entry after it is committed and applied here, i.e. a
// quorum holds the restored state. Leader only. The restored state's index is past every
// entry of the log so far, so that versions stay monotonic and a follower's
// consistent read waits for the restore.
//
// A state the store would refuse is refused here first (an error wrapping
// consensus.ErrInvalid) and nothing changes: see loadable.
func (r *Raft) RestoreSnapshot(ctx context.Context, plan *snapshotfile.RestorePlan) error {
	if !r.IsLeader() {
		return consensus.ErrNotLeader
	}
	body, index, err := plan.Encode(max(r.LastIndex(), r.store.Index()))
	if err != nil {
		return fmt.Errorf("encode restore: %w", err)
	}
	if err := loadable(body); err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index - 1, Size: int64(len(body))}
	done := make(chan error, 1)
	go func() { done <- r.raft.Restore(meta, bytes.NewReader(body), r.timeout(ctx)) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("restore snapshot: %w", mapRaftErr(err))
		}
	case <-ctx.Done():
		return fmt.Errorf("restore snapshot: %w (it may still complete)", ctx.Err())
	case <-r.nudgeStop: // shutting down: raft may never answer (see wait)
		return fmt.Errorf("restore snapshot: %w (it may still complete)", consensus.ErrShutdown)
	}
	// raft.Restore ends with a no-op entry, which no FSM sees: until a
	// command is applied after it, every store's index trails the log's
	// last index, and loops that wait for their replica to catch up
	// (removing containers of unknown tasks) would wait for the next write.
	// A TrimTasks is that command, and harmless.
	if _, err := r.Apply(ctx, command.TrimTasks{}); err != nil {
		return fmt.Errorf("restore snapshot: restored, but the entry after it failed: %w", err)
	}
	return nil
}

// loadable loads body into a throwaway store, by the path the FSM's
// Restore takes (consensus.Store.Restore), and says why it does not load.
//
// Why before raft.Restore: hashicorp/raft v1.8.0 (restoreUserSnapshot)
// saves the user snapshot as this node's newest one first and then panics
// when the FSM refuses it. A backup file is checked whole by its sha256,
// but that is a checksum, not a signature: whoever edits the body (a
// service without a name, a task without an ID) recomputes it. Such a file
// crashed the leader, and on restart raft found the refused snapshot the
// newest and failed to load it ("failed to load any existing snapshots"):
// the node could not start. The trial costs one more copy of the state for
// the moment of a restore.
func loadable(body []byte) error {
	if err := consensus.NewStore().Restore(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("snapshot file refused, nothing changed: its state does not load: %w: %w", err, consensus.ErrInvalid)
	}
	return nil
}
