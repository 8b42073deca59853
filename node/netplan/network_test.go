package netplan

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// TestEncryptedNetworkPeers: which nodes are WireGuard peers (those with a
// subnet, an address and a published key), at which endpoint and allowed
// IP; and an encrypted network's overlay peers live at tunnel addresses.
func TestEncryptedNetworkPeers(t *testing.T) {
	k2, _ := wireguard.GenerateKeyPair()
	k3, _ := wireguard.GenerateKeyPair()
	nodes := []*api.Node{
		{ID: "n1", Addr: "10.213.1.11", Subnet: "10.42.1.0/24", WireGuardKey: "self-key"},
		{ID: "n2", Addr: "10.213.1.12", Subnet: "10.42.2.0/24", WireGuardKey: k2.PublicKey()},
		{ID: "n3", Addr: "10.213.1.13", Subnet: "10.42.3.0/24", WireGuardKey: k3.PublicKey()},
		{ID: "n4", Addr: "10.213.1.14", Subnet: "10.42.4.0/24"},                               // no key yet
		{ID: "n5", Addr: "10.213.1.15", WireGuardKey: k3.PublicKey()},                         // no subnet yet
		{ID: "n6", Addr: "not-an-ip", Subnet: "10.42.6.0/24", WireGuardKey: k2.PublicKey()},   // broken record
		{ID: "n7", Addr: "10.213.1.17", Subnet: "10.99.7.0/24", WireGuardKey: k2.PublicKey()}, // outside the cluster
	}
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	tunnel := netip.MustParsePrefix(wireguard.DefaultTunnelCIDR)
	got := WireGuardPeers(nodes, "n1", cluster, tunnel, 51820, nil)
	want := []wireguard.WGPeer{
		{NodeID: "n2", PublicKey: k2.PublicKey(), Endpoint: netip.MustParseAddrPort("10.213.1.12:51820"), TunnelIP: netip.MustParseAddr("100.64.0.3")},
		{NodeID: "n3", PublicKey: k3.PublicKey(), Endpoint: netip.MustParseAddrPort("10.213.1.13:51820"), TunnelIP: netip.MustParseAddr("100.64.0.4")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("wireguard peers:\n got %+v\nwant %+v", got, want)
	}

	// With encrypted networks, each peer is also allowed its share of
	// each (its containers' addresses, routed into WireGuard).
	encA, encB := netip.MustParsePrefix("10.44.0.0/16"), netip.MustParsePrefix("10.45.0.0/18")
	withNets := WireGuardPeers(nodes, "n1", cluster, tunnel, 51820, []*api.Network{{Name: "a", Subnet: encA.String()}, {Name: "b", Subnet: encB.String()}})
	if len(withNets) != len(want) {
		t.Fatalf("peers with encrypted networks: %+v", withNets)
	}
	for i, p := range withNets {
		sub := netip.MustParsePrefix(nodes[i+1].Subnet)
		shareA, errA := api.NodeShare(encA, cluster, sub)
		shareB, errB := api.NodeShare(encB, cluster, sub)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		w := want[i]
		w.Subnets = []netip.Prefix{shareA, shareB}
		if !reflect.DeepEqual(p, w) {
			t.Fatalf("peer %d:\n got %+v\nwant %+v", i, p, w)
		}
	}

	nw := &api.Network{Name: "enc", Subnet: "10.44.0.0/16"}
	plain := NetworkPeers(nodes[:4], "n1", nw, cluster, netip.Prefix{})
	enc := NetworkPeers(nodes[:4], "n1", nw, cluster, tunnel)
	if len(plain) != 3 || len(enc) != 3 {
		t.Fatalf("peers: plain %+v encrypted %+v", plain, enc)
	}
	for i := range plain {
		if plain[i].Subnet != enc[i].Subnet || plain[i].NodeID != enc[i].NodeID {
			t.Fatalf("encrypted peers differ beyond the underlay: %+v vs %+v", plain[i], enc[i])
		}
		wantTunnel, _ := wireguard.TunnelAddr(tunnel, cluster, netip.MustParsePrefix(nodes[i+1].Subnet))
		if enc[i].UnderlayIP != wantTunnel || plain[i].UnderlayIP.String() != nodes[i+1].Addr {
			t.Fatalf("peer %s: plain underlay %s, encrypted %s (want %s)", plain[i].NodeID, plain[i].UnderlayIP, enc[i].UnderlayIP, wantTunnel)
		}
	}
	// n4 has no key: it is an overlay peer (its tunnel address is known)
	// but no WireGuard peer, so its traffic is dropped, never sent in clear.
	if enc[2].NodeID != "n4" {
		t.Fatalf("n4 missing from the encrypted overlay peers: %+v", enc)
	}
}

// TestAllocatedSharePeers: on a network with allocated shares, a peer's
// route is its allocated share (not the index-derived one, which does not
// exist for such a subnet), a node without a share is no peer, and
// WireGuard allows each peer its allocated share of an encrypted one.
func TestAllocatedSharePeers(t *testing.T) {
	k2, _ := wireguard.GenerateKeyPair()
	nodes := []*api.Node{
		{ID: "n1", Addr: "10.213.1.11", Subnet: "10.42.1.0/24", WireGuardKey: "self-key"},
		{ID: "n2", Addr: "10.213.1.12", Subnet: "10.42.2.0/24", WireGuardKey: k2.PublicKey()},
		{ID: "n3", Addr: "10.213.1.13", Subnet: "10.42.3.0/24", WireGuardKey: k2.PublicKey()}, // no share
		{ID: "n4", Addr: "10.213.1.14", Subnet: "10.42.4.0/24"},
	}
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	nw := &api.Network{Name: "small", Subnet: "172.28.0.0/24", ShareBits: 28,
		Shares: map[string]string{"n1": "172.28.0.0/28", "n2": "172.28.0.32/28", "n4": "172.28.0.16/28"}}
	got := NetworkPeers(nodes, "n1", nw, cluster, netip.Prefix{})
	want := []overlay.Peer{
		{NodeID: "n2", Subnet: netip.MustParsePrefix("172.28.0.32/28"), UnderlayIP: netip.MustParseAddr("10.213.1.12")},
		{NodeID: "n4", Subnet: netip.MustParsePrefix("172.28.0.16/28"), UnderlayIP: netip.MustParseAddr("10.213.1.14")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("peers:\n got %+v\nwant %+v", got, want)
	}
	enc := *nw
	enc.Encrypted = true
	wg := WireGuardPeers(nodes, "n1", cluster, netip.MustParsePrefix(wireguard.DefaultTunnelCIDR), 51820, []*api.Network{&enc})
	if len(wg) != 2 || wg[0].NodeID != "n2" || !reflect.DeepEqual(wg[0].Subnets, []netip.Prefix{netip.MustParsePrefix("172.28.0.32/28")}) ||
		wg[1].NodeID != "n3" || len(wg[1].Subnets) != 0 {
		t.Fatalf("wireguard peers %+v: want n2 allowed 172.28.0.32/28, n3 allowed no share", wg)
	}
}
