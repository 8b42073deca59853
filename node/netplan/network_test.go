package netplan

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
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
	withNets := WireGuardPeers(nodes, "n1", cluster, tunnel, 51820, []netip.Prefix{encA, encB})
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

	netSub := netip.MustParsePrefix("10.44.0.0/16")
	plain := NetworkPeers(nodes[:4], "n1", netSub, cluster, netip.Prefix{})
	enc := NetworkPeers(nodes[:4], "n1", netSub, cluster, tunnel)
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
