package joining

// Rejoin after a lost raft log. raftnode.New moves an unreadable raft log
// aside and starts this node on an empty log with its vote withheld (see
// consensus/logstore/rejoin.go for why a node that lost its log must not
// vote). The leader keeps sending heartbeats to every member of the
// configuration, so this node soon knows the leader; it then asks it, over
// the cluster port with its own certificate, to make it a non-voter
// (Leader.Rejoin). Once that is committed the vote is harmless again, raft
// installs the leader's snapshot here, and autopilot promotes the node
// back when it is healthy. The node keeps its ID, certificate and data dir
// throughout.

import (
	"context"
	"log/slog"
	"time"
)

// LostLog is the part of raftnode.Raft a node that lost its log uses.
type LostLog interface {
	RejoinPending() bool
	IsLeader() bool
	RejoinDone() error
}

// rejoinRetry is how long a pending rejoin waits between asks.
const rejoinRetry = 2 * time.Second

// RejoinAfterLostLog runs while r's rejoin is pending: it asks the leader
// (ask: the rejoin RPC through the agent's forwarding) to demote this node
// to a non-voter until that succeeds or ctx ends, then gives the node its
// vote back. It returns at once when no rejoin is pending.
func RejoinAfterLostLog(ctx context.Context, r LostLog, ask func(ctx context.Context) error, log *slog.Logger) {
	if !r.RejoinPending() {
		return
	}
	log.Error("this node's raft log was unreadable and has been moved aside; " +
		"it rejoins from the leader's snapshot as a non-voter, keeping its node ID and certificate")
	for {
		var err error
		if r.IsLeader() {
			// Won an election after taking a leader's snapshot: a majority
			// found its log up to date, so there is nothing to fence.
			err = nil
		} else {
			err = ask(ctx)
		}
		if err == nil {
			if err := r.RejoinDone(); err != nil {
				log.Error("rejoin: the leader made this node a non-voter, but the rejoin marker could not be removed", "err", err)
			} else {
				log.Info("rejoin: the leader made this node a non-voter; it votes again once autopilot promotes it")
			}
			return
		}
		log.Warn("rejoin: cannot reach the raft leader yet; this node withholds its vote meanwhile", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(rejoinRetry):
		}
	}
}
