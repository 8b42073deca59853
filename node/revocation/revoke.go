package revocation

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
//     certificate serial once the handshake is done. Loop watches the
//     store and closes the raw TCP connection of every peer whose serial is
//     revoked and whose node record is gone (CutOff: a renewal revokes the
//     old serial too, and must not cut the node's own renewal call): the
//     reader and writer on either end fail at once, with no TLS
//     close_notify to wait for. A removed node's own outgoing
//     connections therefore fail on their next read or write, because the
//     other end closed them.
//   - Gossip is cut. The removed node keeps the gossip key it had, so the
//     leader rotates the key in the same log entry that removes the node
//     (node's applyRemoval) and then in two more steps (NextKeyStep), each taken
//     only when every live node of the state gossips the fingerprint of the
//     keyring in the store (membership.Meta.GK):
//       1. [old, new]  every node installs the new key; old stays primary;
//       2. [new, old]  every node sends with the new key, still reads old;
//       3. [new]       old is removed: the removed node's messages, still
//                      encrypted with old, are dropped by memberlist
//                      (GossipVerifyIncoming), its probes go unanswered and
//                      the others declare it dead.
//     Every node applies the keyring of its replica (Loop.syncGossipKeys) and
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
//     (ReplicaKeyring). A leader that did not start the
//     rotation it finds (it took over in the middle) cannot tell step 1
//     from step 2, so it starts a fresh rotation from whatever is there:
//     every key a removed node may know still goes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shoal-org/shoal/node/resync"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
)

// Resync is how often Loop re-checks tracked connections and the keyring
// without a store change (a connection identified a moment after the
// revocation was applied, a failed keyring step) while that can matter:
// for Hot after a revocation and while a key rotation is in flight.
// Otherwise it re-checks every IdleResync, so an idle node does not wake
// for it every second (issue 10).
const (
	Resync     = time.Second
	Hot        = 10 * time.Second
	IdleResync = 10 * time.Second
)

// Period is Loop's resync period at now, given when the revocation list
// last changed (zero: never seen changing) and whether a gossip key
// rotation is in flight (more than one key in the store).
func Period(now, changed time.Time, rotating bool) time.Duration {
	if rotating || (!changed.IsZero() && now.Sub(changed) < Hot) {
		return Resync
	}
	return IdleResync
}

// ---- connection tracking ----

// Tracker knows the open cluster-port connections of one side (those the
// mux accepted, or those this process dialled) by the peer's certificate
// serial, so that a revocation can close them. It is a
// clusterport.Tracker. It is safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{conns: map[*trackedConn]struct{}{}}
}

// trackedConn is a raw TCP connection under a TLS one. Closing it forgets it.
type trackedConn struct {
	net.Conn
	t      *Tracker
	serial string // guarded by t.mu; "" until Identify
	peer   string // guarded by t.mu
}

// Track starts tracking raw; the TLS connection must be built on the result.
func (t *Tracker) Track(raw net.Conn) net.Conn {
	c := &trackedConn{Conn: raw, t: t}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// Identify records the peer certificate a handshake verified on c, a
// connection Track returned (others are ignored).
func (t *Tracker) Identify(c net.Conn, serial, peer string) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[tc]; ok {
		tc.serial, tc.peer = serial, peer
	}
}

func (c *trackedConn) Close() error {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}

// CloseRevoked closes every identified connection for which cut(serial,
// peer) reports true and returns the peers (node IDs) it cut off.
func (t *Tracker) CloseRevoked(cut func(serial, peer string) bool) []string {
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

// Len reports how many connections are tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Identified reports how many tracked connections are identified.
func (t *Tracker) Identified() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c := range t.conns {
		if c.serial != "" {
			n++
		}
	}
	return n
}

// ---- the loop every node runs ----

// Gossip is the part of membership Loop drives (membership.Membership).
type Gossip interface {
	// ApplyKeyring makes gossip use keys; it reports whether they changed.
	ApplyKeyring(keys [][]byte) (bool, error)
	// Republish gossips this node's metadata (its keyring fingerprint) again.
	Republish()
}

// Loop closes the connections of revoked peers and applies the gossip
// keyring of the replica, on every store change and every Period. Its
// fields are set before Run and not changed after.
type Loop struct {
	Store *consensus.Store
	// Gossip is nil while the cluster has no gossip (tests).
	Gossip Gossip
	// Trackers are the trackers whose connections a revocation closes:
	// the mux's accepted ones and this process's dialled ones.
	Trackers []*Tracker
	// Dir is DATA/cluster: keyring.json and KeyringIndexFile live there.
	Dir string
	Log *slog.Logger
}

// Run runs the loop; it returns when ctx ends.
func (l *Loop) Run(ctx context.Context) {
	ch, cancel := l.Store.Subscribe()
	defer cancel()
	period := Resync
	tick := resync.NewTicker(period)
	defer tick.Stop()
	revoked := revocationMark{n: -1}
	var changed time.Time // when the revocation list last changed (first sight counts)
	floor := ReadIndexFile(filepath.Join(l.Dir, KeyringIndexFile))
	for {
		snap := l.Store.Snapshot() // the keyring together with the index it is as of
		rotating := false
		if c := snap.Cluster(); c != nil {
			rotating = len(c.GossipKeys) > 1
			if m := markOf(c); m != revoked {
				revoked, changed = m, time.Now()
				l.CloseRevokedConns()
			}
			if keys := ReplicaKeyring(snap.Index(), floor, c.GossipKeys); keys != nil {
				if err := l.syncGossipKeys(keys, snap.Index()); err != nil {
					l.Log.Warn("apply gossip keyring", "err", err)
				}
			}
		}
		if p := Period(time.Now(), changed, rotating); p != period {
			period = p
			tick.Reset(p)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
			l.CloseRevokedConns()
			if c := l.Store.Cluster(); c != nil && len(c.GossipKeys) > 1 && l.Gossip != nil {
				l.Gossip.Republish() // a rotation waits for our fingerprint
			}
		}
	}
}

// revocationMark tells Loop that the revocation list changed: its length
// and its last serial. A revocation appends a serial never listed before,
// so the last one changes with every revocation, also when a trim
// (consensus/fsm TrimRevoked) applied in between made the list as long as
// it was: the length alone did not show that one.
type revocationMark struct {
	n    int
	last string
}

func markOf(c *consensus.ClusterState) revocationMark {
	m := revocationMark{n: len(c.Revoked)}
	if m.n > 0 {
		m.last = c.Revoked[m.n-1]
	}
	return m
}

// CutOff decides whether a live connection with a peer (its node ID and
// certificate serial) must end: when the serial is revoked and the node is
// no member any more. A serial revoked while the node record stays was
// replaced by the node itself (renewal, CA rotation, re-join with its own
// key): the connections it opened with it are its own, and one of them may
// be carrying the new certificate back to it, so they end naturally; new
// handshakes with the old serial are refused anyway.
func CutOff(serial, peer string, isRevoked func(serial string) bool, isMember func(id string) bool) bool {
	return isRevoked(serial) && !isMember(peer)
}

// CloseRevokedConns closes the tracked connections of removed peers
// (CutOff).
func (l *Loop) CloseRevokedConns() {
	cut := func(serial, peer string) bool {
		return CutOff(serial, peer, l.Store.IsRevoked, func(id string) bool {
			_, err := l.Store.Node(id)
			return err == nil
		})
	}
	var peers []string
	for _, t := range l.Trackers {
		if t != nil {
			peers = append(peers, t.CloseRevoked(cut)...)
		}
	}
	if len(peers) > 0 {
		l.Log.Info("closed connections of revoked certificates", "count", len(peers), "peers", membership.Dedupe(peers, ""))
	}
}

// syncGossipKeys makes gossip use keys, the keyring of the replica as of
// Raft index, and persists both for the next start; a no-op when they are
// already applied.
func (l *Loop) syncGossipKeys(keys [][]byte, index uint64) error {
	if l.Gossip == nil || len(keys) == 0 {
		return nil
	}
	changed, err := l.Gossip.ApplyKeyring(keys)
	if err != nil || !changed {
		return err
	}
	// The index first: a crash between the two writes leaves an older
	// keyring under a newer index, which only delays the next apply; the
	// other way round, the next start would replay older keyrings.
	if err := WriteIndexFile(filepath.Join(l.Dir, KeyringIndexFile), index); err != nil {
		return fmt.Errorf("persist gossip keyring index: %w", err)
	}
	if err := atomicfile.WriteJSON(filepath.Join(l.Dir, KeyringFile), keys); err != nil {
		return fmt.Errorf("persist gossip keyring: %w", err)
	}
	l.Log.Info("gossip keyring applied", "keys", len(keys), "fingerprint", membership.Fingerprint(keys), "index", index)
	return nil
}

// Files under DATA/cluster.
const (
	// KeyringFile: the gossip keyring this node uses, primary first.
	KeyringFile = "keyring.json"
	// KeyringIndexFile: the Raft index KeyringFile is current as of.
	KeyringIndexFile = "keyring-index.json"
	// JoinIndexFile: the leader's index when it admitted this node; until
	// the replica reaches it, what it says of this node may be of a
	// previous membership (a node removed and joined again under its ID).
	JoinIndexFile = "join-index.json"
)

type indexRecord struct {
	Index uint64 `json:"index"`
}

// ReadIndexFile returns the index recorded at path; 0 when there is none
// (init, or a node that joined before these files existed).
func ReadIndexFile(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var r indexRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return 0
	}
	return r.Index
}

// WriteIndexFile records index at path (atomically, 0600).
func WriteIndexFile(path string, index uint64) error {
	return atomicfile.WriteJSON(path, indexRecord{Index: index})
}

// ReplicaKeyring returns the keyring to apply from a replica at index whose
// cluster record holds keys, or nil while the replica is behind floor, the
// index this node's keyring is current as of (see the top of this file):
// such a replica replays keyrings the cluster has retired.
func ReplicaKeyring(index, floor uint64, keys [][]byte) [][]byte {
	if len(keys) == 0 || index < floor {
		return nil
	}
	return keys
}

// ReplicaCurrent reports whether a replica at index has reached this
// node's join floor (JoinIndexFile): before that, the record it holds of
// this node may be of a previous membership, with another subnet.
func ReplicaCurrent(index, joinFloor uint64) bool { return index >= joinFloor }

// ---- keyring steps (pure) ----

// ContainsKey reports whether keys holds k.
func ContainsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// KeyRotation is the leader's view of a gossip key rotation.
type KeyRotation struct {
	// Keys is the keyring in the store, primary first.
	Keys [][]byte
	// Target is the key this leader is rotating to; nil when it runs none.
	Target []byte
	// Acked: every live node of the state gossips membership.Fingerprint(Keys).
	Acked bool
	// Fresh is a new random key, used if a rotation must start.
	Fresh []byte
}

// KeyStep is the next move of a rotation.
type KeyStep struct {
	// Propose is the keyring to commit now; nil: nothing to commit.
	Propose [][]byte
	// Target is the rotation target once Propose is committed (or now,
	// when there is nothing to propose); nil: no rotation in progress.
	Target []byte
}

// NextKeyStep decides the next step of a gossip key rotation; see the top
// of this file. Nothing moves until every live node applied the keyring in
// the store, so no node ever receives a message it cannot read.
func NextKeyStep(in KeyRotation) KeyStep {
	if len(in.Keys) == 0 {
		return KeyStep{} // gossip without encryption: nothing to rotate
	}
	target := in.Target
	if target != nil && !ContainsKey(in.Keys, target) {
		target = nil // the keyring changed under us (another leader)
	}
	if !in.Acked {
		return KeyStep{Target: target}
	}
	switch {
	case target == nil && DistinctKeys(in.Keys) <= 1:
		return KeyStep{}
	case target == nil && in.Fresh == nil:
		return KeyStep{} // the caller has no key to start with
	case target == nil:
		// A rotation this leader did not start: which key is the new one
		// cannot be told, so start over with a fresh key.
		next := append(CloneKeys(in.Keys), in.Fresh)
		return KeyStep{Propose: next, Target: in.Fresh}
	case !bytes.Equal(in.Keys[0], target):
		next := [][]byte{target}
		for _, k := range in.Keys {
			if !bytes.Equal(k, target) {
				next = append(next, k)
			}
		}
		return KeyStep{Propose: next, Target: target}
	case len(in.Keys) > 1:
		return KeyStep{Propose: [][]byte{target}, Target: target}
	default:
		return KeyStep{} // done: [target]
	}
}

// DistinctKeys counts the different keys of keys.
func DistinctKeys(keys [][]byte) int {
	var seen [][]byte
	for _, k := range keys {
		if !ContainsKey(seen, k) {
			seen = append(seen, k)
		}
	}
	return len(seen)
}

// CloneKeys copies keys deeply.
func CloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// KeysAcked reports whether every node of the state that gossip sees
// alive (and this node) applied the keyring with fingerprint fp. Nodes
// that are down do not hold the rotation up: they catch up through Raft.
// Members that are not in the state (a removed node) do not count.
func KeysAcked(fp string, nodes []*api.Node, alive map[string]membership.Meta, self, selfFP string) bool {
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

// NewGossipKey draws a new 32-byte gossip key.
func NewGossipKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

// ---- leader side ----

// ErrRemoveNode wraps a refusal of RemoveNode inside the removal batch.
var ErrRemoveNode = errors.New("remove node record")

// Applier proposes a command to Raft and waits for its result
// (raftnode.Raft).
type Applier interface {
	Apply(ctx context.Context, cmd command.Command) (any, error)
}

// RotationGossip is what the leader reads of gossip to tell whether every
// live node took a rotation step (membership.Membership).
type RotationGossip interface {
	AliveSet() map[string]membership.Meta
	KeyringFP() string
}

// Rotator is the leader's side of `node rm`: the removal with the first
// step of a gossip key rotation in one entry, then the rotation's next
// steps (NextKeyStep). Its fields are set before use and not changed
// after; the agent builds one per call.
type Rotator struct {
	Self  string
	Store *consensus.Store
	Raft  Applier
	// Gossip is nil while the cluster has no gossip: Step does nothing.
	Gossip RotationGossip
	// Target is the key this leader is rotating to; it lives with the
	// cluster so that it outlasts a Rotator.
	Target *atomic.Pointer[[]byte]
	Log    *slog.Logger
}

// Remove commits rm together with the first step of a gossip key
// rotation (a new key installed beside the current ones) in one log entry,
// so that a removal never lands without its rotation, and makes this
// leader drive the rest of the rotation (Step). A refusal of rm itself is
// wrapped in ErrRemoveNode.
func (r *Rotator) Remove(ctx context.Context, rm *command.RemoveNode) error {
	c := r.Store.Cluster()
	if c == nil || len(c.GossipKeys) == 0 {
		_, err := r.Raft.Apply(ctx, rm)
		return err
	}
	fresh := NewGossipKey()
	keys := append(CloneKeys(c.GossipKeys), fresh)
	v, err := r.Raft.Apply(ctx, &command.Batch{Commands: []command.Command{rm, &command.SetGossipKeys{Keys: keys}}})
	if err != nil {
		return err
	}
	res, _ := v.([]fsm.Result)
	if len(res) == 2 && res[1].Err == nil {
		r.Target.Store(&fresh)
	}
	if len(res) > 0 && res[0].Err != nil {
		return fmt.Errorf("%w: %w", ErrRemoveNode, res[0].Err)
	}
	return nil
}

// Step takes the next step of a gossip key rotation, if one is due and
// every live node took the previous one. Leader loop only.
func (r *Rotator) Step(ctx context.Context) {
	c := r.Store.Cluster()
	if c == nil || r.Gossip == nil {
		return
	}
	var target []byte
	if p := r.Target.Load(); p != nil {
		target = *p
	}
	fp := membership.Fingerprint(c.GossipKeys)
	in := KeyRotation{
		Keys:   c.GossipKeys,
		Target: target,
		Acked:  KeysAcked(fp, r.Store.Nodes(), r.Gossip.AliveSet(), r.Self, r.Gossip.KeyringFP()),
	}
	if in.Acked && target == nil && DistinctKeys(in.Keys) > 1 {
		in.Fresh = NewGossipKey()
	}
	step := NextKeyStep(in)
	if step.Propose == nil {
		if step.Target == nil {
			r.Target.Store(nil)
		}
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.Raft.Apply(wctx, &command.SetGossipKeys{Keys: step.Propose}); err != nil {
		r.Log.Warn("gossip key rotation step", "err", err)
		return
	}
	t := step.Target
	r.Target.Store(&t)
	r.Log.Info("gossip key rotation step", "keys", len(step.Propose), "fingerprint", membership.Fingerprint(step.Propose))
}
