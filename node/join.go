package node

// Init, join and leave as the agent runs them. How a node gets into a
// cluster (a new one's keys and record included) and the leader's
// admission live in node/joining; here are the parts that need the whole
// agent: init (the start of the cluster half, the bootstrap), the token,
// leave (the removal question, the hand-over, the drop of the cluster
// state), forwarding to the leader, and the wiring of joining's Joiner and
// Leader from the running cluster.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// initCluster bootstraps a new cluster with this node as its only voter.
// seed is the snapshot file of `init --from-snapshot` (nil otherwise): the
// new cluster keeps its address pools; the caller then restores it
// (snapshot.go).
func (a *Agent) initCluster(ctx context.Context, seed *snapshotfile.File) (api.InitResponse, error) {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	if cl, err := a.clusterOrErr(); err == nil {
		return api.InitResponse{}, fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	now := time.Now().UTC()
	in := joining.Init{
		ClusterID: identity.NewID(), Self: a.joinSelf(), Dir: clusterDir(a.cfg.DataDir), CertLifetime: a.cfg.CertLifetime,
		ClusterCIDR: a.cfg.ClusterCIDR, VIPCIDR: a.cfg.VIPCIDR,
	}
	if cidr, vip := snapshotPools(seed); cidr != "" && vip != "" {
		in.ClusterCIDR, in.VIPCIDR = cidr, vip
	}
	record, node, err := joining.NewCluster(in, now)
	if err != nil {
		return api.InitResponse{}, err
	}
	b := &bootstrapInfo{cluster: record, node: node}
	if err := a.startCluster(a.ctx, startOpts{bootstrap: b}); err != nil {
		_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
		return api.InitResponse{}, err
	}
	a.log.Info("cluster initialised", "cluster_id", in.ClusterID)
	return a.tokenResponse(ctx)
}

// tokenResponse builds the join command from the replicated cluster record.
func (a *Agent) tokenResponse(ctx context.Context) (api.InitResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitResponse{}, err
	}
	// A token read from a replica behind a rotation (or a CA rotation) made
	// through another node would be refused at once: read the record as of
	// now.
	if err := a.syncReplica(ctx, cl); err != nil {
		return api.InitResponse{}, fmt.Errorf("read the join token: %w", err)
	}
	c := cl.store.Cluster()
	if c == nil {
		return api.InitResponse{}, errors.New("the cluster record is not replicated to this node yet")
	}
	fp, err := pki.FingerprintPEM(c.CACertPEM)
	if err != nil {
		return api.InitResponse{}, err
	}
	secret, err := a.keeper(cl).CurrentSecret(ctx, c)
	if err != nil {
		return api.InitResponse{}, err
	}
	tok := pki.FormatToken(fp, secret)
	return api.InitResponse{
		ClusterID:   c.ClusterID,
		NodeID:      a.id.NodeID,
		Token:       tok,
		JoinCommand: fmt.Sprintf("shoal join --token %s %s", tok, a.cfg.ClusterAddr()),
	}, nil
}

// rotateToken replaces the join secret; the old token stops working at once.
func (a *Agent) rotateToken(ctx context.Context) (api.InitResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitResponse{}, err
	}
	if err := a.localWriteAllowed(cl); err != nil {
		return api.InitResponse{}, err
	}
	if err := a.keeper(cl).RotateSecretOnLeader(ctx); err != nil {
		return api.InitResponse{}, err
	}
	return a.tokenResponse(ctx)
}

// joinSelf is this node as a join describes it.
func (a *Agent) joinSelf() joining.Self {
	return joining.Self{
		NodeID: a.id.NodeID, Hostname: a.id.Hostname, Addr: a.cfg.AdvertiseAddr,
		ClusterPort: a.cfg.ClusterPort, GossipPort: a.cfg.GossipPort,
	}
}

// joinCluster is `shoal join` on this node (joining.Joiner).
func (a *Agent) joinCluster(ctx context.Context, req api.JoinRequest) error {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	if cl, err := a.clusterOrErr(); err == nil {
		return fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	j := &joining.Joiner{
		Self:    a.joinSelf(),
		DataDir: a.cfg.DataDir,
		Key:     a.joinKey,
		Call: func(ctx context.Context, addr string, cfg *tls.Config, method string, body, out any) error {
			return callRPC(ctx, addr, cfg, method, body, out, nil)
		},
		Start: func(peers []string) error { return a.startCluster(a.ctx, startOpts{joinPeers: peers}) },
		Store: func() (*consensus.Store, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.store, nil
		},
		Log: a.log,
	}
	return j.Join(ctx, req)
}

// leader is the leader's side of membership on cl (joining.Leader). The
// caller has checked that this node leads.
func (a *Agent) leader(cl *cluster) *joining.Leader {
	return &joining.Leader{
		Self:         a.id.NodeID,
		GossipAddr:   a.selfGossipAddr(),
		Store:        cl.store,
		Raft:         cl.raft,
		Alive:        func(id string) bool { return a.isAlive(cl, id) },
		Peers:        cl.members.PeerAddrs,
		CA:           a.clusterCA,
		AdmitID:      a.keeper(cl).AdmitID,
		CertLifetime: a.cfg.CertLifetime,
		Epoch:        cl.fence.Local(),
		Removing:     &cl.removing,
		ApplyRemoval: func(ctx context.Context, rm *fsm.RemoveNode) error { return a.applyRemoval(ctx, cl, rm) },
		Log:          a.log,
	}
}

// handleJoinRPC admits a node. Any node may receive it; it is forwarded to
// the leader, which admits it (joining.Leader.Admit).
func (a *Agent) handleJoinRPC(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}
	}
	if !cl.raft.IsLeader() {
		var resp wire.JoinResponse
		err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			return callRPC(ctx, addr, cl.client, wire.MethodJoin, req, &resp, nil)
		})
		if err != nil {
			return nil, err
		}
		return &resp, nil
	}
	return a.leader(cl).Admit(ctx, req)
}

func (a *Agent) isAlive(cl *cluster, id string) bool {
	if id == a.id.NodeID {
		return true
	}
	_, ok := cl.members.AliveSet()[id]
	return ok
}

// forwardToLeader runs call against the current leader, retrying across
// leader changes until the write timeout (writes.Writer.Forward).
func (a *Agent) forwardToLeader(ctx context.Context, cl *cluster, call func(ctx context.Context, addr string) error) error {
	return a.writer(cl).Forward(ctx, call)
}

// leave takes this node out of its cluster: the leader hands a voter's vote
// to another node first, then removes it; this node then drops its cluster
// state.
func (a *Agent) leave(ctx context.Context) error {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	servers, _ := cl.raft.Servers()
	alone := len(servers) <= 1
	if !alone {
		// A removed node needs no cluster to leave it (node/revocation).
		actx, cancel := context.WithTimeout(ctx, removalAskTimeout)
		by, removed := a.askRemoved(actx, cl, nil)
		cancel()
		if removed {
			return a.resetAfterRemovalLocked(cl, by)
		}
		if cl.raft.IsLeader() {
			if err := cl.raft.TransferLeadership(ctx); err != nil {
				return fmt.Errorf("hand leadership over before leaving: %w", err)
			}
		}
		err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			err := callRPC(ctx, addr, cl.client, wire.MethodAdmin, wire.AdminRequest{Op: "leave", NodeID: a.id.NodeID}, nil, nil)
			var re *wire.Error
			if err == nil || errors.As(err, &re) {
				return err
			}
			// The leader closes a removed node's connections once the
			// removal is applied (node/revocation), which may be before this
			// node read the answer to its own leave; every retry is then
			// refused for the revoked certificate. The removal question
			// (no certificate needed) tells whether the leave went through.
			actx, cancel := context.WithTimeout(ctx, removalAskTimeout)
			defer cancel()
			if by, removed := a.askRemoved(actx, cl, []string{addr}); removed {
				a.log.Info("leave: the answer was lost, but the cluster says this node is out", "err", err, "told_by", api.ShortID(by))
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("leave: %w", err)
		}
	}
	// The cluster rescheduled this node's tasks elsewhere; their containers
	// here go with the rest of the cluster state.
	if err := a.dropCluster(ctx, false); err != nil {
		return err
	}
	a.log.Info("left the cluster")
	return nil
}

// handleAdminRPC runs membership operations that only the leader may do
// (joining.Leader.Admin).
func (a *Agent) handleAdminRPC(ctx context.Context, peerID string, req wire.AdminRequest) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.raft.IsLeader() {
		return ErrNotLeader
	}
	return a.leader(cl).Admin(ctx, peerID, req)
}

// removeNodeAsLeader is `node rm` on the leader (joining.Leader.Remove).
func (a *Agent) removeNodeAsLeader(ctx context.Context, cl *cluster, id string, force bool) error {
	return a.leader(cl).Remove(ctx, id, force)
}

// lostLogRejoinLoop asks the leader to make this node a non-voter while its
// rejoin after a lost raft log is pending (joining.RejoinAfterLostLog).
func (a *Agent) lostLogRejoinLoop(ctx context.Context, cl *cluster) {
	ask := func(ctx context.Context) error {
		return a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			return callRPC(ctx, addr, cl.client, wire.MethodRejoin, struct{}{}, nil, nil)
		})
	}
	joining.RejoinAfterLostLog(ctx, cl.raft, ask, a.log)
}

// handleRejoinRPC runs on the leader for a node that lost its raft log
// (joining.Leader.Rejoin).
func (a *Agent) handleRejoinRPC(ctx context.Context, peerID string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.raft.IsLeader() {
		return ErrNotLeader
	}
	return a.leader(cl).Rejoin(ctx, peerID)
}
