package keyring

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/writes"
)

// FakeRaft is a one-node Raft that always leads: Apply runs the command
// through the log encoding and the real FSM on the store, one at a time.
// Gate, when set, is the version-skew gate raftnode runs first: an error
// refuses the command and nothing is written. OnApply, when set, runs
// next (outside the apply lock), so a test can hold an Apply where it
// wants.
type FakeRaft struct {
	Gate    func(cmd command.Command) error
	OnApply func(cmd command.Command)

	mu  sync.Mutex
	fsm *fsm.FSM
	idx uint64
}

func (r *FakeRaft) Servers() ([]raftnode.Server, error) {
	return []raftnode.Server{{ID: "leader", Addr: "leader:2377", Voter: true}}, nil
}
func (r *FakeRaft) Leader() (id, addr string) { return "leader", "leader:2377" }
func (r *FakeRaft) IsLeader() bool            { return true }

func (r *FakeRaft) Apply(_ context.Context, cmd command.Command) (any, error) {
	if r.Gate != nil {
		if err := r.Gate(cmd); err != nil {
			return nil, err
		}
	}
	if r.OnApply != nil {
		r.OnApply(cmd)
	}
	data, err := command.Encode(cmd)
	if err != nil {
		return nil, err
	}
	dec, err := command.Decode(data)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idx++
	res := r.fsm.ApplyCommand(r.idx, dec)
	return res.Value, res.Err
}

// testCluster is a bootstrapped cluster with a sealed record, its leader
// ("leader", holding the KEK), a manager "m" and a worker "w".
type testCluster struct {
	id     string // the cluster ID
	store  *consensus.Store
	raft   *FakeRaft
	dir    string // the leader's DATA/cluster
	secret string // the join secret
	ca     *pki.CA
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	// A cluster ID of its own: the leader's per-node tables (renewals) are
	// package state keyed by it, and outlive the test: a run of the same
	// test again (-count) must not find its predecessor's entries.
	return newNamedTestCluster(t, fmt.Sprintf("%s#%d", t.Name(), clusterSeq.Add(1)))
}

// clusterSeq numbers the test clusters of this process.
var clusterSeq atomic.Int64

// newNamedTestCluster is newTestCluster with cluster ID id.
func newNamedTestCluster(t *testing.T, id string) *testCluster {
	t.Helper()
	now := time.Now().UTC()
	store := consensus.NewStore()
	tc := &testCluster{store: store, raft: &FakeRaft{fsm: fsm.New(store)}, dir: t.TempDir(), secret: pki.NewSecret()}
	tc.id = id
	var err error
	if tc.ca, err = pki.NewCA(tc.id, now); err != nil {
		t.Fatal(err)
	}
	kek := pki.NewKEK()
	if err := SaveKEK(tc.dir, kek); err != nil {
		t.Fatal(err)
	}
	rec, err := SealedRecord(tc.id, tc.ca, tc.secret, kek)
	if err != nil {
		t.Fatal(err)
	}
	rec.GossipKeys = [][]byte{bytes.Repeat([]byte{1}, 32)}
	rec.ClusterCIDR, rec.VIPCIDR, rec.CreatedAt = "10.42.0.0/16", "10.43.0.0/16", now
	tc.must(t, command.BootstrapCluster{Cluster: rec, Node: api.Node{ID: "leader", Hostname: "leader", Addr: "10.0.0.1",
		Status: api.NodeReady, Availability: api.AvailabilityActive, CertSerial: "L0"}})
	for i, id := range []string{"m", "w"} {
		tc.must(t, command.UpsertNode{Node: api.Node{ID: id, Hostname: id, Addr: "10.0.0." + string(rune('2'+i)),
			Status: api.NodeReady, Availability: api.AvailabilityActive, CertSerial: id + "0", CreatedAt: now}})
	}
	tc.must(t, command.UpdateNode{ID: "m", Update: api.NodeUpdate{Role: api.RoleManager}, Now: now})
	tc.must(t, command.UpdateNode{ID: "w", Update: api.NodeUpdate{Role: api.RoleWorker}, Now: now})
	return tc
}

func (tc *testCluster) must(t *testing.T, cmd command.Command) {
	t.Helper()
	if _, err := tc.raft.Apply(context.Background(), cmd); err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
}

// keeper is node self's keeper over the cluster, wired as the agent wires
// it (node/keyring.go): Authorize is authz over writes.CallerOf.
func (tc *testCluster) keeper(self, dir string) *Keeper {
	return &Keeper{
		Self: self, Dir: dir, Store: tc.store, Raft: tc.raft, CertLifetime: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authorize: func(peerID string, cmd command.Command) error {
			c, _ := writes.CallerOf(tc.store, authz.Admin, peerID)
			return authz.Authorize(c, cmd, nil)
		},
	}
}
