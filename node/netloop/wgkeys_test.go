package netloop

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
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
	k, err := loadWGKeys(dir, cur, 12, discard)
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
	k2, err := loadWGKeys(dir, cur, 99, discard)
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
	k3, err := loadWGKeys(dir, got, 99, discard)
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
	k4, err := loadWGKeys(dir, got, 99, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, p := k4.in(); p != nil {
		t.Fatalf("half-made next key kept: %+v", p)
	}
}

// discard is the log of tests that do not read it.
var discard = slog.New(slog.DiscardHandler)

// TestWGKeysDropsUnusableNextKey: a next.key that is malformed (torn or
// corrupted) or readable by others is dropped, its file removed and the
// drop logged once, and the rotation goes on from the current key; before,
// loadWGKeys failed on every pass and WireGuard never came up on the node.
// The current key is untouched. (Fault audit s12.)
func TestWGKeysDropsUnusableNextKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{"malformed", "not a key\n", 0o600},
		{"torn", "", 0o600},
		{"truncated base64", "aGVsbG8=\n", 0o600},
		{"readable by others", "", 0o644}, // content: a valid key, below
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cur, err := wireguard.LoadOrCreateKeyPair(filepath.Join(dir, wgKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := writeIndexFile(filepath.Join(dir, wgNextEpochFile), 7); err != nil {
				t.Fatal(err)
			}
			content := tc.content
			if tc.mode != 0o600 {
				kp, err := wireguard.GenerateKeyPair()
				if err != nil {
					t.Fatal(err)
				}
				content = wireguardKeyText(t, kp)
			}
			next := filepath.Join(dir, wgNextFile)
			if err := os.WriteFile(next, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(next, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			for pass := range 2 { // a restart reads the keys again
				k, err := loadWGKeys(dir, cur, 5, log)
				if err != nil {
					t.Fatalf("pass %d: an unusable next key stops WireGuard on this node: %v", pass, err)
				}
				if c, p := k.in(); p != nil || c.Public != cur.PublicKey() || c.Epoch != 5 {
					t.Fatalf("pass %d: keys %+v %+v, want the current key alone", pass, c, p)
				}
			}
			if _, err := os.Lstat(next); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the unusable next key is still on disk: %v", err)
			}
			if n := bytes.Count(logged.Bytes(), []byte("dropped the unusable next key")); n != 1 {
				t.Fatalf("the drop was logged %d times, want once: %s", n, logged.String())
			}
			if got, err := wireguard.LoadKeyPair(filepath.Join(dir, wgKeyFile)); err != nil || got != cur {
				t.Fatalf("the current key changed: %v", err)
			}
		})
	}
}

// TestWGKeysMalformedCurrentKeyRefused: a malformed private.key is not
// dropped like a next key: the agent reads it (wireguard.LoadKeyPair, as
// syncWireGuard does) and fails, and the file stays for the operator.
// Replacing it would change the node's identity to its peers unseen.
func TestWGKeysMalformedCurrentKeyRefused(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, wgKeyFile)
	if err := os.WriteFile(p, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := wireguard.LoadKeyPair(p); !errors.Is(err, wireguard.ErrBadKey) {
		t.Fatalf("a malformed current key: %v, want ErrBadKey", err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "not a key\n" {
		t.Fatalf("the malformed current key was touched: %q %v", b, err)
	}
}

// wireguardKeyText is kp's private key as WriteKeyPair writes it.
func wireguardKeyText(t *testing.T, kp wireguard.KeyPair) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k")
	if err := wireguard.WriteKeyPair(p, kp); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
