package leaderloop

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/scheduler"
)

// soloRaft is a one-node in-memory Raft that leads, over store.
func soloRaft(t *testing.T, store *consensus.Store) *raftnode.Raft {
	t.Helper()
	cfg := raftnode.DefaultConfig()
	cfg.NodeID = "n1"
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	_, trans := raft.NewInmemTransport("")
	r, err := raftnode.NewInmem(cfg, store, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown() })
	if err := r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the solo raft never led")
		}
		time.Sleep(5 * time.Millisecond) // polling raft's state; no event to wait on
	}
	return r
}

// TestSchedulePassWaitsForRestore: a scheduler pass that starts while a
// snapshot restore runs reads the state only after the restore: its plan
// follows from the restored state. Before, the pass read the state before
// the restore (3 replicas) and, once the restore (1 replica) was
// installed, created 3 tasks on top of it, which the next pass stopped
// again.
func TestSchedulePassWaitsForRestore(t *testing.T) {
	store := consensus.NewStore()
	r := soloRaft(t, store)
	ctx := context.Background()
	must := func(ctx context.Context, cmd command.Command) {
		t.Helper()
		if _, err := r.Apply(ctx, cmd); err != nil {
			t.Fatalf("apply %T: %v", cmd, err)
		}
	}
	must(ctx, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "n1", Hostname: "n1", Addr: "127.0.0.1", Status: api.NodeReady,
			Availability: api.AvailabilityActive, CertSerial: "s0"},
	})
	must(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web",
		Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Image: "busybox", Replicas: 3}}})

	// The restore holds the gate; the pass starts meanwhile.
	pctx, release, err := r.PauseProposals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{NodeID: "n1", Store: store, Raft: r, Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan error, 1)
	go func() {
		_, err := l.schedulePass(ctx, scheduler.NewPlanner(scheduler.DefaultConfig()))
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.ProposalsWaiting() == 0 && len(done) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pass neither waited nor finished")
		}
		time.Sleep(time.Millisecond) // polling the gate; no event to wait on
	}
	// What the restore installs: the service at 1 replica.
	svc, err := store.Service("s1")
	if err != nil {
		t.Fatal(err)
	}
	next := *svc
	next.Spec.Replicas = 1
	must(pctx, command.UpdateService{Service: next, ExpectVersion: svc.Version})
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pass: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the pass never finished")
	}
	if n := len(store.Tasks()); n != 1 {
		t.Fatalf("%d tasks after the pass, want 1: the pass planned on the state before the restore", n)
	}
}
