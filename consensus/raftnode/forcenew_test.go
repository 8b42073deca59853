package raftnode

import (
	"context"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestForceNewClusterRestoresBeforeStart: node computes the next epoch from
// the store right after New returns with ForceNewCluster, before raft can
// talk to anyone; the recovered state (and its epoch) must be there already.
func TestForceNewClusterRestoresBeforeStart(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()
	if _, err := l.r.Apply(ctx, command.SetClusterEpoch{Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(l.store.Index(), c.nodes...)
	for _, n := range c.nodes {
		c.stop(n)
	}
	c.start(l, true)
	cl := l.store.Cluster()
	if cl == nil || cl.Epoch != 3 {
		t.Fatalf("cluster record right after a forced start: %+v", cl)
	}
	if _, err := l.store.ServiceByName("web"); err != nil {
		t.Fatalf("state right after a forced start: %v", err)
	}
}
