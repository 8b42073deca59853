package node

// Removal: `shoal node rm` is final for the removed host, even when it was
// down at the time (or alive, with --force) and comes back later with its
// old cluster state. The leader's RemoveNode deletes the node record and
// revokes its certificate in one committed entry; the removed host never
// sees that entry (it is out of the Raft configuration first), so it must
// learn about it from a peer:
//
//   - Hint. Every node whose replica is live (it knows a leader and holds
//     its own record) looks for gossip members whose node ID is not in its
//     nodes table and sends each a small memberlist user message (best
//     effort, every removalHintEvery) naming its own cluster address. A hint
//     proves nothing — a node that just joined may be gossiping before a
//     lagging replica holds its record — it only says "ask".
//   - Backstop. A node that has seen no Raft leader for removalLeaderless
//     asks too (gossip keys may be rotated one day, and then no hint would
//     reach a removed host).
//   - Question. The node dials peers (the hint's sender first, then nodes of
//     its own replica) WITHOUT its certificate — a revoked one is refused at
//     the handshake — and asks the narrow `removal` RPC: "is node ID X with
//     certificate serial S removed?". That method is the only one besides
//     join and ping that a caller without a certificate may use, and it
//     grants nothing: its answer is a boolean about public facts.
//   - Statement. The answer counts only when it is positive AND comes from
//     a witness the asking node trusts by what it holds itself: a server
//     whose certificate verifies against the cluster CA and names another
//     node, not revoked, that the replica knows with that very certificate
//     serial — or, when the replica has no record of it, that is a server of
//     the node's last Raft configuration. (A restarted removed node's
//     replica is empty: hashicorp/raft applies the log only once a leader
//     reports the commit index, and no leader talks to a removed node. Its
//     configuration, though, is read from the log at start.) The server
//     says "removed" only when the serial is revoked in its replica and no
//     node record carries the ID: a committed RemoveNode, never the mere
//     absence of information.
//
// A node that is only partitioned never resets: nobody can reach it, or
// whoever answers says "not removed". The removed node then resets: it
// stops its cluster parts (leaving gossip, so peers drop it at once), removes
// its task containers, its overlay and load balancer state, and moves
// DATA/cluster aside to DATA/cluster.removed, so the data dir (identity,
// images) stays usable and `shoal join` works again. `shoal leave` on a
// removed node asks the same question first and, on a positive statement,
// resets locally without needing a quorum.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// Timing of hints and questions.
const (
	// removalHintEvery is how often a node hints one suspect member.
	removalHintEvery = 3 * time.Second
	// removalCheckGap is the least time between two questions of a node.
	removalCheckGap = time.Second
	// removalLeaderless is how long a node goes without a Raft leader
	// before it asks on its own, and then how often it asks again.
	removalLeaderless = 10 * time.Second
	// removalAskTimeout bounds one round of questions.
	removalAskTimeout = 3 * time.Second
	// removalIdleTick is how often the loop looks without a wake-up
	// while there is a leader and nobody to hint or ask about: the
	// leaderless clock then starts at most this late, against the
	// removalLeaderless it waits anyway (issue 10: an idle node's wake-ups).
	removalIdleTick = 5 * time.Second
	// removalAskMax is how many peers one round asks at most.
	removalAskMax = 5
	// removalDrain is how long a node that left or was removed keeps its
	// task containers after leaving gossip and Raft (see dropCluster).
	removalDrain = 2 * time.Second
)

// removalHintType is the first byte of a removal hint user message.
const removalHintType byte = 'R'

// maxRemovalField bounds the node ID and serial of a question.
const maxRemovalField = 128

type removalHint struct {
	From string `json:"from"` // sender's node ID
	Addr string `json:"addr"` // sender's cluster address, where to ask
}

// removalNotice asks the agent to reset after a removal (see resetOnRemoval).
type removalNotice struct {
	cl *cluster
	by string // the witness's node ID
}

// removalVerdict is the server's half of the statement: the asker is removed
// when its certificate serial is revoked and no node record carries its ID.
// A serial revoked while a record exists (the node re-joined, or its
// certificate was replaced) is not a removal.
func removalVerdict(serialRevoked, recordExists bool) bool {
	return serialRevoked && !recordExists
}

// witness is what the asking node knows of the server that answered.
type witness struct {
	ID      string    // common name of the server's verified certificate
	Serial  string    // its serial
	Record  *api.Node // the asker's replica's record of ID; nil if none
	Revoked bool      // the serial is revoked in the asker's replica
	InRaft  bool      // ID is a server of the asker's last Raft configuration
}

// acceptableWitness reports whether a server may make statements about this
// node: another node, not revoked, that the asker's replica knows with the
// certificate it recorded, or — when the replica has no record of it (an
// empty replica after a restart) — that the asker's Raft configuration
// lists. A certificate merely signed by the CA is not enough.
func acceptableWitness(self string, w witness) error {
	switch {
	case w.ID == "" || w.ID == self:
		return fmt.Errorf("witness %q: not another node", w.ID)
	case w.Revoked:
		return fmt.Errorf("witness %s: certificate %s revoked", shortID(w.ID), w.Serial)
	case w.Record == nil && !w.InRaft:
		return fmt.Errorf("witness %s: neither in the replica nor in the raft configuration", shortID(w.ID))
	case w.Record != nil && w.Record.CertSerial != "" && w.Record.CertSerial != w.Serial:
		return fmt.Errorf("witness %s: certificate %s, the replica knows %s", shortID(w.ID), w.Serial, w.Record.CertSerial)
	}
	return nil
}

// isRemovalStatement is the asking node's decision: only a positive answer
// from an acceptable witness counts. A failed call, a refusal or "not
// removed" is the absence of a statement, never a reason to reset.
func isRemovalStatement(self string, w witness, answer *wire.RemovalResponse, callErr error) bool {
	return callErr == nil && answer != nil && answer.Removed && acceptableWitness(self, w) == nil
}

// removalSuspects lists the gossip members (sorted) that the replica does
// not know: each may be a removed node still running with its old state.
func removalSuspects(self string, alive map[string]memberMeta, known func(id string) bool) []string {
	var out []string
	for id := range alive {
		if id != self && !known(id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// removalTick is the removal loop's period: a second while it counts a
// leaderless stretch or has members to hint or hints to follow up, else
// removalIdleTick (gossip changes wake it at once either way).
func removalTick(leaderKnown bool, pending int) time.Duration {
	if !leaderKnown || pending > 0 {
		return time.Second
	}
	return removalIdleTick
}

// shouldAskRemoval decides whether the node asks now: after a hint, or after
// a long time without a leader; never twice within removalCheckGap, and
// without hints only every removalLeaderless.
func shouldAskRemoval(now, lastAsk, leaderlessSince time.Time, hinted bool) bool {
	if !lastAsk.IsZero() && now.Sub(lastAsk) < removalCheckGap {
		return false
	}
	if hinted {
		return true
	}
	if leaderlessSince.IsZero() || now.Sub(leaderlessSince) < removalLeaderless {
		return false
	}
	return lastAsk.IsZero() || now.Sub(lastAsk) >= removalLeaderless
}

// encodeRemovalHint and parseRemovalHint frame a hint as a user message.
func encodeRemovalHint(h removalHint) []byte {
	b, _ := json.Marshal(h)
	return append([]byte{removalHintType}, b...)
}

func parseRemovalHint(msg []byte) (removalHint, bool) {
	var h removalHint
	if len(msg) < 2 || msg[0] != removalHintType || json.Unmarshal(msg[1:], &h) != nil {
		return removalHint{}, false
	}
	if _, _, err := net.SplitHostPort(h.Addr); err != nil || len(h.From) > maxRemovalField {
		return removalHint{}, false
	}
	return h, true
}

// removalLoop hints unknown gossip members, and asks whether this node was
// removed when hinted or leaderless. On a positive statement it hands the
// reset to the agent (the reset stops this cluster, so it cannot run on one
// of the cluster's goroutines) and returns.
func (a *Agent) removalLoop(ctx context.Context, cl *cluster) {
	memberCh, stop := cl.members.Subscribe()
	defer stop()
	period := time.Second
	tick := time.NewTicker(period)
	defer tick.Stop()
	hinted := map[string]bool{} // cluster addresses that hinted
	lastHint := map[string]time.Time{}
	var lastAsk, leaderlessSince time.Time
	for {
		if p := removalTick(leaderlessSince.IsZero(), len(lastHint)+len(hinted)); p != period {
			period = p
			tick.Reset(p)
		}
		select {
		case <-ctx.Done():
			return
		case msg := <-cl.members.UserMessages():
			if h, ok := parseRemovalHint(msg); ok && h.From != a.id.NodeID {
				hinted[h.Addr] = true
			}
		case <-memberCh:
		case <-tick.C:
		}
		now := time.Now()
		a.sendRemovalHints(cl, lastHint, now)
		if id, _ := cl.raft.Leader(); id != "" {
			leaderlessSince = time.Time{}
		} else if leaderlessSince.IsZero() {
			leaderlessSince = now
		}
		if !shouldAskRemoval(now, lastAsk, leaderlessSince, len(hinted) > 0) {
			continue
		}
		lastAsk = now
		first := make([]string, 0, len(hinted))
		for addr := range hinted {
			first = append(first, addr)
		}
		clear(hinted)
		actx, cancel := context.WithTimeout(ctx, removalAskTimeout)
		by, removed := a.askRemoved(actx, cl, first)
		cancel()
		if removed {
			select {
			case a.removedCh <- removalNotice{cl: cl, by: by}:
			default:
			}
			return
		}
	}
}

// sendRemovalHints hints every suspect member at most every
// removalHintEvery; lastHint is the loop's memory of when. A node whose
// replica is not live (no leader, or no record of itself: just restarted,
// or removed itself) sends none, or it would suspect everybody.
func (a *Agent) sendRemovalHints(cl *cluster, lastHint map[string]time.Time, now time.Time) {
	var suspects []string
	leader, _ := cl.raft.Leader()
	if _, err := cl.store.Node(a.id.NodeID); err == nil && leader != "" {
		suspects = removalSuspects(a.id.NodeID, cl.members.AliveSet(), func(id string) bool {
			_, err := cl.store.Node(id)
			return err == nil
		})
	}
	for id := range lastHint {
		if !slices.Contains(suspects, id) {
			delete(lastHint, id)
		}
	}
	msg := encodeRemovalHint(removalHint{From: a.id.NodeID, Addr: a.cfg.clusterAddr()})
	for _, id := range suspects {
		if now.Sub(lastHint[id]) < removalHintEvery {
			continue
		}
		lastHint[id] = now
		if err := cl.members.SendBestEffort(id, msg); err != nil {
			a.log.Debug("removal hint", "to", shortID(id), "err", err)
		} else {
			a.log.Debug("gossip member unknown to the state: hinted it to ask whether it was removed", "member", shortID(id))
		}
	}
}

// askRemoved asks up to removalAskMax peers — the given addresses first,
// then nodes of the replica, then servers of the Raft configuration, each
// group in random order — whether this node was removed,
// all at once. It reports the first positive statement (isRemovalStatement)
// and the witness that made it; anything else is "not removed".
func (a *Agent) askRemoved(ctx context.Context, cl *cluster, first []string) (string, bool) {
	cert, pool, err := pki.LoadNodeTLS(filepath.Join(clusterDir(a.cfg.DataDir), "pki"))
	if err != nil || cert.Leaf == nil {
		a.log.Warn("removal check: load own certificate", "err", err)
		return "", false
	}
	req := wire.RemovalRequest{NodeID: a.id.NodeID, Serial: pki.Serial(cert.Leaf)}
	inRaft := map[string]bool{}
	var raftAddrs []string
	if servers, err := raftServers(cl); err == nil {
		for _, s := range servers {
			inRaft[s.ID] = true
			raftAddrs = append(raftAddrs, s.Addr)
		}
	}
	rand.Shuffle(len(raftAddrs), func(i, j int) { raftAddrs[i], raftAddrs[j] = raftAddrs[j], raftAddrs[i] })
	addrs := removalAskList(first, append(a.replicaClusterAddrs(cl), raftAddrs...), a.cfg.clusterAddr(), removalAskMax)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		by      string
		removed bool
	}
	results := make(chan result, len(addrs))
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w witness
			tlsCfg := pki.AnonymousClientTLS(pool, func(leaf *x509.Certificate) error {
				w = witness{ID: leaf.Subject.CommonName, Serial: pki.Serial(leaf)}
				if n, err := cl.store.Node(w.ID); err == nil {
					w.Record = n
				}
				w.Revoked = cl.store.IsRevoked(w.Serial)
				w.InRaft = inRaft[w.ID]
				return acceptableWitness(a.id.NodeID, w)
			})
			var resp wire.RemovalResponse
			err := callRPC(ctx, addr, tlsCfg, wire.MethodRemoval, req, &resp, nil)
			if err != nil {
				a.log.Debug("removal check", "peer", addr, "err", err)
			}
			results <- result{by: w.ID, removed: isRemovalStatement(a.id.NodeID, w, &resp, err)}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	for r := range results {
		if r.removed {
			return r.by, true
		}
	}
	return "", false
}

// raftServers returns cl's last Raft configuration (none for a cluster
// without Raft, as in tests).
func raftServers(cl *cluster) ([]consensus.Server, error) {
	if cl.raft == nil {
		return nil, nil
	}
	return cl.raft.Servers()
}

// removalAskList picks whom to ask: first (hint senders), then others, at
// most limit, without self or duplicates.
func removalAskList(first, others []string, self string, limit int) []string {
	out := dedupe(append(slices.Clone(first), others...), self)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// replicaClusterAddrs lists the cluster addresses of the other nodes of the
// replica, shuffled.
func (a *Agent) replicaClusterAddrs(cl *cluster) []string {
	var out []string
	for _, n := range cl.store.Nodes() {
		if n.ID == a.id.NodeID || n.Addr == "" || n.ClusterPort == 0 {
			continue
		}
		out = append(out, joinHostPort(n.Addr, n.ClusterPort))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// handleRemovalRPC answers "is node X with serial S removed?" from this
// node's replica. Callers need no certificate (see the top of this file).
func (a *Agent) handleRemovalRPC(req wire.RemovalRequest) (*wire.RemovalResponse, error) {
	if req.NodeID == "" || req.Serial == "" || len(req.NodeID) > maxRemovalField || len(req.Serial) > maxRemovalField {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "removal question needs a node ID and a certificate serial"}
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}
	}
	_, nerr := cl.store.Node(req.NodeID)
	return &wire.RemovalResponse{Removed: removalVerdict(cl.store.IsRevoked(req.Serial), nerr == nil)}, nil
}

// resetOnRemoval runs for the agent's lifetime and resets the node when a
// cluster's removalLoop reports a removal.
func (a *Agent) resetOnRemoval(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-a.removedCh:
			a.joinMu.Lock()
			if err := a.resetAfterRemovalLocked(n.cl, n.by); err != nil {
				a.log.Error("reset after removal", "err", err)
			}
			a.joinMu.Unlock()
		}
	}
}

// resetAfterRemovalLocked resets the node after cl's cluster removed it, if
// cl is still the node's cluster (a leave or re-join may have come first).
// The caller holds joinMu.
func (a *Agent) resetAfterRemovalLocked(cl *cluster, by string) error {
	if cur, err := a.clusterOrErr(); err != nil || cur != cl {
		return nil
	}
	a.log.Warn("this node was removed from its cluster (`node rm`): stopping its tasks and resetting to an uninitialised node",
		"cluster_id", cl.id, "told_by", shortID(by))
	// Not the agent's context: a reset that has begun finishes even while
	// the agent stops (the agent waits for it), or the next start repeats it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.dropCluster(ctx, true)
}

// removedDir is where a removed node's cluster state goes.
func removedDir(dataDir string) string { return clusterDir(dataDir) + ".removed" }

// dropCluster stops the cluster parts and removes what the node holds for
// the cluster: task containers (the cluster runs them elsewhere; one-off
// `shoal run` containers stay), the overlay, the load balancer rules, and
// finally DATA/cluster — deleted, or moved aside to DATA/cluster.removed
// when aside. The directory goes last so that a crash halfway leaves a node
// that still knows its cluster and does the rest at its next start.
func (a *Agent) dropCluster(ctx context.Context, aside bool) error {
	a.stopCluster()
	var tasks []string
	for _, c := range a.rt.List() {
		if c.TaskID != "" {
			tasks = append(tasks, c.ID)
		}
	}
	if len(tasks) > 0 {
		// The other nodes stop sending this node's task containers new
		// connections once they apply the node's removal; the node that
		// told us applied it first. Let the others catch up and the
		// connections they already sent here finish.
		select {
		case <-ctx.Done():
		case <-time.After(removalDrain):
		}
	}
	for _, id := range tasks {
		if err := a.rt.Remove(ctx, id, true); err != nil {
			a.log.Warn("remove task container after leaving the cluster", "container", shortID(id), "err", err)
		}
	}
	if ov := a.net.get(); ov != nil {
		a.net.set(nil)
		if err := ov.Teardown(); err != nil {
			a.log.Warn("remove the overlay after leaving the cluster", "err", err)
		}
	}
	if l, err := lb.New(lb.DefaultConfig()); err == nil {
		if err := l.Teardown(); err != nil {
			a.log.Warn("remove the load balancer rules after leaving the cluster", "err", err)
		}
	}
	dir := clusterDir(a.cfg.DataDir)
	if !aside {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove cluster state: %w", err)
		}
		return nil
	}
	old := removedDir(a.cfg.DataDir)
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove the state of an earlier removal: %w", err)
	}
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A join must never find the old Raft state: delete it instead.
		return errors.Join(fmt.Errorf("move cluster state aside: %w", err), os.RemoveAll(dir))
	}
	return nil
}
