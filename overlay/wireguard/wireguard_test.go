package wireguard

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/overlay/overlayerr"
)

func TestLoadOrCreateKeyPair(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "wg.key")
	kp, err := LoadOrCreateKeyPair(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v", err, st.Mode())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), kp.PublicKey()) {
		t.Fatal("the key file holds the public key, not the private one")
	}
	again, err := LoadOrCreateKeyPair(path)
	if err != nil || again != kp {
		t.Fatalf("reload: %v, same=%v", err, again == kp)
	}
	if kp.Public == kp.Private || kp.Public == ([32]byte{}) {
		t.Fatal("degenerate key pair")
	}
	other, _ := LoadOrCreateKeyPair(filepath.Join(dir, "other.key"))
	if other.Public == kp.Public {
		t.Fatal("two nodes got the same key")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("leftover temp files: %v", entries)
	}

	// A file others can read is refused and left alone.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyPair(path); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("0644 key: %v", err)
	}
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Fatal("a refused key file was changed")
	}
	// A malformed one too.
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyPair(bad); !errors.Is(err, ErrBadKey) {
		t.Fatalf("malformed key: %v", err)
	}
	if b3, _ := os.ReadFile(bad); string(b3) != "not base64!\n" {
		t.Fatal("a malformed key file was overwritten")
	}
}

// TestKeyPairMatchesWireGuard: the public key is X25519(clamp(priv), 9),
// checked against a vector of `wg pubkey`.
func TestKeyPairMatchesWireGuard(t *testing.T) {
	// RFC 7748 §6.1 (Alice): private and public key.
	priv, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	want := "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
	kp, err := keyPairOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(kp.Public[:]); got != want {
		t.Fatalf("public key %s, want %s", got, want)
	}
	if k, err := ParseKey(kp.PublicKey()); err != nil || k != kp.Public {
		t.Fatalf("ParseKey round trip: %v", err)
	}
	for _, s := range []string{"", "AAAA", base64.StdEncoding.EncodeToString(make([]byte, 31)), "%%%"} {
		if _, err := ParseKey(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) = %v", s, err)
		}
	}
}

func TestTunnelAddr(t *testing.T) {
	tun := netip.MustParsePrefix(DefaultTunnelCIDR)
	cl := netip.MustParsePrefix("10.42.0.0/16")
	for _, tc := range []struct {
		tunnel, cluster, subnet, want string
	}{
		{DefaultTunnelCIDR, "10.42.0.0/16", "10.42.0.0/24", "100.64.0.1"},
		{DefaultTunnelCIDR, "10.42.0.0/16", "10.42.7.0/24", "100.64.0.8"},
		{DefaultTunnelCIDR, "10.42.0.0/16", "10.42.255.0/24", "100.64.1.0"},
		{DefaultTunnelCIDR, "10.40.0.0/14", "10.43.255.0/24", "100.64.4.0"},
		{"100.64.0.0/24", "10.42.0.0/16", "10.42.253.0/24", "100.64.0.254"},
		{"100.64.0.0/24", "10.42.0.0/16", "10.42.254.0/24", ""}, // would be the broadcast address
		{DefaultTunnelCIDR, "10.42.0.0/16", "10.43.0.0/24", ""}, // outside the cluster
		{DefaultTunnelCIDR, "10.42.0.0/16", "10.0.0.0/8", ""},   // larger than the cluster
	} {
		got, err := TunnelAddr(netip.MustParsePrefix(tc.tunnel), netip.MustParsePrefix(tc.cluster), netip.MustParsePrefix(tc.subnet))
		if tc.want == "" {
			if !errors.Is(err, ErrNoTunnelAddr) {
				t.Errorf("%s in %s: %v, %v; want ErrNoTunnelAddr", tc.subnet, tc.tunnel, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s in %s: %v, %v; want %s", tc.subnet, tc.tunnel, got, err, tc.want)
		}
	}
	// Distinct subnets, distinct addresses.
	seen := map[netip.Addr]bool{}
	for i := 0; i < 256; i++ {
		a, err := TunnelAddr(tun, cl, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i), 0}), 24))
		if err != nil || seen[a] {
			t.Fatalf("subnet %d: %v %v (dup %v)", i, a, err, seen[a])
		}
		seen[a] = true
	}
}

func TestPeersConfig(t *testing.T) {
	self, _ := GenerateKeyPair()
	k1, _ := GenerateKeyPair()
	k2, _ := GenerateKeyPair()
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	ip := netip.MustParseAddr
	hexOf := func(k KeyPair) string { return hex.EncodeToString(k.Public[:]) }

	peers := []WGPeer{
		{NodeID: "n2", PublicKey: k2.PublicKey(), Endpoint: ep("10.213.1.13:51820"), TunnelIP: ip("100.64.0.3"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.44.1.0/24"), netip.MustParsePrefix("10.45.0.128/25")}},
		{NodeID: "n1", PublicKey: k1.PublicKey(), Endpoint: ep("10.213.1.12:51820"), TunnelIP: ip("100.64.0.2")},
	}
	got, errs := PeersConfig(self, peers)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := "replace_peers=true\n" +
		"public_key=" + hexOf(k1) + "\nendpoint=10.213.1.12:51820\nreplace_allowed_ips=true\nallowed_ip=100.64.0.2/32\npersistent_keepalive_interval=25\n" +
		"public_key=" + hexOf(k2) + "\nendpoint=10.213.1.13:51820\nreplace_allowed_ips=true\nallowed_ip=100.64.0.3/32\nallowed_ip=10.44.1.0/24\nallowed_ip=10.45.0.128/25\npersistent_keepalive_interval=25\n"
	if got != want {
		t.Fatalf("config:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, hex.EncodeToString(self.Private[:])) {
		t.Fatal("the peer config carries the private key")
	}

	// An update in place: the gone peer removed, no replace_peers (which
	// would drop the sessions of those that stay).
	gone, _ := GenerateKeyPair()
	upd, keys, errs := PeersUpdate(self, peers, [][32]byte{k2.Public, gone.Public, k1.Public})
	if len(errs) > 0 || len(keys) != 2 || keys[0] != k1.Public || keys[1] != k2.Public {
		t.Fatalf("update: keys %v errs %v", keys, errs)
	}
	if wantUpd := "public_key=" + hexOf(gone) + "\nremove=true\n" + strings.TrimPrefix(want, "replace_peers=true\n"); upd != wantUpd {
		t.Fatalf("update:\n%s\nwant:\n%s", upd, wantUpd)
	}
	if upd, _, _ := PeersUpdate(self, nil, [][32]byte{k1.Public}); upd != "public_key="+hexOf(k1)+"\nremove=true\n" {
		t.Fatalf("update to no peers: %q", upd)
	}

	// No peers: every peer removed.
	if got, errs := PeersConfig(self, nil); got != "replace_peers=true\n" || len(errs) > 0 {
		t.Fatalf("empty: %q %v", got, errs)
	}

	// Bad peers are left out alone.
	bad := append(peers,
		WGPeer{NodeID: "n3", PublicKey: "garbage", Endpoint: ep("10.213.1.14:51820"), TunnelIP: ip("100.64.0.4")},
		WGPeer{NodeID: "n4", PublicKey: self.PublicKey(), Endpoint: ep("10.213.1.15:51820"), TunnelIP: ip("100.64.0.5")},
		WGPeer{NodeID: "n5", PublicKey: k1.PublicKey(), Endpoint: ep("10.213.1.16:51820"), TunnelIP: ip("100.64.0.6")},
		WGPeer{NodeID: "n6", PublicKey: mustKey(t), Endpoint: ep("10.213.1.17:51820"), TunnelIP: ip("100.64.0.2")},
		WGPeer{NodeID: "n7", PublicKey: mustKey(t), TunnelIP: ip("100.64.0.8")},
		WGPeer{NodeID: "n8", PublicKey: mustKey(t), Endpoint: ep("10.213.1.19:51820")},
		// Subnets: another peer's (WireGuard would move it silently),
		// host bits, overlapping each other, holding a tunnel address.
		WGPeer{NodeID: "n9", PublicKey: mustKey(t), Endpoint: ep("10.213.1.20:51820"), TunnelIP: ip("100.64.0.10"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.44.1.128/25")}},
		WGPeer{NodeID: "na", PublicKey: mustKey(t), Endpoint: ep("10.213.1.21:51820"), TunnelIP: ip("100.64.0.11"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.44.9.1/24")}},
		WGPeer{NodeID: "nb", PublicKey: mustKey(t), Endpoint: ep("10.213.1.22:51820"), TunnelIP: ip("100.64.0.12"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.46.0.0/24"), netip.MustParsePrefix("10.46.0.0/25")}},
		WGPeer{NodeID: "nc", PublicKey: mustKey(t), Endpoint: ep("10.213.1.23:51820"), TunnelIP: ip("100.64.0.13"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}},
	)
	got, errs = PeersConfig(self, bad)
	if got != want || len(errs) != 10 {
		t.Fatalf("with bad peers: %d errors %v\n%s", len(errs), errs, got)
	}
	for i, w := range []string{"n3", "n4", "n5", "n6", "n7", "n8", "n9", "na", "nb", "nc"} {
		if !strings.Contains(errs[i].Error(), "peer "+w) {
			t.Errorf("error %d = %v, want peer %s", i, errs[i], w)
		}
	}
}

func mustKey(t *testing.T) string {
	k, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestWireGuardConfigValidate(t *testing.T) {
	good := DefaultWireGuardConfig()
	good.KeyFile, good.TunnelIP = "/var/lib/shoal/wg.key", netip.MustParseAddr("100.64.0.2")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*WireGuardConfig){
		"relative key":       func(c *WireGuardConfig) { c.KeyFile = "wg.key" },
		"tunnel IP outside":  func(c *WireGuardConfig) { c.TunnelIP = netip.MustParseAddr("10.0.0.1") },
		"no tunnel IP":       func(c *WireGuardConfig) { c.TunnelIP = netip.Addr{} },
		"port":               func(c *WireGuardConfig) { c.Port = 0 },
		"name":               func(c *WireGuardConfig) { c.Name = "much-too-long-name" },
		"MTU":                func(c *WireGuardConfig) { c.MTU = 100 },
		"relative namespace": func(c *WireGuardConfig) { c.NetNS = "h1" },
	} {
		c := good
		f(&c)
		if err := c.Validate(); !errors.Is(err, overlayerr.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseHandshakes(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	hexOf := func(b64 string) string {
		k, err := ParseKey(b64)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(k[:])
	}
	text := "private_key=00\nlisten_port=51820\n" +
		"public_key=" + hexOf(k1) + "\nendpoint=10.0.0.1:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"public_key=" + hexOf(k2) + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n"
	got := parseHandshakes(text)
	if len(got) != 2 || !got[k1].Equal(time.Unix(1700000000, 5)) || !got[k2].IsZero() {
		t.Fatalf("handshakes: %v", got)
	}
}
