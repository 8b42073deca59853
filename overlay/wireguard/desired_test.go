package wireguard

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/shoal-org/shoal/overlay/overlayerr"
)

// testKeys are fixed key pairs, so tables can name them.
func testKeys(t *testing.T, n int) []KeyPair {
	t.Helper()
	var out []KeyPair
	for i := range n {
		var priv [32]byte
		priv[1] = byte(i + 1) // not priv[0]: clamping clears its low bits
		kp, err := keyPairOf(priv[:])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, kp)
	}
	return out
}

func TestDesired(t *testing.T) {
	k := testKeys(t, 4)
	self := k[0]
	ep := netip.MustParseAddrPort
	ip := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	peer := func(id string, kp KeyPair, end, tun string, subnets ...string) WGPeer {
		p := WGPeer{NodeID: id, PublicKey: kp.PublicKey(), TunnelIP: ip(tun)}
		if end != "" {
			p.Endpoint = ep(end)
		}
		for _, s := range subnets {
			p.Subnets = append(p.Subnets, pfx(s))
		}
		return p
	}
	want := func(id string, kp KeyPair, end string, allowed ...string) PeerConfig {
		pc := PeerConfig{NodeID: id, PublicKey: kp.Public, Endpoint: ep(end), Keepalive: 25 * time.Second}
		for _, a := range allowed {
			pc.AllowedIPs = append(pc.AllowedIPs, pfx(a))
		}
		return pc
	}
	for _, tc := range []struct {
		name    string
		peers   []WGPeer
		want    []PeerConfig
		badPeer []string // the peers reported, in order
	}{
		{name: "no peers"},
		{
			name: "sorted by node, tunnel address first, then subnets",
			peers: []WGPeer{
				peer("n2", k[2], "10.213.1.13:51820", "100.64.0.3", "10.44.1.0/24", "10.45.0.128/25"),
				peer("n1", k[1], "10.213.1.12:51820", "100.64.0.2"),
			},
			want: []PeerConfig{
				want("n1", k[1], "10.213.1.12:51820", "100.64.0.2/32"),
				want("n2", k[2], "10.213.1.13:51820", "100.64.0.3/32", "10.44.1.0/24", "10.45.0.128/25"),
			},
		},
		{
			name: "this node's key left out",
			peers: []WGPeer{
				peer("n1", k[1], "10.213.1.12:51820", "100.64.0.2"),
				peer("n9", self, "10.213.1.19:51820", "100.64.0.9"),
			},
			want:    []PeerConfig{want("n1", k[1], "10.213.1.12:51820", "100.64.0.2/32")},
			badPeer: []string{"n9"},
		},
		{
			name: "no endpoint, no tunnel address, a taken key, a taken subnet",
			peers: []WGPeer{
				peer("n1", k[1], "10.213.1.12:51820", "100.64.0.2", "10.44.0.0/25"),
				peer("n2", k[2], "", "100.64.0.3"),
				{NodeID: "n3", PublicKey: k[3].PublicKey(), Endpoint: ep("10.213.1.14:51820")},
				peer("n4", k[1], "10.213.1.15:51820", "100.64.0.5"),
				peer("n5", k[3], "10.213.1.16:51820", "100.64.0.6", "10.44.0.64/26"),
			},
			want:    []PeerConfig{want("n1", k[1], "10.213.1.12:51820", "100.64.0.2/32", "10.44.0.0/25")},
			badPeer: []string{"n2", "n3", "n4", "n5"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, errs := Desired(self, 51820, tc.peers)
			if dc.PrivateKey != self.Private || dc.ListenPort != 51820 {
				t.Fatalf("key or port: %+v", dc)
			}
			if !reflect.DeepEqual(dc.Peers, tc.want) {
				t.Fatalf("peers:\n%+v\nwant\n%+v", dc.Peers, tc.want)
			}
			if len(errs) != len(tc.badPeer) {
				t.Fatalf("errors %v, want %d", errs, len(tc.badPeer))
			}
			for i, e := range errs {
				if !errors.Is(e, overlayerr.ErrInvalidPeer) || !strings.Contains(e.Error(), "peer "+tc.badPeer[i]+":") && !strings.Contains(e.Error(), "peer "+tc.badPeer[i]+" ") {
					t.Errorf("error %d = %v, want one about peer %s", i, e, tc.badPeer[i])
				}
			}
		})
	}
}

func TestPlanPeers(t *testing.T) {
	k := testKeys(t, 4)
	dc := DeviceConfig{Peers: []PeerConfig{{NodeID: "a", PublicKey: k[1].Public}, {NodeID: "b", PublicKey: k[2].Public}}}
	for _, tc := range []struct {
		name    string
		current [][32]byte
		want    peerPlan
	}{
		{"unknown: replace all", nil, peerPlan{Replace: true, Peers: dc.Peers}},
		{"none yet", [][32]byte{}, peerPlan{Remove: [][32]byte{}, Peers: dc.Peers}},
		{"same peers: updated in place", [][32]byte{k[2].Public, k[1].Public}, peerPlan{Remove: [][32]byte{}, Peers: dc.Peers}},
		{"a peer gone: removed", [][32]byte{k[1].Public, k[3].Public, k[2].Public}, peerPlan{Remove: [][32]byte{k[3].Public}, Peers: dc.Peers}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planPeers(dc, tc.current); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestKernelConfig: the wgtypes configuration the kernel path sends says
// what the UAPI text of the userspace path says.
func TestKernelConfig(t *testing.T) {
	k := testKeys(t, 3)
	ka := 25 * time.Second
	pc := PeerConfig{NodeID: "a", PublicKey: k[1].Public, Endpoint: netip.MustParseAddrPort("10.213.1.12:51820"),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32"), netip.MustParsePrefix("10.44.0.128/25")}, Keepalive: ka}
	wantPeer := wgtypes.PeerConfig{
		PublicKey: wgtypes.Key(k[1].Public), Endpoint: &net.UDPAddr{IP: net.IPv4(10, 213, 1, 12).To4(), Port: 51820},
		ReplaceAllowedIPs: true, PersistentKeepaliveInterval: &ka,
		AllowedIPs: []net.IPNet{
			{IP: net.IP{100, 64, 0, 2}, Mask: net.CIDRMask(32, 32)},
			{IP: net.IP{10, 44, 0, 128}, Mask: net.CIDRMask(25, 32)},
		},
	}
	priv, port := wgtypes.Key(k[0].Private), 51820
	for _, tc := range []struct {
		name string
		plan peerPlan
		key  *[32]byte
		port int
		want wgtypes.Config
	}{
		{"replace", peerPlan{Replace: true, Peers: []PeerConfig{pc}}, nil, 0,
			wgtypes.Config{ReplacePeers: true, Peers: []wgtypes.PeerConfig{wantPeer}}},
		{"remove then update, with the key", peerPlan{Remove: [][32]byte{k[2].Public}, Peers: []PeerConfig{pc}}, &k[0].Private, 0,
			wgtypes.Config{PrivateKey: &priv, Peers: []wgtypes.PeerConfig{{PublicKey: wgtypes.Key(k[2].Public), Remove: true}, wantPeer}}},
		{"key and port, no peers", peerPlan{Replace: true}, &k[0].Private, 51820,
			wgtypes.Config{PrivateKey: &priv, ListenPort: &port, ReplacePeers: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.plan.kernelConfig(tc.key, tc.port); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
