package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

func TestCheckNetworkOnLeader(t *testing.T) {
	if tunnelCIDR != wireguard.DefaultTunnelCIDR {
		t.Fatalf("tunnelCIDR %s, the WireGuard device's %s", tunnelCIDR, wireguard.DefaultTunnelCIDR)
	}
	nodes := []*api.Node{{ID: "n1", Hostname: "db1", Addr: "192.168.7.11"}, {ID: "n2", Hostname: "db2", Addr: "192.168.7.12"}}
	for _, tc := range []struct {
		subnet string
		want   error  // nil: taken
		words  string // in the refusal
	}{
		{"", nil, ""},
		{"10.50.0.0/16", nil, ""},
		{"100.64.3.0/24", consensus.ErrInUse, "WireGuard tunnel range"},
		{"100.0.0.0/8", consensus.ErrInUse, "WireGuard tunnel range"},
		{"100.65.0.0/16", nil, ""},
		// A subnet that holds a node's address would take the traffic
		// between nodes into the overlay: every task on it would fail.
		{"192.168.7.0/24", consensus.ErrInUse, "node db1's address 192.168.7.11"},
		{"192.168.0.0/16", consensus.ErrInUse, "node db1's address"},
		{"192.168.8.0/24", nil, ""},
		// Ranges no container address may come from.
		{"127.0.0.0/8", consensus.ErrInvalid, "loopback"},
		{"127.5.0.0/16", consensus.ErrInvalid, "loopback"},
		{"224.0.0.0/4", consensus.ErrInvalid, "multicast"},
		{"239.1.0.0/16", consensus.ErrInvalid, "multicast"},
		{"169.254.0.0/16", consensus.ErrInvalid, "link-local"},
		{"0.0.0.0/8", consensus.ErrInvalid, "0.0.0.0/8"},
		{"240.0.0.0/4", consensus.ErrInvalid, "reserved"},
	} {
		err := CheckNetworkOnLeader(api.Network{Name: "n", Subnet: tc.subnet}, nodes)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("subnet %q refused: %v", tc.subnet, err)
		case tc.want != nil && (!errors.Is(err, tc.want) || !strings.Contains(fmtErr(err), tc.words)):
			t.Errorf("subnet %q: %v, want %v naming %q", tc.subnet, err, tc.want, tc.words)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
