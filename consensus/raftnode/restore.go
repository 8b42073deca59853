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
func (r *Raft) RestoreSnapshot(ctx context.Context, plan *snapshotfile.RestorePlan) error {
	if !r.IsLeader() {
		return consensus.ErrNotLeader
	}
	body, index, err := plan.Encode(max(r.LastIndex(), r.store.Index()))
	if err != nil {
		return fmt.Errorf("encode restore: %w", err)
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
