package wireguard

// Compute, then apply. What the node's WireGuard device should hold is
// one pure function of the state (Desired: its key, port and peers, each
// peer's key, endpoint, allowed IPs and keepalive), and how to get there
// from what the device holds is another (planPeers: replace them all, or
// remove the peers that are gone and update the rest in place). Each
// backend then only renders that plan in its own protocol: UAPI text for
// the userspace device process (uapiText), a wgtypes.Config for the
// kernel's generic netlink API (kernelConfig, kernel.go). So both backends
// configure the same peers, with the same allowed IPs and keepalive, from
// the same table-tested code.

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/shoal-org/shoal/overlay/overlayerr"
)

// PersistentKeepalive is every peer's keepalive: a node behind a
// stateful firewall or NAT stays reachable, and a re-keyed peer (a new
// peer to WireGuard) handshakes at once rather than on the first packet.
const PersistentKeepalive = 25 * time.Second

// DeviceConfig is what a node's WireGuard device should hold.
type DeviceConfig struct {
	PrivateKey [32]byte
	ListenPort int
	// Peers, sorted by node ID.
	Peers []PeerConfig
}

// PeerConfig is one peer of DeviceConfig.
type PeerConfig struct {
	NodeID    string
	PublicKey [32]byte
	Endpoint  netip.AddrPort
	// AllowedIPs: the peer's tunnel address /32, then its subnets.
	AllowedIPs []netip.Prefix
	Keepalive  time.Duration
}

// Desired is the device configuration of a node with key pair self and
// UDP port port whose peers are peers. It is pure. Peers with this node's
// key, a malformed key, endpoint or subnet, or a key, tunnel address or
// subnet overlapping another peer's are left out and reported; the rest
// is configured.
func Desired(self KeyPair, port int, peers []WGPeer) (DeviceConfig, []error) {
	dc := DeviceConfig{PrivateKey: self.Private, ListenPort: port}
	var errs []error
	sorted := append([]WGPeer(nil), peers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].NodeID < sorted[j].NodeID })
	keys := map[[32]byte]string{}
	tunnels := map[netip.Addr]string{}
	subnets := map[netip.Prefix]string{} // allowed subnets taken, by peer
	for _, p := range sorted {
		key, err := ParseKey(p.PublicKey)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("peer %s: %w", p.NodeID, err))
			continue
		case key == self.Public:
			errs = append(errs, fmt.Errorf("%w: peer %s has this node's public key", overlayerr.ErrInvalidPeer, p.NodeID))
			continue
		case !p.Endpoint.IsValid() || !p.Endpoint.Addr().Is4() || p.Endpoint.Port() == 0:
			errs = append(errs, fmt.Errorf("%w: peer %s: endpoint %q", overlayerr.ErrInvalidPeer, p.NodeID, p.Endpoint))
			continue
		case !p.TunnelIP.Is4():
			errs = append(errs, fmt.Errorf("%w: peer %s: tunnel address %q", overlayerr.ErrInvalidPeer, p.NodeID, p.TunnelIP))
			continue
		case keys[key] != "":
			errs = append(errs, fmt.Errorf("%w: peer %s has the key of peer %s", overlayerr.ErrInvalidPeer, p.NodeID, keys[key]))
			continue
		case tunnels[p.TunnelIP] != "":
			errs = append(errs, fmt.Errorf("%w: peer %s has the tunnel address of peer %s", overlayerr.ErrInvalidPeer, p.NodeID, tunnels[p.TunnelIP]))
			continue
		}
		if err := checkPeerSubnets(p, subnets); err != nil {
			errs = append(errs, err)
			continue
		}
		keys[key], tunnels[p.TunnelIP] = p.NodeID, p.NodeID
		allowed := []netip.Prefix{netip.PrefixFrom(p.TunnelIP, 32)}
		for _, s := range p.Subnets {
			subnets[s] = p.NodeID
			allowed = append(allowed, s)
		}
		dc.Peers = append(dc.Peers, PeerConfig{NodeID: p.NodeID, PublicKey: key, Endpoint: p.Endpoint, AllowedIPs: allowed, Keepalive: PersistentKeepalive})
	}
	return dc, errs
}

// Keys are the peers' public keys, in order.
func (dc DeviceConfig) Keys() [][32]byte {
	var keys [][32]byte
	for _, p := range dc.Peers {
		keys = append(keys, p.PublicKey)
	}
	return keys
}

// peerPlan is how a device holding the peers with the keys current gets
// to a DeviceConfig's peers.
type peerPlan struct {
	// Replace: the device's peers are unknown; replace them all.
	Replace bool
	// Remove: the peers that are gone, sorted by key.
	Remove [][32]byte
	// Peers are set (added or updated in place, allowed IPs replaced).
	Peers []PeerConfig
}

// planPeers is the step from a device holding the peers with the keys
// current to dc's peers: rather than replacing every peer, which drops
// every session (each pair handshakes again, and packets on the way are
// lost), it removes the peers that are gone and updates the others in
// place, so a node joining or a network created costs no one a session.
// current == nil means the device's peers are unknown: replace them all.
// It is pure.
func planPeers(dc DeviceConfig, current [][32]byte) peerPlan {
	if current == nil {
		return peerPlan{Replace: true, Peers: dc.Peers}
	}
	keep := map[[32]byte]bool{}
	for _, p := range dc.Peers {
		keep[p.PublicKey] = true
	}
	gone := [][32]byte{}
	for _, k := range current {
		if !keep[k] {
			gone = append(gone, k)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return string(gone[i][:]) < string(gone[j][:]) })
	return peerPlan{Remove: gone, Peers: dc.Peers}
}

// uapiText renders a plan as wireguard-go UAPI "set" text (without the
// private key or port).
func (pp peerPlan) uapiText() string {
	var b strings.Builder
	if pp.Replace {
		b.WriteString("replace_peers=true\n")
	}
	for _, k := range pp.Remove {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hex.EncodeToString(k[:]))
	}
	for _, p := range pp.Peers {
		fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\nreplace_allowed_ips=true\n", hex.EncodeToString(p.PublicKey[:]), p.Endpoint)
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
		fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.Keepalive/time.Second))
	}
	return b.String()
}

// kernelConfig renders a plan as the configuration wgctrl sends over the
// kernel's generic netlink API (or any WireGuard implementation wgctrl
// speaks to). key, when not nil, is set with the peers in the same step;
// port > 0 sets the listen port.
func (pp peerPlan) kernelConfig(key *[32]byte, port int) wgtypes.Config {
	cfg := wgtypes.Config{ReplacePeers: pp.Replace}
	if key != nil {
		k := wgtypes.Key(*key)
		cfg.PrivateKey = &k
	}
	if port > 0 {
		cfg.ListenPort = &port
	}
	for _, k := range pp.Remove {
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), Remove: true})
	}
	for _, p := range pp.Peers {
		ka := p.Keepalive
		pc := wgtypes.PeerConfig{
			PublicKey:                   wgtypes.Key(p.PublicKey),
			Endpoint:                    net.UDPAddrFromAddrPort(p.Endpoint),
			ReplaceAllowedIPs:           true,
			PersistentKeepaliveInterval: &ka,
		}
		for _, a := range p.AllowedIPs {
			pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	return cfg
}
