package writes

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
)

// TestProposalRacingRestoreNotLost: a proposal that arrives while a
// restore is between its plan and its install is applied after the
// restore (or refused), never acknowledged and then erased: a write of
// the write path (ApplyLocal), and a leader loop's proposal straight
// through Raft (the scheduler's, a node status mark, the autoscaler's...).
// Before the write gate the first was erased; before the gate moved into
// raftnode.Raft.Apply, the second still was.
func TestProposalRacingRestoreNotLost(t *testing.T) {
	tests := []struct {
		name    string
		propose func(l *testLeader, cmd command.Command) error
	}{
		{"write path", func(l *testLeader, cmd command.Command) error {
			_, err := l.ApplyLocal(context.Background(), encode(t, cmd))
			return err
		}},
		{"leader loop", func(l *testLeader, cmd command.Command) error {
			_, err := l.raft.Apply(context.Background(), cmd)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLeader(t)
			ctx := context.Background()
			l.must(t, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Replicas: 1}}})
			var file bytes.Buffer
			if _, err := snapshotfile.Write(l.store.Snapshot(), &file, time.Now()); err != nil {
				t.Fatal(err)
			}
			f, err := snapshotfile.Read(bytes.NewReader(file.Bytes()), int64(file.Len()))
			if err != nil {
				t.Fatal(err)
			}
			late := command.CreateService{Service: api.Service{ID: "s2", Name: "late", Spec: api.ServiceSpec{Name: "late", Image: "busybox", Replicas: 1}}}
			done := make(chan error, 1)
			restorePlanned = func() {
				go func() { done <- tt.propose(l, late) }()
				// Wait until the proposal either waits at the gate or
				// finished (without a gate it is applied here, before
				// the install).
				deadline := time.Now().Add(10 * time.Second)
				for l.raft.ProposalsWaiting() == 0 && len(done) == 0 {
					if time.Now().After(deadline) {
						t.Error("the proposal neither waited nor finished")
						return
					}
					time.Sleep(time.Millisecond) // polling the gate; no event to wait on
				}
			}
			t.Cleanup(func() { restorePlanned = nil })
			if _, err := l.RestoreAsLeader(ctx, f, true, "leader"); err != nil {
				t.Fatalf("restore: %v", err)
			}
			restorePlanned = nil
			var perr error
			select {
			case perr = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the proposal never finished")
			}
			_, gone := l.store.Service("s2")
			switch {
			case perr == nil && gone != nil:
				t.Fatalf("the proposal was acknowledged and the restore erased it: %v", gone)
			case perr != nil && gone == nil:
				t.Fatalf("the proposal was refused (%v) but applied", perr)
			case perr != nil:
				t.Logf("the proposal was refused: %v", perr)
			}
		})
	}
}
