package joining

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/wire"
)

func TestAtMostOnceActive(t *testing.T) {
	amo := func(grace time.Duration) api.ServiceSpec {
		return api.ServiceSpec{AtMostOnce: true, StopGracePeriod: grace}
	}
	for _, tc := range []struct {
		name      string
		tasks     []*api.Task
		wantN     int
		wantGrace time.Duration
	}{
		{"none", nil, 0, 0},
		{"running at-most-once on the node", []*api.Task{
			{NodeID: "n1", State: api.TaskRunning, Spec: amo(2 * time.Second)},
		}, 1, 2 * time.Second},
		{"longest grace; a spec without one counts the default", []*api.Task{
			{NodeID: "n1", State: api.TaskRunning, Spec: amo(2 * time.Second)},
			{NodeID: "n1", State: api.TaskStarting, Spec: amo(0)},
		}, 2, 10 * time.Second},
		{"plain tasks are not held by a removal", []*api.Task{
			{NodeID: "n1", State: api.TaskRunning, Spec: api.ServiceSpec{StopGracePeriod: time.Minute}},
		}, 0, 0},
		{"stopped ones are done", []*api.Task{
			{NodeID: "n1", State: api.TaskShutdown, Spec: amo(time.Minute)},
			{NodeID: "n1", State: api.TaskFailed, Spec: amo(time.Minute)},
		}, 0, 0},
		{"another node's", []*api.Task{
			{NodeID: "n2", State: api.TaskRunning, Spec: amo(time.Minute)},
		}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, grace := AtMostOnceActive(tc.tasks, "n1", 10*time.Second)
			if n != tc.wantN || grace != tc.wantGrace {
				t.Fatalf("got %d, %v; want %d, %v", n, grace, tc.wantN, tc.wantGrace)
			}
		})
	}
}

// fsmRaft applies commands to a real FSM; the membership calls are not used.
type fsmRaft struct {
	Raft
	fsm *fsm.FSM
	idx uint64
	log []command.Command
}

func (f *fsmRaft) Apply(_ context.Context, cmd command.Command) (any, error) {
	data, err := command.Encode(cmd)
	if err != nil {
		return nil, err
	}
	dec, err := command.Decode(data)
	if err != nil {
		return nil, err
	}
	f.idx++
	f.log = append(f.log, dec)
	res := f.fsm.ApplyCommand(f.idx, dec)
	return res.Value, res.Err
}

// TestDrainSelf: a leaving node drains itself through the admin RPC, once;
// it may not drain another node.
func TestDrainSelf(t *testing.T) {
	store := consensus.NewStore()
	r := &fsmRaft{fsm: fsm.New(store)}
	ctx := context.Background()
	if _, err := r.Apply(ctx, &command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)}, ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node:    api.Node{ID: "n1", Hostname: "n1", Addr: "127.0.0.1", Status: api.NodeReady, Availability: api.AvailabilityActive},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, &command.UpsertNode{Node: api.Node{ID: "n2", Hostname: "n2", Addr: "127.0.0.2", Status: api.NodeReady, Availability: api.AvailabilityActive}}); err != nil {
		t.Fatal(err)
	}
	l := &Leader{Self: "n1", Store: store, Raft: r, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	var we *wire.Error
	if err := l.Admin(ctx, "n1", wire.AdminRequest{Op: "drain-self", NodeID: "n2"}); !errors.As(err, &we) || we.Code != wire.CodeRefused {
		t.Fatalf("n1 draining n2: %v, want refused", err)
	}
	if n, _ := store.Node("n2"); n.Availability != api.AvailabilityActive {
		t.Fatalf("a refused drain changed n2 to %s", n.Availability)
	}
	entries := len(r.log)
	for i := 0; i < 2; i++ {
		if err := l.Admin(ctx, "n2", wire.AdminRequest{Op: "drain-self", NodeID: "n2"}); err != nil {
			t.Fatalf("drain-self %d: %v", i+1, err)
		}
	}
	if n, _ := store.Node("n2"); n.Availability != api.AvailabilityDrain {
		t.Fatalf("n2 is %s after drain-self, want drain", n.Availability)
	}
	if got := len(r.log) - entries; got != 1 {
		t.Fatalf("two drain-self wrote %d entries, want 1", got)
	}
	if err := l.Admin(ctx, "n3", wire.AdminRequest{Op: "drain-self", NodeID: "n3"}); !errors.As(err, &we) || we.Code != wire.CodeRefused {
		t.Fatalf("drain-self of a node without a record: %v, want refused", err)
	}
}
