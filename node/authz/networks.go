package authz

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// tunnelCIDR is overlay/wireguard's DefaultTunnelCIDR (a test holds them
// equal): named here so that this package does not link wireguard-go.
const tunnelCIDR = "100.64.0.0/16"

// CheckNetworkOnLeader refuses a network the state machine would take but
// the data plane cannot carry: a subnet inside the WireGuard tunnel range
// (every node's tunnel address lives there, and the device keeps one
// address of that range, so an encrypted network in it would lose its
// address to the tunnel's). The state machine checks names, overlaps with
// the cluster's ranges and other networks; this check is the leader's, not
// the state machine's, so nodes of an older release apply the same log.
func CheckNetworkOnLeader(n api.Network) error {
	if n.Subnet == "" {
		return nil // the state machine picks a free one outside it
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
	if err != nil {
		return nil // the state machine refuses it with its own message
	}
	tunnel := netip.MustParsePrefix(tunnelCIDR)
	if p.Overlaps(tunnel) {
		return fmt.Errorf("create network %s: subnet %s overlaps the WireGuard tunnel range %s: %w", n.Name, p, tunnel, consensus.ErrInUse)
	}
	return nil
}
