package node

// The agent's side of fencing after --force-new-cluster: the re-join of a
// fenced instance at the newer epoch, which stops and starts the agent's
// cluster half. The epoch itself, its file, the fence, who may fence (the
// voters), the probe of a gossip hint and the leader's record of the epoch
// are node/epoch (the why is at the top of node/epoch/fence.go and in
// consensus/epoch.go); the instance's watch that hands a fenced instance
// over (instance.Host.Fenced) is node/instance's.

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/instance"
)

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
func (a *Agent) rejoinFenced(ctx context.Context, cl *instance.Instance) {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	a.mu.RLock()
	current := a.cl
	a.mu.RUnlock()
	if current != cl || ctx.Err() != nil {
		return
	}
	newer, _ := cl.Fence.Newest()
	a.stopCluster()
	dir := instance.Dir(a.cfg.DataDir)
	for {
		err := a.restartAtEpoch(ctx, dir, cl.Fence.Local(), newer)
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
	return a.startCluster(ctx, instance.Options{})
}
