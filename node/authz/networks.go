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
// the data plane cannot carry:
//   - a subnet inside the WireGuard tunnel range (every node's tunnel
//     address lives there, and the device keeps one address of that range,
//     so an encrypted network in it would lose its address to the tunnel's);
//   - a subnet that holds a node's own address (nodes, the cluster's
//     nodes): each node routes the subnet into the overlay, so the traffic
//     between nodes would go there too; the nodes refuse to set such a
//     network up, and every task on it failed with "network not set up";
//   - loopback, multicast, link-local, 0.0.0.0/8 and the reserved 240/4,
//     where no container address may come from (a 127/8 network gave each
//     node a bridge holding 127.0.0.1).
//
// The state machine checks names, overlaps with the cluster's ranges and
// other networks; this check is the leader's, not the state machine's, so
// nodes of an older release apply the same log.
func CheckNetworkOnLeader(n api.Network, nodes []*api.Node) error {
	if n.Subnet == "" {
		return nil // the state machine picks a free one outside it
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
	if err != nil || !p.Addr().Is4() {
		return nil // the state machine refuses it with its own message
	}
	for _, r := range reservedRanges {
		if p.Overlaps(r.p) {
			return fmt.Errorf("create network %s: subnet %s overlaps %s: %w", n.Name, p, r.what, consensus.ErrInvalid)
		}
	}
	tunnel := netip.MustParsePrefix(tunnelCIDR)
	if p.Overlaps(tunnel) {
		return fmt.Errorf("create network %s: subnet %s overlaps the WireGuard tunnel range %s: %w", n.Name, p, tunnel, consensus.ErrInUse)
	}
	for _, nd := range nodes {
		if a, err := netip.ParseAddr(nd.Addr); err == nil && p.Contains(a.Unmap()) {
			return fmt.Errorf("create network %s: subnet %s holds node %s's address %s (the traffic between nodes would go into the network): %w",
				n.Name, p, nd.Hostname, a, consensus.ErrInUse)
		}
	}
	return nil
}

// reservedRanges are the IPv4 ranges no container address may come from.
var reservedRanges = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "0.0.0.0/8 (this network)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "the loopback range 127.0.0.0/8"},
	{netip.MustParsePrefix("169.254.0.0/16"), "the link-local range 169.254.0.0/16"},
	{netip.MustParsePrefix("224.0.0.0/4"), "the multicast range 224.0.0.0/4"},
	{netip.MustParsePrefix("240.0.0.0/4"), "the reserved range 240.0.0.0/4"},
}
