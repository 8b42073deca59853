package netplan

// WireGuard key rotation on node removal (issue 9).
//
// Every node's WireGuard key pair is its own (overlay/wireguard); the
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
//     for R or later published (WGCutover), every replica agrees from the
//     same log entry on: each node configures its peers' next keys and
//     switches its own device to its next key in one configuration step
//     (wireguard.WireGuard.SwitchKey). The gap is the time between two
//     replicas applying that entry, plus one handshake.
//  3. Promote. Each node moves its next key over its key, on disk and
//     then in its record (WireGuardKey, WireGuardKeyEpoch = R, next
//     empty). Peers' configuration does not change: the effective key
//     (WGPeerKey) was already the next one.
//
// Idempotent: every step is decided from the replica and the files
// (WGRotationNext, pure), so a restart anywhere converges: a next key on
// disk that the record already publishes is used, one that is not yet is
// published again, a key switched on disk but not yet in the record is
// published. A node rotates only when the removal index is above its key's
// epoch, so replaying the log after a restart (old removals go by again)
// never rotates twice. A node that was down during the removal rotates
// when it comes back; nodes that are down do not hold the others up.
//
// This file is the decision (pure, table-tested here); the key files and
// the device it drives are the agent's (node/netloop/wgkeys.go).

import "github.com/shoal-org/shoal/api"

// WGLocalKey is a key this node holds: its public half and the removal
// index it postdates.
type WGLocalKey struct {
	Public string
	Epoch  uint64
}

// WGRotationIn is what the rotation decision reads: the replica and the
// keys on disk.
type WGRotationIn struct {
	// RemovalIndex is the replica's ClusterState.LastRemovalIndex.
	RemovalIndex uint64
	// Self is this node's record, Nodes all records (Self among them).
	Self  api.Node
	Nodes []*api.Node
	// Current is the key the device runs, Pending the next key on disk
	// (nil: none).
	Current WGLocalKey
	Pending *WGLocalKey
	// Backend is the device's backend (wireguard.BackendKernel or
	// BackendUserspace), published in the record beside the key so that
	// `node inspect` shows it; "" leaves the record's as it is.
	Backend string
}

// WGRotationStep is the next move of this node's rotation. At most one of
// Switch and Generate is set; Publish may come with neither.
type WGRotationStep struct {
	// Switch: make the pending key the device's key and the current one on
	// disk (cut over: every node published a key for its epoch).
	Switch bool
	// Generate > 0: make a fresh pending key postdating this index.
	Generate uint64
	// Publish is this node's record as it should be; nil when it is.
	Publish *api.Node
}

// WGRotationNext decides the next step of this node's key rotation (see
// the top of this file). It is pure; the caller applies Switch or Generate
// and asks again.
func WGRotationNext(in WGRotationIn) WGRotationStep {
	want := in.Self
	want.WireGuardKey, want.WireGuardKeyEpoch = in.Current.Public, in.Current.Epoch
	want.WireGuardNextKey, want.WireGuardNextEpoch = "", 0
	if in.Backend != "" {
		want.WireGuardBackend = in.Backend
	}
	if p := in.Pending; p != nil {
		published := in.Self.WireGuardNextKey == p.Public && in.Self.WireGuardNextEpoch == p.Epoch
		if published && WGCutover(p.Epoch, in.Nodes) {
			return WGRotationStep{Switch: true}
		}
		if !published && p.Epoch < in.RemovalIndex {
			// Superseded by a later removal before anyone could use it:
			// make the key of the later one instead.
			return WGRotationStep{Generate: in.RemovalIndex}
		}
		// Published (even if superseded: peers may be cutting over to it
		// right now; the next rotation follows the switch) or to publish.
		want.WireGuardNextKey, want.WireGuardNextEpoch = p.Public, p.Epoch
	} else if in.Current.Epoch < in.RemovalIndex {
		return WGRotationStep{Generate: in.RemovalIndex}
	}
	if want.WireGuardKey == in.Self.WireGuardKey && want.WireGuardKeyEpoch == in.Self.WireGuardKeyEpoch &&
		want.WireGuardNextKey == in.Self.WireGuardNextKey && want.WireGuardNextEpoch == in.Self.WireGuardNextEpoch &&
		want.WireGuardBackend == in.Self.WireGuardBackend {
		return WGRotationStep{}
	}
	return WGRotationStep{Publish: &want}
}

// WGCutover reports whether every WireGuard node of the state that is not
// down has published a key (current or next) postdating epoch: from then on
// every node uses its next key of that epoch. Nodes without a key yet are
// no WireGuard peers and do not count, nor do nodes that are down (they
// catch up when they return). It is pure and, as nodes only ever publish
// later epochs, stays true once true (but for a down node coming back
// before it has published, which the promotion step makes harmless).
func WGCutover(epoch uint64, nodes []*api.Node) bool {
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

// WGPeerKey is the public key under which peers know node n: its next key
// once the cutover to that key's epoch happened, else its current key ("":
// n is no WireGuard peer). It is pure.
func WGPeerKey(n *api.Node, nodes []*api.Node) string {
	if n.WireGuardNextKey != "" && (n.WireGuardKey == "" || n.WireGuardNextEpoch > n.WireGuardKeyEpoch) &&
		WGCutover(n.WireGuardNextEpoch, nodes) {
		return n.WireGuardNextKey
	}
	return n.WireGuardKey
}
