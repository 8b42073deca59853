package reconciler

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// followerRaft is a follower that knows a leader and holds every command
// of its own log (Raft's Synced).
type followerRaft struct{}

func (followerRaft) Synced() bool           { return true }
func (followerRaft) IsLeader() bool         { return false }
func (followerRaft) LastContact() time.Time { return time.Now() }

// TestNoRemovalFromAnEmptyReplica: a node that lost its Raft log (an
// unreadable raft.db is quarantined at start) has an empty log, so Raft
// counts it caught up as soon as a leader's first heartbeat arrives,
// before the leader sends it the snapshot. A pass then must not take the
// empty replica's word that the node's running task containers belong to
// no task. Before, it removed them all, forced (SIGKILL). Once the replica
// holds the node's record, a container of a task it does not know goes.
func TestNoRemovalFromAnEmptyReplica(t *testing.T) {
	for _, tc := range []struct {
		name        string
		store       func(t *testing.T) *consensus.Store
		wantRemoved bool
	}{
		{"empty replica (lost log, before the snapshot)", func(*testing.T) *consensus.Store { return consensus.NewStore() }, false},
		{"replica with this node's record", func(t *testing.T) *consensus.Store { return newReplica(t).store }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime()
			rt.containers["c-t9"] = api.Container{ID: "c-t9", State: api.ContainerRunning, TaskID: "t9"}
			r := New(Config{
				NodeID: "n1", Store: tc.store(t), Raft: followerRaft{}, Members: noMembers{}, Runtime: rt, Network: upNetwork{},
				EnsureImage:  func(context.Context, *api.Task) error { return nil },
				PrepareFiles: func(context.Context, *api.Task) ([]ocispec.FileMount, error) { return nil, nil },
				GCTaskFiles:  func(map[string]bool) {},
				Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			var wg sync.WaitGroup
			r.pass(context.Background(), &wg)
			wg.Wait()
			rt.mu.Lock()
			_, kept := rt.containers["c-t9"]
			rt.mu.Unlock()
			if kept == tc.wantRemoved {
				t.Errorf("container of a task the replica does not know: removed %v, want %v", !kept, tc.wantRemoved)
			}
		})
	}
}
