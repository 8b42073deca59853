package netloop

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-org/shoal/overlay/wireguard"
)

// TestWGKeysOnDisk: the next key is made, kept and promoted with mode
// 0600, its epoch beside it, and a restart at any point reads back what
// the decision needs.
func TestWGKeysOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wireguard")
	cur, err := wireguard.LoadOrCreateKeyPair(filepath.Join(dir, wgKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	k, err := loadWGKeys(dir, cur, 12)
	if err != nil {
		t.Fatal(err)
	}
	if c, p := k.in(); c.Epoch != 12 || c.Public != cur.PublicKey() || p != nil {
		t.Fatalf("fresh keys: %+v %+v", c, p)
	}
	if err := k.generate(50); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, wgNextFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("next key file: %v %v", st, err)
	}
	next := *k.next
	// Restart: the epoch of the current key stays, the next key is back.
	k2, err := loadWGKeys(dir, cur, 99)
	if err != nil {
		t.Fatal(err)
	}
	c, p := k2.in()
	if c.Epoch != 12 || p == nil || p.Public != next.PublicKey() || p.Epoch != 50 {
		t.Fatalf("after restart: %+v %+v", c, p)
	}
	if err := k2.promote(); err != nil {
		t.Fatal(err)
	}
	got, err := wireguard.LoadKeyPair(filepath.Join(dir, wgKeyFile))
	if err != nil || got != next {
		t.Fatalf("promoted key on disk: %v", err)
	}
	k3, err := loadWGKeys(dir, got, 99)
	if err != nil {
		t.Fatal(err)
	}
	if c, p := k3.in(); c.Epoch != 50 || c.Public != next.PublicKey() || p != nil {
		t.Fatalf("after promotion: %+v %+v", c, p)
	}
	// A next key whose epoch file is missing was never made whole: dropped.
	if err := wireguard.WriteKeyPair(filepath.Join(dir, wgNextFile), cur); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, wgNextEpochFile))
	k4, err := loadWGKeys(dir, got, 99)
	if err != nil {
		t.Fatal(err)
	}
	if _, p := k4.in(); p != nil {
		t.Fatalf("half-made next key kept: %+v", p)
	}
}
