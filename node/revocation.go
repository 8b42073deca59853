package node

// The agent's side of node/revocation: the trackers of cluster-port
// connections the port and the dialler report to, the loops built from the
// cluster's parts (cluster.go starts them), the leader's half of a removal
// (the removal and the first gossip key step in one entry, then the
// rotation's next steps from the leader loop), the removal question's
// server side, and the reset of a node that learns it was removed, which
// needs the whole agent (its runtime, overlay and cluster).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/reconciler"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
)

// dialedConns tracks every connection this process dialled to a cluster
// port (dialProto); serials are random 128-bit numbers, so agents sharing a
// process (unit tests) do not close each other's connections.
var dialedConns = revocation.NewTracker()

// revocationLoop is cl's revocation.Loop: it closes the connections of
// revoked peers and applies the replica's gossip keyring.
func (a *Agent) revocationLoop(cl *cluster) *revocation.Loop {
	l := &revocation.Loop{
		Store:    cl.store,
		Trackers: []*revocation.Tracker{dialedConns},
		Dir:      clusterDir(a.cfg.DataDir),
		Log:      a.log,
	}
	if cl.mux != nil {
		l.Trackers = append(l.Trackers, cl.mux.conns)
	}
	if cl.members != nil {
		l.Gossip = cl.members
	}
	return l
}

// ---- leader side ----

// rotator is cl's revocation.Rotator: the leader's side of `node rm`.
func (a *Agent) rotator(cl *cluster) *revocation.Rotator {
	r := &revocation.Rotator{Self: a.id.NodeID, Store: cl.store, Raft: cl.raft, Target: &cl.keyTarget, Log: a.log}
	if cl.members != nil {
		r.Gossip = cl.members
	}
	return r
}

// applyRemoval commits rm with the first step of a gossip key rotation
// (revocation.Rotator.Remove).
func (a *Agent) applyRemoval(ctx context.Context, cl *cluster, rm *fsm.RemoveNode) error {
	return a.rotator(cl).Remove(ctx, rm)
}

// rotateGossipKeys takes the next step of a gossip key rotation, if one is
// due (revocation.Rotator.Step). Leader loop only.
func (a *Agent) rotateGossipKeys(ctx context.Context, cl *cluster) { a.rotator(cl).Step(ctx) }

// ---- the removal question ----

// removalAskTimeout bounds one round of removal questions.
const removalAskTimeout = revocation.AskTimeout

// removalDrain is how long a node that left or was removed keeps its
// task containers after leaving gossip and Raft (see dropCluster).
const removalDrain = 2 * time.Second

// removalNotice asks the agent to reset after a removal (see resetOnRemoval).
type removalNotice struct {
	cl *cluster
	by string // the witness's node ID
}

// removal is cl's revocation.Removal: the removed node's side.
func (a *Agent) removal(cl *cluster) *revocation.Removal {
	r := &revocation.Removal{
		Self:        a.id.NodeID,
		ClusterAddr: a.cfg.ClusterAddr(),
		PKIDir:      pkiDir(a.cfg.DataDir),
		Store:       cl.store,
		Call: func(ctx context.Context, addr string, cfg *tls.Config, method string, body, out any) error {
			return callRPC(ctx, addr, cfg, method, body, out, nil)
		},
		Log: a.log,
	}
	if cl.raft != nil {
		r.Raft = cl.raft
	}
	if cl.members != nil {
		r.Gossip = cl.members
	}
	return r
}

// removalLoop runs cl's removal loop; on a positive statement it hands the
// reset to resetOnRemoval (the reset stops this cluster, so it cannot run
// on one of the cluster's goroutines).
func (a *Agent) removalLoop(ctx context.Context, cl *cluster) {
	a.removal(cl).Run(ctx, func(by string) {
		select {
		case a.removedCh <- removalNotice{cl: cl, by: by}:
		default:
		}
	})
}

// askRemoved asks peers whether this node was removed
// (revocation.Removal.Ask).
func (a *Agent) askRemoved(ctx context.Context, cl *cluster, first []string) (string, bool) {
	return a.removal(cl).Ask(ctx, first)
}

// handleRemovalRPC answers "is node X with serial S removed?" from this
// node's replica (revocation.Answer). Callers need no certificate.
func (a *Agent) handleRemovalRPC(req wire.RemovalRequest) (*wire.RemovalResponse, error) {
	if err := revocation.CheckQuestion(req); err != nil {
		return nil, err
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}
	}
	return revocation.Answer(cl.store, req)
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
		"cluster_id", cl.id, "told_by", api.ShortID(by))
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
	reconciler.RemoveTasks(ctx, a.rt, removalDrain, a.log)
	netloop.Teardown(&a.net.Attacher, a.log)
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
