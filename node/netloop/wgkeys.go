package netloop

// WireGuard key rotation on node removal (issue 9): the node's side. What
// to do next is decided by netplan.WGRotationNext (pure; the protocol is
// described in node/netplan/wgrotate.go) from the replica and the keys
// this node holds; this file keeps those keys on disk, and syncWireGuard
// (netloop.go) applies each step to the files, the device and this node's
// record.
//
// Each node keeps, under DATA/cluster/wireguard/, its key (private.key)
// with the removal index it postdates (key-epoch.json), and during a
// rotation the next key (next.key, next-epoch.json). All 0600, never sent
// anywhere.

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// Files of the WireGuard keys under DATA/cluster/wireguard.
const (
	wgKeyFile       = "private.key"
	wgKeyEpochFile  = "key-epoch.json"
	wgNextFile      = "next.key"
	wgNextEpochFile = "next-epoch.json"
)

// wgKeys are this node's key pairs as on disk: current and, during a
// rotation, next. Owned by the loop's goroutine (syncWireGuard).
type wgKeys struct {
	dir       string
	cur       wireguard.KeyPair
	curEpoch  uint64
	next      *wireguard.KeyPair
	nextEpoch uint64
}

// loadWGKeys reads the keys under dir. The current key must exist (the
// device made it); a key without an epoch file (made by an agent before
// rotation, or just now) postdates index: what the replica has applied.
// A next key without its epoch was never published whole: it is dropped.
//
// A next key that is malformed (torn or corrupted on disk: ErrBadKey) or
// readable by others (ErrKeyFileMode) is dropped too, its file removed and
// the drop logged on log (once: the file is gone afterwards). Refusing it
// instead, as before, failed every pass for good and WireGuard never came
// up on the node; dropping costs only a fresh next key, which the rotation
// makes and publishes again (the one lost cannot be recovered in any case,
// and one others could read must not be used). The current key is not
// dropped: the caller reads it with wireguard.LoadKeyPair, and a malformed
// one stays an error, loudly retried, since replacing it would silently
// change this node's identity to its peers. An I/O error reading next.key
// is returned as well: it may pass, and the file may be whole.
func loadWGKeys(dir string, cur wireguard.KeyPair, index uint64, log *slog.Logger) (*wgKeys, error) {
	k := &wgKeys{dir: dir, cur: cur}
	if _, err := os.Stat(filepath.Join(dir, wgKeyEpochFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeIndexFile(filepath.Join(dir, wgKeyEpochFile), index); err != nil {
			return nil, fmt.Errorf("WireGuard key epoch: %w", err)
		}
		k.curEpoch = index
	} else {
		k.curEpoch = readIndexFile(filepath.Join(dir, wgKeyEpochFile))
	}
	next, err := wireguard.LoadKeyPair(filepath.Join(dir, wgNextFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, wireguard.ErrBadKey) || errors.Is(err, wireguard.ErrKeyFileMode):
		if rerr := os.Remove(filepath.Join(dir, wgNextFile)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("drop the unusable WireGuard next key: %w (it is unusable: %v)", rerr, err)
		}
		log.Warn("wireguard: dropped the unusable next key; the rotation makes a new one", "err", err)
	case err != nil:
		return nil, err
	default:
		e := readIndexFile(filepath.Join(dir, wgNextEpochFile))
		if e == 0 || next == cur {
			_ = os.Remove(filepath.Join(dir, wgNextFile))
			break
		}
		k.next, k.nextEpoch = &next, e
	}
	return k, nil
}

// in is the keys' part of the decision's input.
func (k *wgKeys) in() (netplan.WGLocalKey, *netplan.WGLocalKey) {
	cur := netplan.WGLocalKey{Public: k.cur.PublicKey(), Epoch: k.curEpoch}
	if k.next == nil {
		return cur, nil
	}
	return cur, &netplan.WGLocalKey{Public: k.next.PublicKey(), Epoch: k.nextEpoch}
}

// generate makes a fresh next key postdating epoch, epoch file first: a
// crash between the two leaves an epoch without a key, which is ignored.
func (k *wgKeys) generate(epoch uint64) error {
	kp, err := wireguard.GenerateKeyPair()
	if err != nil {
		return err
	}
	if err := writeIndexFile(filepath.Join(k.dir, wgNextEpochFile), epoch); err != nil {
		return fmt.Errorf("WireGuard next key epoch: %w", err)
	}
	if err := wireguard.WriteKeyPair(filepath.Join(k.dir, wgNextFile), kp); err != nil {
		return err
	}
	k.next, k.nextEpoch = &kp, epoch
	return nil
}

// readIndexFile and writeIndexFile are the agent's index records
// (revocation.ReadIndexFile): the key epochs share their format with the
// join floor and the removal index beside them.
func readIndexFile(path string) uint64 { return revocation.ReadIndexFile(path) }

func writeIndexFile(path string, index uint64) error {
	return revocation.WriteIndexFile(path, index)
}

// promote makes the next key the current one on disk, after the device
// switched to it. Epoch first: a crash after it leaves next.key in place,
// still published, and the next start switches again (idempotent); a
// crash after the rename leaves the new key with its epoch.
func (k *wgKeys) promote() error {
	if k.next == nil {
		return nil
	}
	if err := writeIndexFile(filepath.Join(k.dir, wgKeyEpochFile), k.nextEpoch); err != nil {
		return fmt.Errorf("WireGuard key epoch: %w", err)
	}
	if err := os.Rename(filepath.Join(k.dir, wgNextFile), filepath.Join(k.dir, wgKeyFile)); err != nil {
		return fmt.Errorf("promote WireGuard key: %w", err)
	}
	_ = os.Remove(filepath.Join(k.dir, wgNextEpochFile))
	k.cur, k.curEpoch, k.next, k.nextEpoch = *k.next, k.nextEpoch, nil, 0
	return nil
}
