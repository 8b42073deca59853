package node

// Fencing after --force-new-cluster (the why is in consensus/epoch.go).
//
// Every cluster instance of an agent runs at one epoch, read from
// DATA/cluster/epoch.json at start (0 when absent) and raised there by
// --force-new-cluster before raft rewrites its configuration. The epoch is
// fixed for the life of the instance: it only changes by starting the
// cluster half again. It travels
//
//   - in gossip metadata: a member of another epoch is not alive for this
//     node (no admission, no voter, no backends, marked down by the leader);
//   - on every raft connection: right after the protocol byte the dialer
//     writes its epoch (8 bytes, big endian) and the acceptor answers with
//     its own; either side closes the connection unless they are equal.
//     So a returning voter of the old configuration never reaches the
//     recovered node's raft: no RequestVote with a higher term, no
//     AppendEntries from a leader of the old configuration.
//
// A node that meets a newer epoch on a raft connection (the peer's answer,
// or its dial) from a voter of its own configuration is fenced: its raft
// history lost against the recovered cluster's. Only a voter can fence:
// the survivor that ran --force-new-cluster was one, and a node's
// certificate must not let it wipe its peers' state. A newer epoch in
// gossip (which any key holder can forge) is only a hint: the node then
// dials that peer's cluster port, where mutual TLS names the peer.
//
// A fenced node stops its cluster half, moves DATA/cluster/raft aside,
// records the newer epoch and starts again with no raft state but its
// identity (node ID, certificate, gossip key): the recovered leader
// re-admits it as a non-voter (admitMissing) and autopilot may promote it.
// Its replica is rebuilt from the leader, and its reconciler then stops the
// containers of tasks that were rescheduled while it was away.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/pki"
)

// epochFile holds this node's epoch, beside (not inside) the raft directory
// that fencing moves aside.
const epochFile = "epoch.json"

type epochRecord struct {
	Epoch uint64 `json:"epoch"`
}

// readEpoch returns the epoch recorded in dir, 0 when there is none.
func readEpoch(dir string) (uint64, error) {
	var rec epochRecord
	err := readJSONFile(filepath.Join(dir, epochFile), &rec)
	switch {
	case err == nil:
		return rec.Epoch, nil
	case errors.Is(err, os.ErrNotExist):
		return 0, nil
	default:
		return 0, fmt.Errorf("read cluster epoch: %w", err)
	}
}

func writeEpoch(dir string, epoch uint64) error {
	if err := writeJSONFile(filepath.Join(dir, epochFile), epochRecord{Epoch: epoch}); err != nil {
		return fmt.Errorf("write cluster epoch %d: %w", epoch, err)
	}
	return nil
}

// fence is one cluster instance's epoch and what it learnt of newer ones.
// A nil *fence is epoch 0 and never fenced (tests that build a mux alone).
// All methods are safe for concurrent use and never block.
type fence struct {
	// epoch is fixed once the instance runs; startCluster may still raise
	// it between raft's recovery and the first connection.
	epoch atomic.Uint64

	once  sync.Once
	ch    chan struct{} // closed when a trusted newer epoch is first seen
	hints chan string   // cluster addresses of peers gossiping a newer epoch

	mu       sync.Mutex
	mayFence func(peerID string) bool // nil: anyone may (tests)
	newer    uint64                   // the newest trusted epoch seen, from whom
	from     string
}

func newFence(epoch uint64) *fence {
	f := &fence{ch: make(chan struct{}), hints: make(chan string, 1)}
	f.epoch.Store(epoch)
	return f
}

// trust sets who may fence this node (the voters of its configuration).
func (f *fence) trust(mayFence func(peerID string) bool) {
	f.mu.Lock()
	f.mayFence = mayFence
	f.mu.Unlock()
}

// local is this instance's epoch.
func (f *fence) local() uint64 {
	if f == nil {
		return 0
	}
	return f.epoch.Load()
}

// check judges the epoch a peer presented on a mutually authenticated raft
// connection. A newer one from a peer this node trusts marks it fenced.
func (f *fence) check(peer string, remote uint64) consensus.EpochVerdict {
	v := consensus.CompareEpochs(f.local(), remote)
	if v != consensus.EpochSelfStale || f == nil {
		return v
	}
	f.mu.Lock()
	trusted := f.mayFence == nil || f.mayFence(peer)
	if trusted && remote > f.newer {
		f.newer, f.from = remote, peer
	}
	f.mu.Unlock()
	if trusted {
		f.once.Do(func() { close(f.ch) })
	}
	return v
}

// Local and Hint make the fence the one node/membership asks about the
// epoch in each member's metadata (membership.Fence); Local and Check make
// it the one the cluster port's Raft handshake presents and judges
// (clusterport.Fence).
func (f *fence) Local() uint64           { return f.local() }
func (f *fence) Hint(clusterAddr string) { f.hint(clusterAddr) }
func (f *fence) Check(peer string, remote uint64) consensus.EpochVerdict {
	return f.check(peer, remote)
}

// hint records that a peer gossips a newer epoch; the fence loop checks it
// over the peer's cluster port. The latest hint wins; it never blocks.
func (f *fence) hint(clusterAddr string) {
	if f == nil {
		return
	}
	select {
	case f.hints <- clusterAddr:
	default:
		select { // replace the pending hint with this one
		case <-f.hints:
		default:
		}
		select {
		case f.hints <- clusterAddr:
		default:
		}
	}
}

// fenced is closed once a trusted peer with a newer epoch was seen (nil on
// a nil fence: never).
func (f *fence) fenced() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.ch
}

// newest returns the newest trusted epoch seen and the peer that showed it.
func (f *fence) newest() (uint64, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newer, f.from
}

// isVoterOf reports whether id is a voter of r's latest configuration.
func isVoterOf(r *consensus.Raft, id string) bool {
	servers, err := r.Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s.ID == id {
			return s.Voter
		}
	}
	return false
}

// fenceLoop waits until this cluster instance is fenced and hands it to
// fencedRejoinLoop (re-joining stops this instance, whose wait group this loop
// belongs to). Gossip hints are checked on the peer's cluster port, at most
// one every probeInterval.
func (a *Agent) fenceLoop(ctx context.Context, cl *cluster) {
	var lastProbe time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-cl.fence.fenced():
			epoch, from := cl.fence.newest()
			a.log.Warn("fenced: a voter runs a newer cluster epoch (a --force-new-cluster happened without this node); "+
				"dropping this node's raft state to re-join the recovered cluster",
				"epoch", cl.fence.local(), "newer_epoch", epoch, "seen_from", from)
			select {
			case a.fenced <- cl:
			case <-ctx.Done():
			}
			return
		case addr := <-cl.fence.hints:
			if wait := probeInterval - time.Since(lastProbe); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			lastProbe = time.Now()
			if err := probeEpoch(addr, cl.client, cl.fence); err != nil && !errors.Is(err, clusterport.ErrEpochMismatch) {
				a.log.Debug("epoch probe", "addr", addr, "err", err)
			}
		}
	}
}

// probeInterval spaces the checks of gossip hints.
const probeInterval = time.Second

// probeEpoch runs the raft epoch handshake with the cluster port at addr
// and closes the connection: a newer epoch there fences this node (if that
// node may), an equal one hands raft a connection that ends at once.
func probeEpoch(addr string, client *tls.Config, f *fence) error {
	c, err := dialProto(addr, dialTimeout, client, clusterport.ProtoRaft)
	if err != nil {
		return err
	}
	defer c.Close()
	peer := addr
	if id, ok := pki.ServerNodeID(c.ConnectionState()); ok {
		peer = id
	}
	return clusterport.DialEpoch(c, f, peer, dialTimeout)
}

// fencedRejoinLoop re-joins fenced cluster instances, one at a time, until ctx
// ends. The agent runs it for its whole life.
func (a *Agent) fencedRejoinLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cl := <-a.fenced:
			a.rejoinFenced(ctx, cl)
		}
	}
}

// rejoinFenced restarts the cluster half of a fenced node at the newer
// epoch with no raft state. It gives up only when ctx ends or the cluster
// instance is no longer cl (a leave in the meantime).
func (a *Agent) rejoinFenced(ctx context.Context, cl *cluster) {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	a.mu.RLock()
	current := a.cl
	a.mu.RUnlock()
	if current != cl || ctx.Err() != nil {
		return
	}
	epoch, _ := cl.fence.newest()
	a.stopCluster()
	dir := clusterDir(a.cfg.DataDir)
	for {
		err := a.restartAtEpoch(ctx, dir, cl.fence.local(), epoch)
		if err == nil {
			break
		}
		a.log.Error("re-join after fencing failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	if ctx.Err() != nil {
		// The agent is stopping; its own stop may have run before this
		// instance existed.
		a.stopCluster()
		return
	}
	a.log.Info("restarted the cluster half after fencing; waiting for the leader to admit this node", "epoch", epoch)
}

// restartAtEpoch moves the raft state aside (once), records epoch and
// starts the cluster half from the files left in dir.
func (a *Agent) restartAtEpoch(ctx context.Context, dir string, old, epoch uint64) error {
	if err := moveRaftAside(dir, old, time.Now()); err != nil {
		return err
	}
	if err := writeEpoch(dir, epoch); err != nil {
		return err
	}
	return a.startCluster(ctx, startOpts{})
}

// moveRaftAside renames DATA/cluster/raft to raft.fenced-epochN-TIME so the
// node starts without raft state but an operator keeps the old history. A
// missing raft directory is fine (moved already).
func moveRaftAside(dir string, epoch uint64, now time.Time) error {
	src := filepath.Join(dir, "raft")
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dst := filepath.Join(dir, fmt.Sprintf("raft.fenced-epoch%d-%s", epoch, now.UTC().Format("20060102T150405.000000000")))
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("move stale raft state aside: %w", err)
	}
	return nil
}

// recordEpochLoop writes this instance's epoch into the cluster record when
// it is behind (after --force-new-cluster), from the leader, so that the
// next recovery starts above it. It ends once the record has caught up.
func (a *Agent) recordEpochLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	want := cl.fence.local()
	for {
		c := cl.store.Cluster()
		if c != nil && c.Epoch >= want {
			return
		}
		if c != nil && cl.raft.IsLeader() {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := cl.raft.Apply(wctx, &consensus.SetClusterEpoch{Epoch: want}); err != nil {
				a.log.Warn("record the cluster epoch", "epoch", want, "err", err)
			}
			wcancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

// openEpoch returns this instance's fence and the epoch recorded before it
// started. With forceNew the recorded epoch is raised at once, before raft
// rewrites its configuration: from then on this node never exchanges raft
// traffic with the configuration it abandons, even after a crash.
func openEpoch(dir string, forceNew bool) (*fence, uint64, error) {
	recorded, err := readEpoch(dir)
	if err != nil {
		return nil, 0, err
	}
	epoch := recorded
	if forceNew {
		epoch = consensus.NextEpoch(recorded, 0)
		if err := writeEpoch(dir, epoch); err != nil {
			return nil, 0, err
		}
	}
	return newFence(epoch), recorded, nil
}

// settleForcedEpoch raises a forced instance's epoch above the one of the
// recovered state too (the local file may be behind it). It runs after raft
// restored the state and before the cluster port accepts connections.
func settleForcedEpoch(dir string, f *fence, recorded uint64, state *consensus.ClusterState) error {
	var inState uint64
	if state != nil {
		inState = state.Epoch
	}
	epoch := consensus.NextEpoch(recorded, inState)
	if epoch == f.local() {
		return nil
	}
	if err := writeEpoch(dir, epoch); err != nil {
		return err
	}
	f.epoch.Store(epoch)
	return nil
}
