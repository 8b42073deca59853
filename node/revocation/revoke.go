package node

// Removal is final (issue 7). `node rm` commits RemoveNode, which revokes the
// node's certificate serial in the replicated cluster record. What that must
// mean on every node, within about a second, is built here:
//
//   - Both ends check. Servers refuse a revoked client certificate at the
//     handshake (pki.Source.ServerTLS); dialling nodes refuse a revoked
//     server certificate (pki.Source.CheckedClientTLS). Both read the local
//     replica's revocation list.
//   - Live connections end. Every connection on the cluster port — accepted
//     by the mux (Raft, RPC, blob fetch) and dialled by this node (raft's
//     pooled connections, RPC calls, streams) — is tracked by the peer's
//     certificate serial once the handshake is done. revokeLoop watches the
//     store and closes the raw TCP connection of every peer whose serial is
//     revoked and whose node record is gone (cutOff: a renewal revokes the
//     old serial too, and must not cut the node's own renewal call): the
//     reader and writer on either end fail at once, with no TLS
//     close_notify to wait for. A removed node's own outgoing
//     connections therefore fail on their next read or write, because the
//     other end closed them.
//   - Gossip is cut. The removed node keeps the gossip key it had, so the
//     leader rotates the key in the same log entry that removes the node
//     (applyRemoval) and then in two more steps (nextKeyStep), each taken
//     only when every live node of the state gossips the fingerprint of the
//     keyring in the store (membership.Meta.GK):
//       1. [old, new]  every node installs the new key; old stays primary;
//       2. [new, old]  every node sends with the new key, still reads old;
//       3. [new]       old is removed: the removed node's messages, still
//                      encrypted with old, are dropped by memberlist
//                      (GossipVerifyIncoming), its probes go unanswered and
//                      the others declare it dead.
//     Every node applies the keyring of its replica (syncGossipKeys) and
//     persists it, so a node down during the rotation catches up through
//     Raft, which does not depend on gossip. A replica that is catching up
//     replays history, though: a node that joins (or re-joins after its
//     removal) replays the log from the start, and with it every keyring
//     the cluster ever had — the very key a rotation retired among them.
//     Applying those would make the node drop the current key and speak the
//     old one (nobody reads it; it reads the removed node), and each switch
//     changes its gossip metadata and wakes every membership subscriber in
//     the middle of the replay (the network loop then built the overlay from
//     the node's record of its previous membership: the old subnet, and its
//     new task did not answer through the routing mesh). So a node keeps,
//     beside its keyring, the Raft index that keyring is current as of (the
//     join reply's, or that of the replica it took the keyring from), and
//     applies its replica's keyring only from that index on
//     (replicaKeyring). A leader that did not start the
//     rotation it finds (it took over in the middle) cannot tell step 1
//     from step 2, so it starts a fresh rotation from whatever is there:
//     every key a removed node may know still goes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/membership"
)

// revokeResync is how often revokeLoop re-checks tracked connections and
// the keyring without a store change (a connection identified a moment
// after the revocation was applied, a failed keyring step) while that can
// matter: for revokeHot after a revocation and while a key rotation is in
// flight. Otherwise it re-checks every revokeIdleResync, so an idle node
// does not wake for it every second (issue 10).
const (
	revokeResync     = time.Second
	revokeHot        = 10 * time.Second
	revokeIdleResync = 10 * time.Second
)

// revokePeriod is revokeLoop's resync period at now, given when the
// revocation list last changed (zero: never seen changing) and whether a
// gossip key rotation is in flight (more than one key in the store).
func revokePeriod(now, changed time.Time, rotating bool) time.Duration {
	if rotating || (!changed.IsZero() && now.Sub(changed) < revokeHot) {
		return revokeResync
	}
	return revokeIdleResync
}

// ---- connection tracking ----

// connTracker knows the open cluster-port connections of one side (those
// the mux accepted, or those this process dialled) by the peer's
// certificate serial, so that a revocation can close them. It is safe for
// concurrent use.
type connTracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[*trackedConn]struct{}{}}
}

// dialedConns tracks every connection this process dialled to a cluster
// port (dialProto); serials are random 128-bit numbers, so agents sharing a
// process (unit tests) do not close each other's connections.
var dialedConns = newConnTracker()

// trackedConn is a raw TCP connection under a TLS one. Closing it forgets it.
type trackedConn struct {
	net.Conn
	t      *connTracker
	serial string // guarded by t.mu; "" until identify
	peer   string // guarded by t.mu
}

// wrap starts tracking raw; the TLS connection must be built on the result.
func (t *connTracker) wrap(raw net.Conn) *trackedConn {
	c := &trackedConn{Conn: raw, t: t}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// identify records the peer certificate a handshake verified on c.
func (t *connTracker) identify(c *trackedConn, serial, peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; ok {
		c.serial, c.peer = serial, peer
	}
}

func (c *trackedConn) Close() error {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}

// closeRevoked closes every identified connection for which cut(serial,
// peer) reports true and returns the peers (node IDs) it cut off.
func (t *connTracker) closeRevoked(cut func(serial, peer string) bool) []string {
	t.mu.Lock()
	var victims []*trackedConn
	var peers []string
	for c := range t.conns {
		if c.serial != "" && cut(c.serial, c.peer) {
			victims = append(victims, c)
			peers = append(peers, c.peer)
			delete(t.conns, c)
		}
	}
	t.mu.Unlock()
	for _, c := range victims {
		_ = c.Conn.Close() // the raw socket: unblocks both ends now
	}
	return peers
}

// len reports how many connections are tracked (tests).
func (t *connTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// ---- the loop every node runs ----

// revokeLoop closes the connections of revoked peers and applies the
// gossip keyring of the replica, on every store change and every
// revokeResync. It returns when ctx ends.
func (a *Agent) revokeLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	period := revokeResync
	tick := time.NewTicker(period)
	defer tick.Stop()
	revoked := -1
	var changed time.Time // when the revocation list last changed (first sight counts)
	floor := readIndexFile(filepath.Join(clusterDir(a.cfg.DataDir), keyringIndexFile))
	for {
		snap := cl.store.Snapshot() // the keyring together with the index it is as of
		rotating := false
		if c := snap.Cluster(); c != nil {
			rotating = len(c.GossipKeys) > 1
			if n := len(c.Revoked); n != revoked {
				revoked, changed = n, time.Now()
				a.closeRevokedConns(cl)
			}
			if keys := replicaKeyring(snap.Index(), floor, c.GossipKeys); keys != nil {
				if err := a.syncGossipKeys(cl, keys, snap.Index()); err != nil {
					a.log.Warn("apply gossip keyring", "err", err)
				}
			}
		}
		if p := revokePeriod(time.Now(), changed, rotating); p != period {
			period = p
			tick.Reset(p)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
			a.closeRevokedConns(cl)
			if c := cl.store.Cluster(); c != nil && len(c.GossipKeys) > 1 && cl.members != nil {
				cl.members.Republish() // a rotation waits for our fingerprint
			}
		}
	}
}

// cutOff decides whether a live connection with a peer (its node ID and
// certificate serial) must end: when the serial is revoked and the node is
// no member any more. A serial revoked while the node record stays was
// replaced by the node itself (renewal, CA rotation, re-join with its own
// key): the connections it opened with it are its own, and one of them may
// be carrying the new certificate back to it, so they end naturally; new
// handshakes with the old serial are refused anyway.
func cutOff(serial, peer string, isRevoked func(serial string) bool, isMember func(id string) bool) bool {
	return isRevoked(serial) && !isMember(peer)
}

// closeRevokedConns closes accepted and dialled connections of removed
// peers (cutOff).
func (a *Agent) closeRevokedConns(cl *cluster) {
	cut := func(serial, peer string) bool {
		return cutOff(serial, peer, cl.store.IsRevoked, func(id string) bool {
			_, err := cl.store.Node(id)
			return err == nil
		})
	}
	var peers []string
	if cl.mux != nil {
		peers = append(peers, cl.mux.conns.closeRevoked(cut)...)
	}
	peers = append(peers, dialedConns.closeRevoked(cut)...)
	if len(peers) > 0 {
		a.log.Info("closed connections of revoked certificates", "count", len(peers), "peers", dedupe(peers, ""))
	}
}

// syncGossipKeys makes gossip use keys, the keyring of the replica as of
// Raft index, and persists both for the next start; a no-op when they are
// already applied.
func (a *Agent) syncGossipKeys(cl *cluster, keys [][]byte, index uint64) error {
	if cl.members == nil || len(keys) == 0 {
		return nil
	}
	changed, err := cl.members.ApplyKeyring(keys)
	if err != nil || !changed {
		return err
	}
	// The index first: a crash between the two writes leaves an older
	// keyring under a newer index, which only delays the next apply; the
	// other way round, the next start would replay older keyrings.
	dir := clusterDir(a.cfg.DataDir)
	if err := writeIndexFile(filepath.Join(dir, keyringIndexFile), index); err != nil {
		return fmt.Errorf("persist gossip keyring index: %w", err)
	}
	if err := writeJSONFile(filepath.Join(dir, "keyring.json"), keys); err != nil {
		return fmt.Errorf("persist gossip keyring: %w", err)
	}
	a.log.Info("gossip keyring applied", "keys", len(keys), "fingerprint", membership.Fingerprint(keys), "index", index)
	return nil
}

// Files beside keyring.json under DATA/cluster, each an indexRecord.
const (
	// keyringIndexFile: the Raft index keyring.json is current as of.
	keyringIndexFile = "keyring-index.json"
	// joinIndexFile: the leader's index when it admitted this node; until
	// the replica reaches it, what it says of this node may be of a
	// previous membership (a node removed and joined again under its ID).
	joinIndexFile = "join-index.json"
)

type indexRecord struct {
	Index uint64 `json:"index"`
}

// readIndexFile returns the index recorded at path; 0 when there is none
// (init, or a node that joined before these files existed).
func readIndexFile(path string) uint64 {
	var r indexRecord
	if err := readJSONFile(path, &r); err != nil {
		return 0
	}
	return r.Index
}

func writeIndexFile(path string, index uint64) error {
	return writeJSONFile(path, indexRecord{Index: index})
}

// replicaKeyring returns the keyring to apply from a replica at index whose
// cluster record holds keys, or nil while the replica is behind floor, the
// index this node's keyring is current as of (see the top of this file):
// such a replica replays keyrings the cluster has retired.
func replicaKeyring(index, floor uint64, keys [][]byte) [][]byte {
	if len(keys) == 0 || index < floor {
		return nil
	}
	return keys
}

// replicaCurrent reports whether a replica at index has reached this
// node's join floor (joinIndexFile): before that, the record it holds of
// this node may be of a previous membership, with another subnet.
func replicaCurrent(index, joinFloor uint64) bool { return index >= joinFloor }

// ---- keyring steps (pure) ----

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// keyRotation is the leader's view of a gossip key rotation.
type keyRotation struct {
	// Keys is the keyring in the store, primary first.
	Keys [][]byte
	// Target is the key this leader is rotating to; nil when it runs none.
	Target []byte
	// Acked: every live node of the state gossips membership.Fingerprint(Keys).
	Acked bool
	// Fresh is a new random key, used if a rotation must start.
	Fresh []byte
}

// keyStep is the next move of a rotation.
type keyStep struct {
	// Propose is the keyring to commit now; nil: nothing to commit.
	Propose [][]byte
	// Target is the rotation target once Propose is committed (or now,
	// when there is nothing to propose); nil: no rotation in progress.
	Target []byte
}

// nextKeyStep decides the next step of a gossip key rotation; see the top
// of this file. Nothing moves until every live node applied the keyring in
// the store, so no node ever receives a message it cannot read.
func nextKeyStep(in keyRotation) keyStep {
	if len(in.Keys) == 0 {
		return keyStep{} // gossip without encryption: nothing to rotate
	}
	target := in.Target
	if target != nil && !containsKey(in.Keys, target) {
		target = nil // the keyring changed under us (another leader)
	}
	if !in.Acked {
		return keyStep{Target: target}
	}
	switch {
	case target == nil && distinctKeys(in.Keys) <= 1:
		return keyStep{}
	case target == nil && in.Fresh == nil:
		return keyStep{} // the caller has no key to start with
	case target == nil:
		// A rotation this leader did not start: which key is the new one
		// cannot be told, so start over with a fresh key.
		next := append(cloneKeys(in.Keys), in.Fresh)
		return keyStep{Propose: next, Target: in.Fresh}
	case !bytes.Equal(in.Keys[0], target):
		next := [][]byte{target}
		for _, k := range in.Keys {
			if !bytes.Equal(k, target) {
				next = append(next, k)
			}
		}
		return keyStep{Propose: next, Target: target}
	case len(in.Keys) > 1:
		return keyStep{Propose: [][]byte{target}, Target: target}
	default:
		return keyStep{} // done: [target]
	}
}

func distinctKeys(keys [][]byte) int {
	var seen [][]byte
	for _, k := range keys {
		if !containsKey(seen, k) {
			seen = append(seen, k)
		}
	}
	return len(seen)
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// keysAcked reports whether every node of the state that gossip sees
// alive (and this node) applied the keyring with fingerprint fp. Nodes
// that are down do not hold the rotation up: they catch up through Raft.
// Members that are not in the state (a removed node) do not count.
func keysAcked(fp string, nodes []*api.Node, alive map[string]memberMeta, self, selfFP string) bool {
	for _, n := range nodes {
		if n.ID == self {
			if selfFP != fp {
				return false
			}
			continue
		}
		if m, ok := alive[n.ID]; ok && m.GK != fp {
			return false
		}
	}
	return true
}

func newGossipKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

// ---- leader side ----

// errRemoveNode wraps a refusal of RemoveNode inside the removal batch.
var errRemoveNode = errors.New("remove node record")

// applyRemoval commits rm together with the first step of a gossip key
// rotation (a new key installed beside the current ones) in one log entry,
// so that a removal never lands without its rotation, and makes this
// leader drive the rest of the rotation (rotateGossipKeys).
func (a *Agent) applyRemoval(ctx context.Context, cl *cluster, rm *consensus.RemoveNode) error {
	c := cl.store.Cluster()
	if c == nil || len(c.GossipKeys) == 0 {
		_, err := cl.raft.Apply(ctx, rm)
		return err
	}
	fresh := newGossipKey()
	keys := append(cloneKeys(c.GossipKeys), fresh)
	v, err := cl.raft.Apply(ctx, &consensus.Batch{Commands: []consensus.Command{rm, &consensus.SetGossipKeys{Keys: keys}}})
	if err != nil {
		return err
	}
	res, _ := v.([]consensus.Result)
	if len(res) == 2 && res[1].Err == nil {
		cl.keyTarget.Store(&fresh)
	}
	if len(res) > 0 && res[0].Err != nil {
		return fmt.Errorf("%w: %w", errRemoveNode, res[0].Err)
	}
	return nil
}

// rotateGossipKeys takes the next step of a gossip key rotation, if one is
// due and every live node took the previous one. Leader loop only.
func (a *Agent) rotateGossipKeys(ctx context.Context, cl *cluster) {
	c := cl.store.Cluster()
	if c == nil || cl.members == nil {
		return
	}
	var target []byte
	if p := cl.keyTarget.Load(); p != nil {
		target = *p
	}
	fp := membership.Fingerprint(c.GossipKeys)
	in := keyRotation{
		Keys:   c.GossipKeys,
		Target: target,
		Acked:  keysAcked(fp, cl.store.Nodes(), cl.members.AliveSet(), a.id.NodeID, cl.members.KeyringFP()),
	}
	if in.Acked && target == nil && distinctKeys(in.Keys) > 1 {
		in.Fresh = newGossipKey()
	}
	step := nextKeyStep(in)
	if step.Propose == nil {
		if step.Target == nil {
			cl.keyTarget.Store(nil)
		}
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.raft.Apply(wctx, &consensus.SetGossipKeys{Keys: step.Propose}); err != nil {
		a.log.Warn("gossip key rotation step", "err", err)
		return
	}
	t := step.Target
	cl.keyTarget.Store(&t)
	a.log.Info("gossip key rotation step", "keys", len(step.Propose), "fingerprint", membership.Fingerprint(step.Propose))
}
