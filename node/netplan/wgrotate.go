package node

// WireGuard key rotation on node removal (issue 9).
//
// Every node's WireGuard key pair is its own (overlay/wireguard.go); the
// public halves are in the node records. When a node is removed it is
// dropped as a peer everywhere at once, so its own key opens nothing any
// more. Rotating the others' keys bounds the life of every static key to
// one membership: a key that leaked with a removed host (a backup of its
// data directory, a host compromised and removed for that reason that had
// seen another's disk) stops opening sessions after the removal.
//
// The rotation is keyed to the removal's Raft index
// (consensus.ClusterState.LastRemovalIndex): a node's key "postdates" index
// E when it was made after the replica had applied E. Each node keeps,
// under DATA/cluster/wireguard/, its key (private.key) with the index it
// postdates (key-epoch.json), and during a rotation the next key
// (next.key, next-epoch.json). All 0600, never sent anywhere.
//
// Make before break. wireguard-go knows a peer by its public key and gives
// each allowed IP to one peer, so a peer cannot accept two keys of one node
// at once. Instead the switch is made simultaneous:
//
//  1. Publish. Every node makes a next key for the removal index R and
//     publishes its public half in its own record (WireGuardNextKey,
//     WireGuardNextEpoch = R) — an UpsertNode of its own record, which the
//     leader allows for node-owned fields only (node/authz). Meanwhile the
//     current keys keep working: nobody uses a next key yet.
//  2. Cut over. Once every node of the state that is not down has a key
//     for R or later published (wgCutover), every replica agrees from the
//     same log entry on: each node configures its peers' next keys and
//     switches its own device to its next key in one configuration step
//     (overlay.WireGuard.SwitchKey). The gap is the time between two
//     replicas applying that entry, plus one handshake.
//  3. Promote. Each node moves its next key over its key, on disk and
//     then in its record (WireGuardKey, WireGuardKeyEpoch = R, next
//     empty). Peers' configuration does not change: the effective key
//     (wgPeerKey) was already the next one.
//
// Idempotent: every step is decided from the replica and the files
// (wgRotationNext, pure), so a restart anywhere converges: a next key on
// disk that the record already publishes is used, one that is not yet is
// published again, a key switched on disk but not yet in the record is
// published. A node rotates only when the removal index is above its key's
// epoch, so replaying the log after a restart (old removals go by again)
// never rotates twice. A node that was down during the removal rotates
// when it comes back; nodes that are down do not hold the others up.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/overlay"
)

// Files of the WireGuard keys under DATA/cluster/wireguard.
const (
	wgKeyFile       = "private.key"
	wgKeyEpochFile  = "key-epoch.json"
	wgNextFile      = "next.key"
	wgNextEpochFile = "next-epoch.json"
)

// wgLocalKey is a key this node holds: its public half and the removal
// index it postdates.
type wgLocalKey struct {
	Public string
	Epoch  uint64
}

// wgRotationIn is what the rotation decision reads: the replica and the
// keys on disk.
type wgRotationIn struct {
	// RemovalIndex is the replica's ClusterState.LastRemovalIndex.
	RemovalIndex uint64
	// Self is this node's record, Nodes all records (Self among them).
	Self  api.Node
	Nodes []*api.Node
	// Current is the key the device runs, Pending the next key on disk
	// (nil: none).
	Current wgLocalKey
	Pending *wgLocalKey
}

// wgRotationStep is the next move of this node's rotation. At most one of
// Switch and Generate is set; Publish may come with neither.
type wgRotationStep struct {
	// Switch: make the pending key the device's key and the current one on
	// disk (cut over: every node published a key for its epoch).
	Switch bool
	// Generate > 0: make a fresh pending key postdating this index.
	Generate uint64
	// Publish is this node's record as it should be; nil when it is.
	Publish *api.Node
}

// wgRotationNext decides the next step of this node's key rotation (see
// the top of this file). It is pure; the caller applies Switch or Generate
// and asks again.
func wgRotationNext(in wgRotationIn) wgRotationStep {
	want := in.Self
	want.WireGuardKey, want.WireGuardKeyEpoch = in.Current.Public, in.Current.Epoch
	want.WireGuardNextKey, want.WireGuardNextEpoch = "", 0
	if p := in.Pending; p != nil {
		published := in.Self.WireGuardNextKey == p.Public && in.Self.WireGuardNextEpoch == p.Epoch
		if published && wgCutover(p.Epoch, in.Nodes) {
			return wgRotationStep{Switch: true}
		}
		if !published && p.Epoch < in.RemovalIndex {
			// Superseded by a later removal before anyone could use it:
			// make the key of the later one instead.
			return wgRotationStep{Generate: in.RemovalIndex}
		}
		// Published (even if superseded: peers may be cutting over to it
		// right now; the next rotation follows the switch) or to publish.
		want.WireGuardNextKey, want.WireGuardNextEpoch = p.Public, p.Epoch
	} else if in.Current.Epoch < in.RemovalIndex {
		return wgRotationStep{Generate: in.RemovalIndex}
	}
	if want.WireGuardKey == in.Self.WireGuardKey && want.WireGuardKeyEpoch == in.Self.WireGuardKeyEpoch &&
		want.WireGuardNextKey == in.Self.WireGuardNextKey && want.WireGuardNextEpoch == in.Self.WireGuardNextEpoch {
		return wgRotationStep{}
	}
	return wgRotationStep{Publish: &want}
}

// wgCutover reports whether every WireGuard node of the state that is not
// down has published a key (current or next) postdating epoch: from then on
// every node uses its next key of that epoch. Nodes without a key yet are
// no WireGuard peers and do not count, nor do nodes that are down (they
// catch up when they return). It is pure and, as nodes only ever publish
// later epochs, stays true once true (but for a down node coming back
// before it has published, which the promotion step makes harmless).
func wgCutover(epoch uint64, nodes []*api.Node) bool {
	for _, n := range nodes {
		if n.Status == api.NodeDown || (n.WireGuardKey == "" && n.WireGuardNextKey == "") {
			continue
		}
		e := n.WireGuardKeyEpoch
		if n.WireGuardNextKey != "" && n.WireGuardNextEpoch > e {
			e = n.WireGuardNextEpoch
		}
		if e < epoch {
			return false
		}
	}
	return true
}

// wgPeerKey is the public key under which peers know node n: its next key
// once the cutover to that key's epoch happened, else its current key ("":
// n is no WireGuard peer). It is pure.
func wgPeerKey(n *api.Node, nodes []*api.Node) string {
	if n.WireGuardNextKey != "" && (n.WireGuardKey == "" || n.WireGuardNextEpoch > n.WireGuardKeyEpoch) &&
		wgCutover(n.WireGuardNextEpoch, nodes) {
		return n.WireGuardNextKey
	}
	return n.WireGuardKey
}

// ---- the node's keys on disk (impure half) ----

// wgKeys are this node's key pairs as on disk: current and, during a
// rotation, next. Owned by the network loop.
type wgKeys struct {
	dir       string
	cur       overlay.KeyPair
	curEpoch  uint64
	next      *overlay.KeyPair
	nextEpoch uint64
}

// loadWGKeys reads the keys under dir. The current key must exist (the
// device made it); a key without an epoch file (made by an agent before
// rotation, or just now) postdates index: what the replica has applied.
// A next key without its epoch, or unreadable, is dropped: it was never
// published whole.
func loadWGKeys(dir string, cur overlay.KeyPair, index uint64) (*wgKeys, error) {
	k := &wgKeys{dir: dir, cur: cur}
	if _, err := os.Stat(filepath.Join(dir, wgKeyEpochFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeIndexFile(filepath.Join(dir, wgKeyEpochFile), index); err != nil {
			return nil, fmt.Errorf("WireGuard key epoch: %w", err)
		}
		k.curEpoch = index
	} else {
		k.curEpoch = readIndexFile(filepath.Join(dir, wgKeyEpochFile))
	}
	next, err := overlay.LoadKeyPair(filepath.Join(dir, wgNextFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
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
func (k *wgKeys) in() (wgLocalKey, *wgLocalKey) {
	cur := wgLocalKey{Public: k.cur.PublicKey(), Epoch: k.curEpoch}
	if k.next == nil {
		return cur, nil
	}
	return cur, &wgLocalKey{Public: k.next.PublicKey(), Epoch: k.nextEpoch}
}

// generate makes a fresh next key postdating epoch, epoch file first: a
// crash between the two leaves an epoch without a key, which is ignored.
func (k *wgKeys) generate(epoch uint64) error {
	kp, err := overlay.GenerateKeyPair()
	if err != nil {
		return err
	}
	if err := writeIndexFile(filepath.Join(k.dir, wgNextEpochFile), epoch); err != nil {
		return fmt.Errorf("WireGuard next key epoch: %w", err)
	}
	if err := overlay.WriteKeyPair(filepath.Join(k.dir, wgNextFile), kp); err != nil {
		return err
	}
	k.next, k.nextEpoch = &kp, epoch
	return nil
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
