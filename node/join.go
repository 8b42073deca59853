package node

// Init, join and leave as the agent runs them. How a node gets into a
// cluster (a new one's keys and record included) and the leader's
// admission live in node/joining, and the leader's side is built from the
// running instance (node/instance, node/rpcserver); here are the parts that
// need the whole agent: init (the start of the cluster half, the
// bootstrap), the token, join (joining's Joiner over the agent), and leave
// (the removal question, the hand-over, the drop of the cluster state).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
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
		return api.InitResponse{}, fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.ID)
	}
	now := time.Now().UTC()
	in := joining.Init{
		ClusterID: identity.NewID(), Self: a.joinSelf(), Dir: instance.Dir(a.cfg.DataDir), CertLifetime: a.cfg.CertLifetime,
		ClusterCIDR: a.cfg.ClusterCIDR, VIPCIDR: a.cfg.VIPCIDR,
	}
	if cidr, vip := snapshotPools(seed); cidr != "" && vip != "" {
		in.ClusterCIDR, in.VIPCIDR = cidr, vip
	}
	record, node, err := joining.NewCluster(in, now)
	if err != nil {
		return api.InitResponse{}, err
	}
	b := &instance.Bootstrap{Cluster: record, Node: node}
	if err := a.startCluster(a.ctx, instance.Options{Bootstrap: b}); err != nil {
		_ = removeClusterState(a.cfg.DataDir)
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
	if err := cl.Writer().SyncReplica(ctx); err != nil {
		return api.InitResponse{}, fmt.Errorf("read the join token: %w", err)
	}
	c := cl.Store.Cluster()
	if c == nil {
		return api.InitResponse{}, errors.New("the cluster record is not replicated to this node yet")
	}
	fp, err := pki.FingerprintPEM(c.CACertPEM)
	if err != nil {
		return api.InitResponse{}, err
	}
	secret, err := cl.Keeper().CurrentSecret(ctx, c)
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
	if err := cl.Writer().LocalWriteAllowed(); err != nil {
		return api.InitResponse{}, err
	}
	if err := cl.Keeper().RotateSecretOnLeader(ctx); err != nil {
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
		return fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.ID)
	}
	j := &joining.Joiner{
		Self:    a.joinSelf(),
		DataDir: a.cfg.DataDir,
		Key:     a.joinKey,
		Call:    instance.JoinCall,
		Start:   func(peers []string) error { return a.startCluster(a.ctx, instance.Options{JoinPeers: peers}) },
		Store: func() (*consensus.Store, error) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return nil, err
			}
			return cl.Store, nil
		},
		Log: a.log,
	}
	return j.Join(ctx, req)
}

// leave takes this node out of its cluster: the leader hands a voter's vote
// to another node first, then removes it; this node then drops its cluster
// state. The only member of a cluster leaves only with force: its state is
// the cluster's only copy, and a bare `shoal leave` (as a user types it to
// move a node between clusters) would erase every service without a word.
func (a *Agent) leave(ctx context.Context, force bool) error {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	// Unknown is not alone: a node that read no configuration (raft
	// shutting down, a failed read) would drop its state while the
	// cluster keeps it as a member.
	servers, err := cl.Raft.Servers()
	if err != nil {
		return fmt.Errorf("leave: read the raft configuration: %w", err)
	}
	alone := len(servers) <= 1
	if alone && !force {
		return ErrLastMember
	}
	if !alone {
		// A removed node needs no cluster to leave it (node/revocation).
		actx, cancel := context.WithTimeout(ctx, revocation.AskTimeout)
		by, removed := cl.AskRemoved(actx, nil)
		cancel()
		if removed {
			return a.resetAfterRemovalLocked(cl, by)
		}
		if cl.Raft.IsLeader() {
			if err := cl.Raft.TransferLeadership(ctx); err != nil {
				return fmt.Errorf("hand leadership over before leaving: %w", err)
			}
		}
		a.drainBeforeLeave(ctx, cl)
		err := cl.Forward(ctx, func(ctx context.Context, addr string) error {
			err := instance.Call(ctx, addr, cl.Client, wire.MethodAdmin, wire.AdminRequest{Op: "leave", NodeID: a.id.NodeID}, nil, nil)
			var re *wire.Error
			if err == nil || errors.As(err, &re) {
				return err
			}
			// The leader closes a removed node's connections once the
			// removal is applied (node/revocation), which may be before this
			// node read the answer to its own leave; every retry is then
			// refused for the revoked certificate. The removal question
			// (no certificate needed) tells whether the leave went through.
			actx, cancel := context.WithTimeout(ctx, revocation.AskTimeout)
			defer cancel()
			if by, removed := cl.AskRemoved(actx, []string{addr}); removed {
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

// drainBeforeLeave has the leader drain this node and waits until its
// at-most-once tasks have stopped and the cluster knows it, when it runs
// any: removed with them, their slots would stay empty for their disconnect
// grace plus stop grace (joining.Leader.DrainSelf says why). Best effort:
// a leader that predates the drain-self op, or tasks that do not stop
// within their stop grace plus joining.LeaveDrainSlack, leave the wait to
// the removal, as before; the node stays drained if the leave then fails.
func (a *Agent) drainBeforeLeave(ctx context.Context, cl *instance.Instance) {
	self := a.id.NodeID
	active := func() (int, time.Duration) {
		return joining.AtMostOnceActive(cl.Store.TasksByNode(self), self, servicespec.DefaultStopGracePeriod)
	}
	n, grace := active()
	if n == 0 {
		return
	}
	err := cl.Forward(ctx, func(ctx context.Context, addr string) error {
		return instance.Call(ctx, addr, cl.Client, wire.MethodAdmin, wire.AdminRequest{Op: "drain-self", NodeID: self}, nil, nil)
	})
	if err != nil {
		a.log.Warn("leave: could not drain this node first; its at-most-once tasks are replaced only after their grace", "tasks", n, "err", err)
		return
	}
	a.log.Info("leave: drained this node; waiting for its at-most-once tasks to stop", "tasks", n)
	wctx, cancel := context.WithTimeout(ctx, grace+joining.LeaveDrainSlack)
	defer cancel()
	changed, unsubscribe := cl.Store.Subscribe()
	defer unsubscribe()
	for {
		if n, _ = active(); n == 0 {
			return
		}
		select {
		case <-changed:
		case <-wctx.Done():
			a.log.Warn("leave: at-most-once tasks still not stopped; leaving anyway, their slots wait for their grace", "tasks", n)
			return
		}
	}
}
