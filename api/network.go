package api

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// DefaultNetwork is the name of the network every service without
// networks of its own joins: the cluster CIDR (10.42.0.0/16), VNI 4242,
// bridge shoal0. It exists in every cluster (also in clusters created before
// networks were objects) and cannot be removed.
const DefaultNetwork = "default"

// DefaultVNI is the VXLAN network identifier of DefaultNetwork.
const DefaultVNI = 4242

// Network is an overlay network, as stored in Raft. Each has its own VXLAN
// VNI, its own bridge on every node and its own subnet; containers on
// different networks cannot reach each other.
type Network struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Subnet string `json:"subnet"`
	VNI    int    `json:"vni"`
	// Internal networks have no route out of the cluster.
	Internal bool `json:"internal"`
	// Encrypted networks carry their traffic over WireGuard (not supported
	// yet: creating one is refused).
	Encrypted bool `json:"encrypted"`
	// Attachable networks accept `shoal run --network` containers.
	Attachable bool              `json:"attachable"`
	Labels     map[string]string `json:"labels,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	Version    uint64            `json:"version"`
	// ShareBits, when not 0, says the network's subnet is too small for
	// index-derived node shares (NodeShare): its nodes' shares are
	// allocated, /ShareBits prefixes of the lower half handed out by the
	// state machine, and Shares holds them. 0 (every network created
	// before allocated shares existed, and every large one) keeps the
	// index-derived shares. Set at creation (NeedsAllocatedShares), never
	// changed.
	ShareBits int `json:"share_bits,omitempty"`
	// Shares maps a node ID to its share of an allocated-share network
	// (ShareBits). The state machine gives a node a share when the first
	// task on the network is assigned to it or when a container on the
	// node joins the network, and takes it back when the node is removed.
	Shares map[string]string `json:"shares,omitempty"`
	// RunContainers maps a node ID to the names of its `shoal run`
	// containers attached to the network (running ones: a stopped
	// container holds no address). Each node records its own
	// (SetRunAttachments); the network cannot be removed while any is
	// attached, as docker's "has active endpoints". A removed node's go
	// with it.
	RunContainers map[string][]string `json:"run_containers,omitempty"`
}

// SpecNetworks returns the networks a spec joins: Spec.Networks, or
// DefaultNetwork when it names none.
func SpecNetworks(s ServiceSpec) []string {
	if len(s.Networks) == 0 {
		return []string{DefaultNetwork}
	}
	return s.Networks
}

// How a network's subnet is shared out. The subnet is cut in two halves:
// the lower half is divided among the nodes, the upper half holds the VIPs
// of the services on the network. A node's share is found, without any
// allocation, from the index of its /24 in the cluster CIDR: with a
// 10.42.0.0/16 cluster (up to 256 nodes) a /16 network gives each node a /25
// and a /19 network a /28 (13 containers). A smaller subnet (a /24, as
// compose files often ask for) cannot give every possible node a share:
// its shares are allocated instead (Network.ShareBits, Shares; the state
// machine hands them out as nodes need them, consensus/fsm shares.go), so
// it serves as many nodes as its lower half holds /28s. Containers route
// the whole subnet (their network's containers on every node and its VIPs)
// through their interface on the network.

// minShareBits is the smallest node share a network may give (/28).
const minShareBits = 28

// MaxNetworkBits is the longest prefix a network subnet may have in a cluster
// whose CIDR has clusterBits (node subnets are /24): the subnet must give
// each possible node a /28 in its lower half.
func MaxNetworkBits(clusterBits int) int {
	return minShareBits - 1 - (24 - clusterBits)
}

// NetworkVIPRange returns the first and last VIP of a network subnet (the
// upper half, without its first and last address).
func NetworkVIPRange(subnet netip.Prefix) (first, last netip.Addr) {
	base := u32(subnet.Masked().Addr())
	size := uint32(1) << (32 - subnet.Bits())
	return addr32(base + size/2 + 1), addr32(base + size - 2)
}

// NodeShare returns the part of a network's subnet that belongs to the node
// whose /24 of clusterCIDR is nodeSubnet.
func NodeShare(subnet, clusterCIDR, nodeSubnet netip.Prefix) (netip.Prefix, error) {
	if !subnet.Addr().Is4() || !clusterCIDR.Addr().Is4() || !nodeSubnet.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("node share of %s: IPv4 prefixes only", subnet)
	}
	if nodeSubnet.Bits() < clusterCIDR.Bits() || !clusterCIDR.Contains(nodeSubnet.Addr()) {
		return netip.Prefix{}, fmt.Errorf("node share of %s: node subnet %s is not inside %s", subnet, nodeSubnet, clusterCIDR)
	}
	bits := subnet.Bits() + 1 + (nodeSubnet.Bits() - clusterCIDR.Bits())
	if bits > minShareBits {
		return netip.Prefix{}, fmt.Errorf("node share of %s: subnet too small for the cluster (at most /%d)", subnet, MaxNetworkBits(clusterCIDR.Bits()))
	}
	index := (u32(nodeSubnet.Masked().Addr()) - u32(clusterCIDR.Masked().Addr())) >> (32 - nodeSubnet.Bits())
	base := u32(subnet.Masked().Addr()) + index<<(32-bits)
	return netip.PrefixFrom(addr32(base), bits), nil
}

// AllocatedShareBits is the size of an allocated node share (ShareBits):
// a /28, 13 containers a node (its first address is the node's bridge,
// its last the broadcast). The size is fixed for the life of a network
// (addresses in use cannot move), and at creation nobody knows how many
// nodes will need a share; the scarce resource of a small network is the
// number of nodes that can run its tasks (a node without a share can run
// none), so shares are as small as index-derived ones ever get: a /24
// network holds 8 node shares and 126 VIPs, a /22 32 shares.
const AllocatedShareBits = minShareBits

// MaxAllocatedNetworkBits is the longest prefix a network subnet may have
// at all: its lower half must hold one allocated share.
const MaxAllocatedNetworkBits = AllocatedShareBits - 1

// NeedsAllocatedShares reports whether subnet is too small for
// index-derived shares in a cluster whose CIDR is clusterCIDR (a longer
// prefix than MaxNetworkBits), so that its node shares must be allocated.
func NeedsAllocatedShares(subnet, clusterCIDR netip.Prefix) bool {
	return subnet.Bits() > MaxNetworkBits(clusterCIDR.Bits())
}

// ShareSlots lists the allocatable shares of subnet, /bits prefixes of its
// lower half, lowest first (none when the lower half is smaller than one).
func ShareSlots(subnet netip.Prefix, bits int) []netip.Prefix {
	if !subnet.Addr().Is4() || bits <= subnet.Bits() || bits > 32 {
		return nil
	}
	n := 1 << (bits - subnet.Bits() - 1)
	base := u32(subnet.Masked().Addr())
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(addr32(base+uint32(i)<<(32-bits)), bits)
	}
	return out
}

// FreeShare returns the lowest share of subnet (ShareSlots) that no value
// of held takes, and false when all are held. It is deterministic, so
// every replica that applies the same entry picks the same share.
func FreeShare(subnet netip.Prefix, bits int, held map[string]string) (netip.Prefix, bool) {
	taken := make(map[string]bool, len(held))
	for _, p := range held {
		taken[p] = true
	}
	for _, s := range ShareSlots(subnet, bits) {
		if !taken[s.String()] {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

// ErrNoShare: an allocated-share network (Network.ShareBits) has given
// the node no share (yet), so the node cannot hold containers on it.
var ErrNoShare = errors.New("node has no share of the network")

// NetworkShare returns the share of network n that belongs to node nodeID,
// whose /24 of clusterCIDR is nodeSubnet: the allocated share of an
// allocated-share network (ErrNoShare when it holds none), the
// index-derived one (NodeShare) of any other.
func NetworkShare(n *Network, clusterCIDR netip.Prefix, nodeID string, nodeSubnet netip.Prefix) (netip.Prefix, error) {
	subnet, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("network %s: subnet %q: %w", n.Name, n.Subnet, err)
	}
	if n.ShareBits == 0 {
		return NodeShare(subnet, clusterCIDR, nodeSubnet)
	}
	s, ok := n.Shares[nodeID]
	if !ok {
		return netip.Prefix{}, fmt.Errorf("network %s, node %s: %w", n.Name, ShortID(nodeID), ErrNoShare)
	}
	share, err := netip.ParsePrefix(s)
	if err != nil || share.Bits() != n.ShareBits || !subnet.Contains(share.Addr()) {
		return netip.Prefix{}, fmt.Errorf("network %s, node %s: stored share %q is not a /%d of %s", n.Name, ShortID(nodeID), s, n.ShareBits, subnet)
	}
	return share, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
