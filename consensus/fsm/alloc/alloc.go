// Package alloc picks the cluster's numbered resources for the FSM: node
// subnets from the cluster CIDR, service VIPs from the VIP range, network
// subnets from NetworkPool, VNIs, and services' VIPs on a network. Every
// replica must pick the same free value from the same state, so each
// choice is a deterministic scan of the write transaction's tables, from
// a cursor kept in the cluster record where there is one. Nothing here
// decides who may hold a value (the appliers of consensus/fsm check that):
// the scans (wrapping cursors, reserved addresses, exhausted ranges) are a
// job of their own that no command's rules need to see.
package alloc

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// NodeSubnet picks a free /24 of the cluster CIDR for node id, starting at
// cl.NextSubnet and wrapping, and advances cl.NextSubnet (the caller stores cl).
// It returns "" when the cluster has no CIDR.
func NodeSubnet(w *consensus.WriteTxn, cl *consensus.ClusterState, nodeID string) (string, error) {
	if cl.ClusterCIDR == "" {
		return "", nil
	}
	p, err := netip.ParsePrefix(cl.ClusterCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		return "", fmt.Errorf("cluster CIDR %q (want IPv4, /24 or larger): %w", cl.ClusterCIDR, consensus.ErrInvalid)
	}
	p = p.Masked()
	used := map[string]bool{}
	for _, n := range consensus.All[api.Node](w, consensus.TableNodes, consensus.IndexID) {
		if n.ID != nodeID && n.Subnet != "" {
			used[n.Subnet] = true
		}
	}
	count := uint32(1) << (24 - p.Bits())
	base := ip4ToUint(p.Addr())
	for i := uint32(0); i < count; i++ {
		idx := (cl.NextSubnet + i) % count
		cand := netip.PrefixFrom(uintToIP4(base+idx<<8), 24).String()
		if !used[cand] {
			cl.NextSubnet = (idx + 1) % count
			return cand, nil
		}
	}
	return "", fmt.Errorf("node subnets of %s: %w", cl.ClusterCIDR, consensus.ErrExhausted)
}

// VIP picks a free address of the VIP range (skipping the first two and
// the last), starting at cl.NextVIP and wrapping, and advances cl.NextVIP.
func VIP(w *consensus.WriteTxn, cl *consensus.ClusterState) (string, error) {
	p, err := netip.ParsePrefix(cl.VIPCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
		return "", fmt.Errorf("VIP CIDR %q (want IPv4, /29 or larger): %w", cl.VIPCIDR, consensus.ErrInvalid)
	}
	p = p.Masked()
	used := map[string]bool{}
	for _, s := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if s.VIP != "" {
			used[strings.TrimSpace(s.VIP)] = true
		}
	}
	size := uint32(1) << (32 - p.Bits())
	const lowest = 2
	span := size - lowest - 1 // offsets lowest .. size-2
	base := ip4ToUint(p.Addr())
	start := cl.NextVIP
	if start < lowest || start > size-2 {
		start = lowest
	}
	for i := uint32(0); i < span; i++ {
		off := lowest + (start-lowest+i)%span
		cand := uintToIP4(base + off).String()
		if !used[cand] {
			cl.NextVIP = off + 1
			return cand, nil
		}
	}
	return "", fmt.Errorf("VIPs of %s: %w", cl.VIPCIDR, consensus.ErrExhausted)
}

func ip4ToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToIP4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
