package epoch

// What a running instance does with its epoch besides fencing: who may
// fence it (the voters of its Raft configuration), the probe of a gossip
// hint over the peer's cluster port, and the leader's record of the epoch
// in the cluster record.

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/pki"
)

// VoterOf is the Trust rule of an instance running r: id may fence it when
// id is a voter of r's latest configuration.
func VoterOf(r *raftnode.Raft) func(id string) bool {
	return func(id string) bool {
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
}

// Probe runs the raft epoch handshake with the cluster port at addr,
// dialled with d and client, and closes the connection: a newer epoch there
// fences f (if that node may), an equal one hands raft a connection that
// ends at once. It is the probe Fence.Watch checks gossip hints with.
func Probe(d clusterport.Dialer, addr string, client *tls.Config, f *Fence) error {
	c, err := d.Dial(addr, clusterport.DialTimeout, client, clusterport.ProtoRaft)
	if err != nil {
		return err
	}
	defer c.Close()
	peer := addr
	if id, ok := pki.ServerNodeID(c.ConnectionState()); ok {
		peer = id
	}
	return clusterport.DialEpoch(c, f, peer, clusterport.DialTimeout)
}

// RecordLoop writes want, this instance's epoch, into the cluster record
// when the record is behind (after --force-new-cluster), from the leader,
// so that the next recovery starts above it. It returns once the record
// has caught up or ctx ends.
func RecordLoop(ctx context.Context, store *consensus.Store, r *raftnode.Raft, want uint64, log *slog.Logger) {
	ch, cancel := store.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c := store.Cluster()
		if c != nil && c.Epoch >= want {
			return
		}
		if c != nil && r.IsLeader() {
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := r.Apply(wctx, &command.SetClusterEpoch{Epoch: want}); err != nil {
				log.Warn("record the cluster epoch", "epoch", want, "err", err)
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
