package writes

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestCheckRestoreLevelsNetworks: a file with a network of allocated node
// shares is refused while a member is below command.SharesLevel (an older
// replica would load the network without its shares), naming the network;
// a file of large networks passes.
func TestCheckRestoreLevelsNetworks(t *testing.T) {
	peers := []command.PeerLevel{{ID: "old", Level: command.SharesLevel - 1, Known: true}}
	check := func(cmd command.Command) error { return command.CheckPeers(cmd, peers) }
	large := &api.Network{ID: "w1", Name: "big", Subnet: "10.50.0.0/16"}
	small := &api.Network{ID: "w2", Name: "small", Subnet: "172.28.0.0/24", ShareBits: api.AllocatedShareBits}
	if err := CheckRestoreLevels(nil, []*api.Network{large}, check); err != nil {
		t.Fatalf("large networks only: %v", err)
	}
	err := CheckRestoreLevels(nil, []*api.Network{large, small}, check)
	if !errors.Is(err, command.ErrUnsupported) || !strings.Contains(err.Error(), `network "small"`) || strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("with a small network: %v, want ErrUnsupported naming network small only", err)
	}
}
