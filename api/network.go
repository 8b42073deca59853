package api

import (
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
// and a /19 network a /28 (13 containers). Containers route the whole
// subnet (their network's containers on every node and its VIPs) through
// their interface on the network.

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

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
