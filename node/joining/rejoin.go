package node

// Rejoin after a lost raft log. consensus.New moves an unreadable raft log
// aside and starts this node on an empty log with its vote withheld (see
// consensus/logstore_rejoin.go for why a node that lost its log must not
// vote). The leader keeps sending heartbeats to every member of the
// configuration, so this node soon knows the leader; it then asks it, over
// the cluster port with its own certificate, to make it a non-voter. Once
// that is committed the vote is harmless again, raft installs the leader's
// snapshot here, and autopilot promotes the node back when it is healthy.
// The node keeps its ID, certificate and data dir throughout.

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/node/wire"
)

// lostLogRejoinLoop runs while this node's rejoin is pending: it asks the leader to
// demote it to a non-voter until that succeeds or ctx ends, then gives the
// node its vote back.
func (a *Agent) lostLogRejoinLoop(ctx context.Context, cl *cluster) {
	if !cl.raft.RejoinPending() {
		return
	}
	a.log.Error("this node's raft log was unreadable and has been moved aside; " +
		"it rejoins from the leader's snapshot as a non-voter, keeping its node ID and certificate")
	for {
		var err error
		if cl.raft.IsLeader() {
			// Won an election after taking a leader's snapshot: a majority
			// found its log up to date, so there is nothing to fence.
			err = nil
		} else {
			err = a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
				return callRPC(ctx, addr, cl.client, wire.MethodRejoin, struct{}{}, nil, nil)
			})
		}
		if err == nil {
			if err := cl.raft.RejoinDone(); err != nil {
				a.log.Error("rejoin: the leader made this node a non-voter, but the rejoin marker could not be removed", "err", err)
			} else {
				a.log.Info("rejoin: the leader made this node a non-voter; it votes again once autopilot promotes it")
			}
			return
		}
		a.log.Warn("rejoin: cannot reach the raft leader yet; this node withholds its vote meanwhile", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// handleRejoinRPC runs on the leader for a node that lost its raft log: it
// makes that node (the caller, by its certificate) a non-voter, promoting a
// healthy non-voter first when there is one so the number of voters holds.
// It is idempotent.
func (a *Agent) handleRejoinRPC(ctx context.Context, peerID string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.raft.IsLeader() {
		return ErrNotLeader
	}
	if peerID == a.id.NodeID {
		return &wire.Error{Code: wire.CodeRefused, Msg: "the leader does not rejoin itself"}
	}
	n, err := cl.store.Node(peerID)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("rejoin: node %s: %v", shortID(peerID), err)}
	}
	servers, err := cl.raft.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID != peerID {
			continue
		}
		if s.Voter {
			a.promoteReplacement(ctx, cl, peerID)
			if err := cl.raft.DemoteVoter(ctx, peerID); err != nil {
				return fmt.Errorf("rejoin: demote %s: %w", shortID(peerID), err)
			}
			a.log.Warn("node lost its raft log: demoted to non-voter until it has the leader's snapshot",
				"node_id", peerID, "hostname", n.Hostname)
		}
		return nil
	}
	if err := cl.raft.AddNonvoter(ctx, peerID, joinHostPort(n.Addr, n.ClusterPort)); err != nil {
		return fmt.Errorf("rejoin: add %s as non-voter: %w", shortID(peerID), err)
	}
	a.log.Warn("node lost its raft log: re-added as non-voter", "node_id", peerID, "hostname", n.Hostname)
	return nil
}
