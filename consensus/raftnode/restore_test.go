package raftnode

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
)

// TestRaftRestoreSnapshot restores onto a 3-node raft cluster: every node
// ends up with the file's services, and the index moved past the log.
func TestRaftRestoreSnapshot(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()
	mustApply := func(cmd command.Command) {
		t.Helper()
		if _, err := l.r.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Replicas: 2}}})
	var file bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &file, t0); err != nil {
		t.Fatal(err)
	}
	mustApply(command.CreateService{Service: api.Service{ID: "s2", Name: "extra", Spec: api.ServiceSpec{Name: "extra", Replicas: 1}}})
	before := l.r.LastIndex()

	f, err := snapshotfile.Read(&file, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := snapshotfile.PlanRestore(f, l.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.r.RestoreSnapshot(ctx, plan); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, n.id+" restored", func() bool {
			_, err := n.store.ServiceByName("extra")
			return errors.Is(err, consensus.ErrNotFound) && n.store.Index() > before
		})
		if _, err := n.store.ServiceByName("web"); err != nil {
			t.Fatalf("%s: web missing: %v", n.id, err)
		}
		if len(n.store.Nodes()) != 3 {
			t.Fatalf("%s: %d nodes", n.id, len(n.store.Nodes()))
		}
		// Replicas count as caught up again (node's reconciler waits for
		// this before it removes containers of tasks it does not know).
		waitFor(t, n.id+" store caught up with its log", n.r.CaughtUp)
	}
	// The cluster goes on: writes after the restore get later versions.
	mustApply(command.CreateService{Service: api.Service{ID: "s3", Name: "after", Spec: api.ServiceSpec{Name: "after", Replicas: 1}}})
	s, err := l.store.ServiceByName("after")
	if err != nil || s.Version <= before {
		t.Fatalf("after restore: %+v %v", s, err)
	}
	// A follower refuses to restore.
	for _, n := range c.nodes {
		if n != l {
			if err := n.r.RestoreSnapshot(ctx, plan); !errors.Is(err, consensus.ErrNotLeader) {
				t.Fatalf("follower restore: %v", err)
			}
			break
		}
	}
}
