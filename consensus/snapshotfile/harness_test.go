package snapshotfile

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// The FSM harness of consensus/fsm's tests, cut down to what a snapshot
// file needs: a store filled through encoded log entries, as Raft would.

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

type harness struct {
	t     *testing.T
	fsm   *fsm.FSM
	store *consensus.Store
	idx   uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	s := consensus.NewStore()
	return &harness{t: t, fsm: fsm.New(s), store: s}
}

func (h *harness) must(cmd command.Command) any {
	h.t.Helper()
	data, err := command.Encode(cmd)
	if err != nil {
		h.t.Fatalf("encode %T: %v", cmd, err)
	}
	h.idx++
	r := h.fsm.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data}).(fsm.Result)
	if r.Err != nil {
		h.t.Fatalf("apply %T: %v", cmd, r.Err)
	}
	return r.Value
}

func testCluster() consensus.ClusterState {
	return consensus.ClusterState{
		ClusterID:       "c1",
		CACertPEM:       []byte("cert"),
		CAKeyPEM:        []byte("key"),
		TokenSecretHash: "abc",
		GossipKeys:      [][]byte{bytes.Repeat([]byte{1}, 32)},
		ClusterCIDR:     "10.42.0.0/16",
		VIPCIDR:         "10.43.0.0/16",
		CreatedAt:       t0,
	}
}

func testNode(id, host string) api.Node {
	return api.Node{ID: id, Hostname: host, Addr: "127.0.0.1", Status: api.NodeReady,
		Availability: api.AvailabilityActive, CreatedAt: t0, CertSerial: "serial-" + id}
}

func (h *harness) bootstrap() {
	h.t.Helper()
	h.must(command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "host1")})
}
