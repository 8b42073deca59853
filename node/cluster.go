package node

// The cluster half of an agent: everything that exists only once the node
// has run `init` or `join` — TLS identity, the cluster port, Raft and gossip,
// and the loops built on them. Its files live under DATA/cluster so that
// `leave` can drop them in one move.

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/leaderloop"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/profile"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// cluster holds the running cluster parts of an agent.
type cluster struct {
	id      string
	store   *consensus.Store
	raft    *raftnode.Raft
	members *membership.Membership
	mux     *mux
	client  *tls.Config // mutual TLS towards peers
	fence   *fence      // this instance's epoch (node/epoch; fence.go)
	// removing holds the IDs of nodes the leader is removing (node ID →
	// struct{}): between their removal from Raft and from the state, the
	// leader loop's re-admission must not take them back.
	removing sync.Map
	tls      *pki.Source // this node's certificate and trusted CAs, swapped on renewal (node/keyring)
	// keyTarget is the gossip key this leader is rotating to (revocation.go).
	keyTarget atomic.Pointer[[]byte]
	// usage holds the rolling usage of this node's autoscaled tasks
	// (autoscale.SampleLoop).
	usage autoscale.Sampler
	// resync is the clock of the loops' resyncs (node/resync).
	resync *resync.Clock
	// profile is the agent's failure-detection profile, resolved once.
	profile profile.Profile

	cancel context.CancelFunc
	// done closes when cancel has been called: the cluster is stopping.
	done <-chan struct{}
	wg   sync.WaitGroup
}

func clusterDir(dataDir string) string { return filepath.Join(dataDir, "cluster") }

func hasClusterState(dataDir string) bool {
	_, err := os.Stat(filepath.Join(clusterDir(dataDir), "cluster.json"))
	return err == nil
}

type startOpts struct {
	bootstrap *bootstrapInfo // set by init
	joinPeers []string       // gossip addresses handed over by join
	forceNew  bool           // --force-new-cluster, at agent start only
}

type bootstrapInfo struct {
	cluster consensus.ClusterState
	node    api.Node
}

// clusterOrErr returns the running cluster or ErrNoCluster.
func (a *Agent) clusterOrErr() (*cluster, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.cl == nil {
		return nil, ErrNoCluster
	}
	return a.cl, nil
}

// startCluster brings up TLS, the cluster port, Raft and gossip from the
// files under DATA/cluster.
func (a *Agent) startCluster(ctx context.Context, opts startOpts) (err error) {
	dir := clusterDir(a.cfg.DataDir)
	files, err := joining.ReadClusterFiles(dir)
	if err != nil {
		return err
	}
	peers := append(files.Peers, opts.joinPeers...)

	store := consensus.NewStore()
	revoked := func(serial string) bool {
		return store.IsRevoked(serial)
	}
	src := pki.NewSource(files.Cert, files.Pool)
	serverTLS := src.ServerTLS(revoked)
	clientTLS := src.CheckedClientTLS(revoked)

	prof, err := profile.ByName(a.cfg.GossipProfile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.BindIP(), strconv.Itoa(a.cfg.ClusterPort)))
	if err != nil {
		return fmt.Errorf("listen on cluster port: %w", err)
	}
	fc, recordedEpoch, err := epoch.Open(dir, opts.forceNew)
	if err != nil {
		ln.Close()
		return err
	}
	// The cluster's context, which its RPC handlers run on too: stopping
	// the cluster (leave, removal, a fenced node's re-join) waits for its
	// handlers, so they must end with it, not with the agent.
	cctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	m := newMux(ln, serverTLS, a.log.With("sub", "mux"), a.rpcServer(cctx), fc)
	layer := newRaftLayer(m, func() *tls.Config { return clientTLS }, fc)

	rc := raftnode.DefaultConfig()
	rc.Timing = prof.Raft
	rc.NodeID = a.id.NodeID
	rc.Addr = a.cfg.ClusterAddr()
	rc.DataDir = dir
	rc.StreamLayer = layer
	rc.Logger = a.log.With("sub", "raft")
	rc.ForceNewCluster = opts.forceNew
	r, err := raftnode.New(rc, store)
	if err != nil {
		m.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	m.SetRaftGate(raftGate(r))
	defer func() {
		if err != nil {
			_ = r.Shutdown()
			m.Close()
		}
	}()
	// Only a voter of this node's configuration may fence it.
	fc.Trust(epoch.VoterOf(r))
	if opts.forceNew {
		if err = epoch.SettleForced(dir, fc, recordedEpoch, store.Cluster()); err != nil {
			return err
		}
		a.log.Warn("forced a new cluster: this node is the only voter; nodes of the old configuration are fenced and re-join when they return",
			"epoch", fc.Local())
	}

	cl := &cluster{id: files.ClusterID, store: store, raft: r, mux: m, client: clientTLS, tls: src, fence: fc, cancel: cancel, done: cctx.Done(),
		resync: resync.New(cctx, resync.Period), profile: prof}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		if err := m.Run(cctx); err != nil {
			a.log.Error("cluster port stopped", "err", err)
		}
	}()

	if opts.bootstrap != nil {
		if err := r.BootstrapSelf(); err != nil {
			cancel()
			cl.wg.Wait()
			return fmt.Errorf("bootstrap raft: %w", err)
		}
	}

	mem, err := membership.New(membership.Config{
		Timing:        prof.Gossip,
		Name:          a.id.NodeID,
		BindAddr:      a.cfg.BindIP(),
		BindPort:      a.cfg.GossipPort,
		AdvertiseAddr: a.cfg.AdvertiseAddr,
		AdvertisePort: a.cfg.GossipPort,
		Keys:          files.Keys,
		Fence:         fc,
		Logger:        a.log,
	}, membership.Meta{NodeID: a.id.NodeID, ClusterPort: a.cfg.ClusterPort, Epoch: fc.Local(), Version: Version, Level: fsm.ProtocolLevel})
	if err != nil {
		cancel()
		cl.wg.Wait()
		return err
	}
	cl.members = mem
	a.log.Info("gossip started", "profile", cmp.Or(a.cfg.GossipProfile, profile.Default), "probe_interval", prof.Gossip.ProbeInterval,
		"probe_timeout", prof.Gossip.ProbeTimeout, "expected_detection_10", prof.Gossip.ExpectedDetection(10),
		"raft_heartbeat", prof.Raft.HeartbeatInterval, "raft_timeout", prof.Raft.HeartbeatTimeout)
	r.SetCommandGate(mem.CommandGate(r))

	a.mu.Lock()
	a.cl = cl
	a.mu.Unlock()

	if opts.bootstrap != nil {
		if err := joining.Bootstrap(cctx, cl.raft, opts.bootstrap.cluster, opts.bootstrap.node); err != nil {
			a.stopCluster()
			return err
		}
	}

	cl.wg.Add(9)
	go func() { defer cl.wg.Done(); a.lostLogRejoinLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.fenceLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); epoch.RecordLoop(cctx, store, r, fc.Local(), a.log) }()
	go func() { defer cl.wg.Done(); a.keeper(cl).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.newNetLoop(cl).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.removalLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.joinLoop(cl, peers).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.newLeaderLoop(cl).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.newReconciler(cl).Run(cctx) }()
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); a.usageLoop(cctx, cl) }()
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); a.revocationLoop(cl).Run(cctx) }()
	return nil
}

// newLeaderLoop is what this node runs while it leads cl (node/leaderloop).
func (a *Agent) newLeaderLoop(cl *cluster) *leaderloop.Loop {
	return leaderloop.New(leaderloop.Config{
		NodeID: a.id.NodeID, Store: cl.store, Raft: cl.raft, Members: cl.members, Log: a.log, Metrics: a.obs.m(),
		RestartGrace: a.cfg.RestartGrace, DeadVoterGrace: a.cfg.DeadVoterGrace, HeardWindow: cl.profile.HeardWindow(),
		Removing: func(id string) bool {
			_, busy := cl.removing.Load(id)
			return busy
		},
		RotateGossipKeys: func(ctx context.Context) { a.rotateGossipKeys(ctx, cl) },
		LocalUsage:       cl.usage.Report,
		Usage: func(ctx context.Context, addr string) (autoscale.Report, error) {
			var rep autoscale.Report
			err := callRPC(ctx, addr, cl.client, wire.MethodUsage, nil, &rep, nil)
			return rep, err
		},
	})
}

// joinLoop is cl's gossip join and reconnect loop (membership.JoinLoop).
func (a *Agent) joinLoop(cl *cluster, peers []string) *membership.JoinLoop {
	return &membership.JoinLoop{
		Members: cl.members, Self: a.id.NodeID, SelfAddr: a.selfGossipAddr(), Peers: peers, Replica: cl.store,
		PeersFile: filepath.Join(clusterDir(a.cfg.DataDir), "peers.json"), Resync: cl.resync, Log: a.log,
	}
}

// writer is the write path of cl (node/writes). It holds no state, so it
// is made per call: a cluster built without one (tests) has one too.
func (a *Agent) writer(cl *cluster) *writes.Writer {
	return writes.New(writes.Config{
		NodeID: a.id.NodeID, ClusterID: cl.id, Store: cl.store, Raft: cl.raft, Members: cl.members,
		Log: a.log, WriteTimeout: a.cfg.WriteTimeout,
		Call: func(ctx context.Context, addr, method string, body, out any) error {
			return callRPC(ctx, addr, cl.client, method, body, out, nil)
		},
		Dial: rpcDialer(cl.client),
		KEK:  a.kekFor,
		RotateToken: func(ctx context.Context) error {
			_, err := a.keeper(cl).RotateSecret(ctx)
			return err
		},
	})
}

// stopCluster shuts the cluster parts down (agent stop or leave). A leader
// hands leadership over first, and gossip announces the departure, so peers
// wait for neither an election timeout nor failure detection.
func (a *Agent) stopCluster() {
	a.mu.Lock()
	cl := a.cl
	a.cl = nil
	a.mu.Unlock()
	if cl == nil {
		return
	}
	if cl.raft.IsLeader() {
		// Hand leadership over so the survivors need not wait for an
		// election timeout.
		if servers, err := cl.raft.Servers(); err == nil && countVoters(servers) > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := cl.raft.TransferLeadership(ctx); err != nil {
				a.log.Debug("leadership transfer on stop", "err", err)
			}
			cancel()
		}
	}
	if cl.members != nil {
		// Containers outlive the agent: ask the leader to wait for it.
		cl.members.AnnounceRestart(a.id.NodeID, 500*time.Millisecond)
		cl.members.Leave(500 * time.Millisecond)
	}
	cl.cancel()
	cl.mux.Close()
	if err := cl.raft.Shutdown(); err != nil {
		a.log.Warn("raft shutdown", "err", err)
	}
	if cl.members != nil {
		cl.members.Shutdown()
	}
	cl.wg.Wait()
}

func (a *Agent) selfGossipAddr() string {
	return net.JoinHostPort(a.cfg.AdvertiseAddr, strconv.Itoa(a.cfg.GossipPort))
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func countVoters(servers []raftnode.Server) int {
	n := 0
	for _, s := range servers {
		if s.Voter {
			n++
		}
	}
	return n
}
