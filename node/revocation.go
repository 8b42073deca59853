package node

// The agent's side of `node rm` on a removed node: the reset once a peer
// states the removal (node/revocation's removal question, asked by the
// cluster instance's removal loop, node/instance), which needs the whole
// agent (its runtime, overlay and cluster half).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/node/reconciler"
)

// removalNotice asks the agent to reset after a removal (see resetOnRemoval).
type removalNotice struct {
	cl *instance.Instance
	by string // the witness's node ID
}

// resetOnRemoval runs for the agent's lifetime and resets the node when a
// cluster's removal loop reports a removal (instance.Host.Removed).
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
func (a *Agent) resetAfterRemovalLocked(cl *instance.Instance, by string) error {
	if cur, err := a.clusterOrErr(); err != nil || cur != cl {
		return nil
	}
	a.log.Warn("this node was removed from its cluster (`node rm`): stopping its tasks and resetting to an uninitialised node",
		"cluster_id", cl.ID, "told_by", api.ShortID(by))
	// Not the agent's context: a reset that has begun finishes even while
	// the agent stops (the agent waits for it), or the next start repeats it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.dropCluster(ctx, true)
}

// removedDir is where a removed node's cluster state goes.
func removedDir(dataDir string) string { return instance.Dir(dataDir) + ".removed" }

// dropCluster stops the cluster parts and removes what the node holds for
// the cluster: task containers (the cluster runs them elsewhere; one-off
// `shoal run` containers stay), the overlay, the load balancer rules, and
// finally DATA/cluster — deleted, or moved aside to DATA/cluster.removed
// when aside. The directory goes last so that a crash halfway leaves a node
// that still knows its cluster and does the rest at its next start.
func (a *Agent) dropCluster(ctx context.Context, aside bool) error {
	// Read before the cluster stops: which containers run at-most-once
	// tasks, removed without the drain (RemoveTasks).
	var atOnce map[string]bool
	if cl, err := a.clusterOrErr(); err == nil {
		specs := map[string]api.ServiceSpec{}
		for _, s := range cl.Store.Services() {
			specs[s.ID] = s.Spec
		}
		atOnce = reconciler.AtMostOnceTasks(cl.Store.TasksByNode(a.id.NodeID), specs)
	}
	a.stopCluster()
	// The other nodes keep their path to this one a little longer than
	// the drain (netplan.DepartedKeep).
	reconciler.RemoveTasks(ctx, a.rt, netplan.RemovalDrain, atOnce, a.log)
	netloop.Teardown(&a.net.Attacher, a.log)
	if !aside {
		return removeClusterState(a.cfg.DataDir)
	}
	dir := instance.Dir(a.cfg.DataDir)
	old := removedDir(a.cfg.DataDir)
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove the state of an earlier removal: %w", err)
	}
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A join must never find the old Raft state: delete it instead.
		return errors.Join(fmt.Errorf("move cluster state aside: %w", err), removeClusterState(a.cfg.DataDir))
	}
	return nil
}

// droppedDir is where DATA/cluster goes to be deleted (removeClusterState).
func droppedDir(dataDir string) string { return instance.Dir(dataDir) + ".dropped" }

// removeAll is os.RemoveAll; tests make it fail halfway.
var removeAll = os.RemoveAll

// removeClusterState deletes DATA/cluster in a way that a crash or an
// error halfway (kill -9, power loss, an I/O error) never leaves a part of
// it in place: deleted file by file, a directory that lost its
// certificates but kept cluster.json would stop every later start of the
// agent ("load node certificate"), and one that lost cluster.json but kept
// raft/ would hand the old cluster's Raft log to the next join. The
// directory is renamed to DATA/cluster.dropped first (one atomic step),
// then deleted; the next start deletes what an interrupted deletion left
// (sweepDropped).
func removeClusterState(dataDir string) error {
	dir, dropped := instance.Dir(dataDir), droppedDir(dataDir)
	if err := removeAll(dropped); err != nil {
		return fmt.Errorf("remove the cluster state an earlier leave left: %w", err)
	}
	if err := os.Rename(dir, dropped); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cluster state: %w", err)
	}
	if err := removeAll(dropped); err != nil {
		return fmt.Errorf("remove cluster state (moved to %s; the next start deletes it): %w", dropped, err)
	}
	return nil
}

// sweepDropped deletes what an interrupted removeClusterState left.
func sweepDropped(dataDir string) error {
	if err := removeAll(droppedDir(dataDir)); err != nil {
		return fmt.Errorf("remove the cluster state a leave left: %w", err)
	}
	return nil
}
