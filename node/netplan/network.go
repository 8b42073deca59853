package netplan

// The networks' overlays and WireGuard peers as this node should have them:
// device names, peers of the default network and of every other network
// (at their tunnel addresses on an encrypted one), and the WireGuard peers
// with the key each is known by during a rotation (wgrotate.go).

import (
	"fmt"
	"net/netip"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// OverlayPeers lists the default network's overlay peers in one view of
// the state: every node but self that has a subnet and an address, in the
// view's order (by ID). Liveness does not matter: a peer's route,
// neighbour and FDB entry are static (overlay/peers.go), and a dead node's
// backends leave the load balancer instead (Traffic). The departed nodes
// (State.Departed) follow, while they drain. It is pure.
func OverlayPeers(st State, self string) []overlay.Peer {
	var peers []overlay.Peer
	for _, n := range st.DataPathNodes() {
		if n.ID == self || n.Subnet == "" {
			continue
		}
		sub, err1 := netip.ParsePrefix(n.Subnet)
		ip, err2 := netip.ParseAddr(n.Addr)
		if err1 != nil || err2 != nil {
			continue
		}
		peers = append(peers, overlay.Peer{NodeID: n.ID, Subnet: sub, UnderlayIP: ip})
	}
	return peers
}

// Device names of a network other than the default one come from its VNI
// (at most 6 hex digits): bridge "shb<vni>", VXLAN device "shv<vni>",
// container veths "s<vni>" + container ID ("sh" + ID on the default
// network; a hex VNI never starts with 'h'). Every node derives the same
// names from the record, so none is stored, and the load balancer finds
// the devices by the same functions.

// BridgeName is the bridge of network n on every node.
func BridgeName(n api.Network) string {
	if n.Name == api.DefaultNetwork {
		return overlay.DefaultBridgeName
	}
	return fmt.Sprintf("shb%x", n.VNI)
}

// Routed tells whether n is routed through WireGuard instead of
// VXLAN: an encrypted network other than the default one (which is always
// plain VXLAN). The overlay, the WireGuard peers and the load balancer
// (which cannot tell the ingress node by VTEP MAC on it) all go by this.
func Routed(n api.Network) bool {
	return n.Encrypted && n.Name != api.DefaultNetwork
}

// VXLANName is the device a network reaches other nodes through: its
// VXLAN device, or for an encrypted network the WireGuard device (the load
// balancer's filter treats it the same way).
func VXLANName(n api.Network) string {
	if n.Name == api.DefaultNetwork {
		return overlay.DefaultVXLANName
	}
	if Routed(n) {
		return wireguard.DefaultWireGuardName
	}
	return fmt.Sprintf("shv%x", n.VNI)
}

// VethPrefix is the prefix of the host side of a container's veth on
// network n (other than the default one), followed by the container ID.
func VethPrefix(n api.Network) string {
	return fmt.Sprintf("s%x", n.VNI)
}

// EncryptedNetworks lists the networks routed through WireGuard (Routed),
// in the order of networks; one with an unparsable subnet is left out.
// WireGuard runs while this is not empty, and each peer is allowed its
// shares of these networks (WireGuardPeers).
func EncryptedNetworks(networks []*api.Network) []*api.Network {
	var encrypted []*api.Network
	for _, n := range networks {
		if _, err := netip.ParsePrefix(n.Subnet); err == nil && Routed(*n) {
			encrypted = append(encrypted, n)
		}
	}
	return encrypted
}

// NetworkPeers lists the shares of network nw of every other node
// (api.NetworkShare: a node without a share of an allocated-share network
// is left out: it holds no container of it). With a valid tunnel prefix
// (an encrypted network) a peer's underlay address is its WireGuard tunnel
// address (wireguard.TunnelAddr).
func NetworkPeers(nodes []*api.Node, self string, nw *api.Network, cluster, tunnel netip.Prefix) []overlay.Peer {
	var peers []overlay.Peer
	for _, n := range nodes {
		if n.ID == self || n.Subnet == "" {
			continue
		}
		sub, err1 := netip.ParsePrefix(n.Subnet)
		ip, err2 := netip.ParseAddr(n.Addr)
		if err1 != nil || err2 != nil {
			continue
		}
		share, err := api.NetworkShare(nw, cluster, n.ID, sub)
		if err != nil {
			continue
		}
		if tunnel.IsValid() {
			if ip, err = wireguard.TunnelAddr(tunnel, cluster, sub); err != nil {
				continue
			}
		}
		peers = append(peers, overlay.Peer{NodeID: n.ID, Subnet: share, UnderlayIP: ip})
	}
	return peers
}

// WireGuardPeers lists the WireGuard peers of this node: every other node
// with a subnet, an address and a published public key (the one in use
// during a key rotation, WGPeerKey), at its underlay address and port,
// allowed its tunnel address and its shares of the encrypted networks
// (encrypted). It is pure.
func WireGuardPeers(nodes []*api.Node, self string, cluster, tunnel netip.Prefix, port uint16, encrypted []*api.Network) []wireguard.WGPeer {
	var peers []wireguard.WGPeer
	for _, n := range nodes {
		key := WGPeerKey(n, nodes)
		if n.ID == self || n.Subnet == "" || key == "" {
			continue
		}
		sub, err1 := netip.ParsePrefix(n.Subnet)
		ip, err2 := netip.ParseAddr(n.Addr)
		if err1 != nil || err2 != nil || !ip.Is4() {
			continue
		}
		tip, err := wireguard.TunnelAddr(tunnel, cluster, sub)
		if err != nil {
			continue
		}
		var shares []netip.Prefix
		for _, nw := range encrypted {
			if share, err := api.NetworkShare(nw, cluster, n.ID, sub); err == nil {
				shares = append(shares, share)
			}
		}
		peers = append(peers, wireguard.WGPeer{NodeID: n.ID, PublicKey: key,
			Endpoint: netip.AddrPortFrom(ip, port), TunnelIP: tip, Subnets: shares})
	}
	return peers
}
