package handlers

import (
	"context"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestCreateSmallNetwork: a network create whose subnet is too small for
// index-derived node shares is written with share_bits (so the command
// gate sees it needs level 6) and stored; a large or allocated subnet is
// written without, as before; one without room for a single share is
// refused by the state machine, saying so.
func TestCreateSmallNetwork(t *testing.T) {
	store := consensus.NewStore()
	a := &fsmAgent{store: store, fsm: fsm.New(store)}
	a.fsm.ApplyCommand(1, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16"},
		Node:    api.Node{ID: "n1", Hostname: "h1"}})
	x := New(a)
	ctx := context.Background()
	for _, tc := range []struct {
		name, subnet string
		bits         int
	}{
		{"small", "172.28.0.0/24", api.AllocatedShareBits},
		{"smallish", "172.29.0.0/20", api.AllocatedShareBits},
		{"large", "10.50.0.0/19", 0},
		{"auto", "", 0},
	} {
		n, err := x.CreateNetwork(ctx, api.Network{Name: tc.name, Subnet: tc.subnet})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		last := a.writes[len(a.writes)-1].(*command.CreateNetwork)
		if last.Network.ShareBits != tc.bits || n.ShareBits != tc.bits {
			t.Fatalf("%s: written with share_bits %d, stored %d; want %d", tc.name, last.Network.ShareBits, n.ShareBits, tc.bits)
		}
		if lvl := command.SinceLevel(last); (tc.bits != 0) != (lvl == command.SharesLevel) {
			t.Fatalf("%s: the create needs level %d", tc.name, lvl)
		}
	}
	if _, err := x.CreateNetwork(ctx, api.Network{Name: "tiny", Subnet: "172.30.0.0/28"}); err == nil || !strings.Contains(err.Error(), "must be a /27 or larger") {
		t.Fatalf("a /28: %v", err)
	}
}
