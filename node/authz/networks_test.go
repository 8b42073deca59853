package authz

import (
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

func TestCheckNetworkOnLeader(t *testing.T) {
	if tunnelCIDR != wireguard.DefaultTunnelCIDR {
		t.Fatalf("tunnelCIDR %s, the WireGuard device's %s", tunnelCIDR, wireguard.DefaultTunnelCIDR)
	}
	for _, tc := range []struct {
		subnet string
		bad    bool
	}{
		{"", false},
		{"10.50.0.0/16", false},
		{"100.64.3.0/24", true},
		{"100.0.0.0/8", true},
		{"100.65.0.0/16", false},
	} {
		err := CheckNetworkOnLeader(api.Network{Name: "n", Subnet: tc.subnet})
		if tc.bad != (err != nil) || tc.bad && !errors.Is(err, consensus.ErrInUse) {
			t.Errorf("subnet %q: %v, want refused %v", tc.subnet, err, tc.bad)
		}
	}
}
