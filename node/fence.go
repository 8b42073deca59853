package node

// The agent's side of fencing after --force-new-cluster: who may fence this
// node (the voters of its configuration), the probe of a gossip hint on the
// peer's cluster port, and the re-join of a fenced instance at the newer
// epoch. The epoch itself, its file and the fence are node/epoch (the why
// is at the top of node/epoch/fence.go and in consensus/epoch.go).

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/pki"
)

// fence is this cluster instance's epoch and what it learnt of newer ones
// (node/epoch).
type fence = epoch.Fence

// isVoterOf reports whether id is a voter of r's latest configuration.
func isVoterOf(r *raftnode.Raft, id string) bool {
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
// belongs to). Gossip hints are checked on the peer's cluster port
// (epoch.Fence.Watch).
func (a *Agent) fenceLoop(ctx context.Context, cl *cluster) {
	probe := func(addr string) error { return probeEpoch(addr, cl.client, cl.fence) }
	if !cl.fence.Watch(ctx, probe, a.log) {
		return
	}
	newer, from := cl.fence.Newest()
	a.log.Warn("fenced: a voter runs a newer cluster epoch (a --force-new-cluster happened without this node); "+
		"dropping this node's raft state to re-join the recovered cluster",
		"epoch", cl.fence.Local(), "newer_epoch", newer, "seen_from", from)
	select {
	case a.fenced <- cl:
	case <-ctx.Done():
	}
}

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
	newer, _ := cl.fence.Newest()
	a.stopCluster()
	dir := clusterDir(a.cfg.DataDir)
	for {
		err := a.restartAtEpoch(ctx, dir, cl.fence.Local(), newer)
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
	a.log.Info("restarted the cluster half after fencing; waiting for the leader to admit this node", "epoch", newer)
}

// restartAtEpoch moves the raft state aside (once), records newer and
// starts the cluster half from the files left in dir.
func (a *Agent) restartAtEpoch(ctx context.Context, dir string, old, newer uint64) error {
	if err := epoch.MoveRaftAside(dir, old, time.Now()); err != nil {
		return err
	}
	if err := epoch.Write(dir, newer); err != nil {
		return err
	}
	return a.startCluster(ctx, startOpts{})
}

// recordEpochLoop writes this instance's epoch into the cluster record when
// it is behind (after --force-new-cluster), from the leader, so that the
// next recovery starts above it. It ends once the record has caught up.
func (a *Agent) recordEpochLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	want := cl.fence.Local()
	for {
		c := cl.store.Cluster()
		if c != nil && c.Epoch >= want {
			return
		}
		if c != nil && cl.raft.IsLeader() {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := cl.raft.Apply(wctx, &fsm.SetClusterEpoch{Epoch: want}); err != nil {
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
