// Package instance is the cluster half of an agent: everything that exists
// only once the node has run `init` or `join` — TLS identity, the cluster
// port, Raft and gossip, and the loops built on them — from its start to
// its stop. Its files live under DATA/cluster (Dir) so that `leave` can drop
// them in one move.
//
// An agent runs at most one instance at a time and makes a new one for
// every init, join and re-join after fencing; what outlives instances (the
// runtime, the image store, the API socket) is the agent's and comes in
// through Host. Where the agent's code read "the cluster the agent runs
// now" (its writes, the RPC handlers), the instance asks Host.Current too,
// so a stopping instance says ErrNoCluster exactly when the agent did.
package instance

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/shoal-org/shoal/node/runattach"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/agentconfig"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/profile"
	"github.com/shoal-org/shoal/node/reconciler"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// The runtime holds the supervisor's at-most-once lease; the reconciler
// finds it by an interface assertion, which this keeps from silently
// failing after a change of either side's signature.
var _ reconciler.Fencer = (*runtime.Runtime)(nil)

// Host is the agent as its cluster instances see it: what outlives them,
// and the agent's own answers. The funcs are called from the instance's
// goroutines and must not block unless they say so.
type Host struct {
	NodeID  string
	Config  agentconfig.Config
	Log     *slog.Logger
	Metrics *metrics.Set
	// Runtime, Images and Network live as long as the agent; Runtime and
	// Images are nil in tests that need neither.
	Runtime *runtime.Runtime
	Images  *image.Store
	Network *netloop.Attacher
	// Version is the release gossip advertises (node.Version).
	Version string

	// Current is the instance the agent runs now, or the agent's
	// ErrNoCluster.
	Current func() (*Instance, error)
	// Methods answers the cluster port's RPC methods (node/rpcserver); each
	// handler runs on the instance's context.
	Methods clusterport.Methods
	// Write commits cmd through the leader of the current instance (the
	// loops' status sink).
	Write func(ctx context.Context, cmd command.Command) error
	// AnnounceImage records in the cluster that this node holds img (best
	// effort).
	AnnounceImage func(ctx context.Context, img api.Image, source string)
	// Fenced hands over an instance a newer epoch fenced; it blocks until
	// the agent takes it or ctx ends.
	Fenced func(ctx context.Context, cl *Instance)
	// Removed tells the agent a peer stated that this node was removed
	// (by names the witness); it must not block.
	Removed func(cl *Instance, by string)
}

// Instance holds the running parts of one cluster instance. Make one with
// Open and Start; tests may build one with the parts they need.
type Instance struct {
	Host Host
	// ID is the cluster's ID.
	ID      string
	Store   *consensus.Store
	Raft    *raftnode.Raft
	Members *membership.Membership
	// Client is the mutual TLS towards peers.
	Client *tls.Config
	// Fence is this instance's epoch (node/epoch).
	Fence *epoch.Fence
	// ReplayIndex is the store index of the last command of this node's
	// own Raft log when the instance opened (raftnode.Raft.ReplayEnd): the
	// store replays up to it after a restart, and what it replays is
	// history, not news (node/events' loop).
	ReplayIndex uint64

	mux *Mux
	tls *pki.Source // this node's certificate and trusted CAs, swapped on renewal (node/keyring)
	// removing holds the IDs of nodes the leader is removing (node ID →
	// struct{}): between their removal from Raft and from the state, the
	// leader loop's re-admission must not take them back.
	removing sync.Map
	// runAttach records this node's run containers on networks
	// (RunAttachments).
	runAttachOnce sync.Once
	runAttach     *runattach.Recorder
	// keyTarget is the gossip key this leader is rotating to
	// (revocation.Rotator).
	keyTarget atomic.Pointer[[]byte]
	// usage holds the rolling usage of this node's autoscaled tasks
	// (autoscale.SampleLoop).
	usage autoscale.Sampler
	// resync is the clock of the loops' resyncs (node/resync).
	resync *resync.Clock
	// profile is the agent's failure-detection profile, resolved once.
	profile profile.Profile
	// peers are the gossip addresses the join loop starts from.
	peers     []string
	bootstrap *Bootstrap

	// ctx is the instance's context, which its RPC handlers run on too:
	// stopping the instance (leave, removal, a fenced node's re-join) waits
	// for its handlers, so they must end with it, not with the agent.
	ctx    context.Context
	cancel context.CancelFunc
	// done closes when cancel has been called: the instance is stopping.
	done <-chan struct{}
	wg   sync.WaitGroup
}

// Options are what the agent knows of an instance before it opens it.
type Options struct {
	Bootstrap *Bootstrap // set by init
	JoinPeers []string   // gossip addresses handed over by join
	ForceNew  bool       // --force-new-cluster, at agent start only
}

// Bootstrap is what init proposes once the new single-voter Raft has
// elected this node.
type Bootstrap struct {
	Cluster consensus.ClusterState
	Node    api.Node
}

// Dir is where the cluster state of the agent with data dir dataDir lives.
func Dir(dataDir string) string { return filepath.Join(dataDir, "cluster") }

// HasState reports whether dataDir holds a cluster to start.
func HasState(dataDir string) bool {
	_, err := os.Stat(filepath.Join(Dir(dataDir), "cluster.json"))
	return err == nil
}

// Done closes when the instance is stopping.
func (cl *Instance) Done() <-chan struct{} { return cl.done }

// dir is this instance's DATA/cluster.
func (cl *Instance) dir() string { return Dir(cl.Host.Config.DataDir) }

// Open brings up TLS, the cluster port, Raft and gossip from the files
// under Dir. The agent makes the instance current, then calls Start; an
// instance that fails to Start is stopped by the agent.
func Open(ctx context.Context, h Host, opts Options) (_ *Instance, err error) {
	dir := Dir(h.Config.DataDir)
	files, err := joining.ReadClusterFiles(dir)
	if err != nil {
		return nil, err
	}
	peers := append(files.Peers, opts.JoinPeers...)

	store := consensus.NewStore()
	revoked := func(serial string) bool {
		return store.IsRevoked(serial)
	}
	src := pki.NewSource(files.Cert, files.Pool)
	serverTLS := src.ServerTLS(revoked)
	clientTLS := src.CheckedClientTLS(revoked)

	prof, err := profile.ByName(h.Config.GossipProfile)
	if err != nil {
		return nil, err
	}
	// The agent's periodic loops tick on raft's heartbeat beats (resync),
	// on the cluster's grid under fast.
	if prof.SharedOrigin {
		resync.ShareOrigin()
	}
	resync.SetBeat(prof.Raft.HeartbeatInterval)
	ln, err := net.Listen("tcp", net.JoinHostPort(h.Config.BindIP(), strconv.Itoa(h.Config.ClusterPort)))
	if err != nil {
		return nil, fmt.Errorf("listen on cluster port: %w", err)
	}
	fc, recordedEpoch, err := epoch.Open(dir, opts.ForceNew)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	m := NewMux(ln, serverTLS, h.Log.With("sub", "mux"), func(conn *tls.Conn) { clusterport.Serve(cctx, conn, h.Methods) }, fc)
	layer := NewRaftLayer(m, func() *tls.Config { return clientTLS }, fc)

	rc := raftnode.DefaultConfig()
	rc.Timing = prof.Raft
	rc.BeatOrigin = resync.Origin() // heartbeats on the agent's phase
	rc.NodeID = h.NodeID
	rc.Addr = h.Config.ClusterAddr()
	rc.DataDir = dir
	rc.StreamLayer = layer
	rc.Logger = h.Log.With("sub", "raft")
	rc.ForceNewCluster = opts.ForceNew
	r, err := raftnode.New(rc, store)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	joinFloor := revocation.ReadIndexFile(filepath.Join(dir, revocation.JoinIndexFile))
	m.SetRaftGate(RaftGate(r, func() bool { return !revocation.ReplicaCurrent(store.Index(), joinFloor) }))
	defer func() {
		if err != nil {
			_ = r.Shutdown()
			m.Close()
		}
	}()
	// Only a voter of this node's configuration may fence it.
	fc.Trust(epoch.VoterOf(r))
	if opts.ForceNew {
		if err = epoch.SettleForced(dir, fc, recordedEpoch, store.Cluster()); err != nil {
			return nil, err
		}
		h.Log.Warn("forced a new cluster: this node is the only voter; nodes of the old configuration are fenced and re-join when they return",
			"epoch", fc.Local())
	}

	cl := &Instance{Host: h, ID: files.ClusterID, Store: store, Raft: r, ReplayIndex: r.ReplayEnd(), mux: m, Client: clientTLS, tls: src, Fence: fc,
		ctx: cctx, cancel: cancel, done: cctx.Done(), resync: resync.New(cctx, resync.Period), profile: prof, peers: peers, bootstrap: opts.Bootstrap}
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		if err := m.Run(cctx); err != nil {
			h.Log.Error("cluster port stopped", "err", err)
		}
	}()

	if opts.Bootstrap != nil {
		if err := r.BootstrapSelf(); err != nil {
			cancel()
			cl.wg.Wait()
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}

	mem, err := membership.New(membership.Config{
		Timing:        prof.Gossip,
		Name:          h.NodeID,
		BindAddr:      h.Config.BindIP(),
		BindPort:      h.Config.GossipPort,
		AdvertiseAddr: h.Config.AdvertiseAddr,
		AdvertisePort: h.Config.GossipPort,
		Keys:          files.Keys,
		Fence:         fc,
		Logger:        h.Log,
		UntilBeat:     untilGossipBeat(prof),
	}, membership.Meta{NodeID: h.NodeID, ClusterPort: h.Config.ClusterPort, Epoch: fc.Local(), Version: h.Version, Level: command.ProtocolLevel})
	if err != nil {
		cancel()
		cl.wg.Wait()
		return nil, err
	}
	cl.Members = mem
	h.Log.Info("gossip started", "profile", cmp.Or(h.Config.GossipProfile, profile.Default), "probe_interval", prof.Gossip.ProbeInterval,
		"probe_timeout", prof.Gossip.ProbeTimeout, "expected_detection_10", prof.Gossip.ExpectedDetection(10),
		"raft_heartbeat", prof.Raft.HeartbeatInterval, "raft_timeout", prof.Raft.HeartbeatTimeout,
		"raft_silence", prof.SilenceWindow(), "leader_silence", prof.Raft.LeaderSilence)
	r.SetCommandGate(mem.CommandGate(r))
	r.SetAdmitCheck(joining.StillAdmitted(store, cl.isRemoving))
	return cl, nil
}

// Start proposes init's bootstrap record, if the instance was opened with
// one, and starts the instance's loops (loops.go).
func (cl *Instance) Start() error {
	if b := cl.bootstrap; b != nil {
		if err := joining.Bootstrap(cl.ctx, cl.Raft, b.Cluster, b.Node); err != nil {
			return err
		}
	}
	cl.startLoops(cl.ctx)
	return nil
}

// Stop shuts the instance down (agent stop, leave, removal, re-join after
// fencing); the agent has made it no longer current. A leader hands
// leadership over first, and gossip announces the departure, so peers wait
// for neither an election timeout nor failure detection. It returns once
// every goroutine of the instance has ended.
func (cl *Instance) Stop() {
	log := cl.Host.Log
	if cl.Raft.IsLeader() {
		// Hand leadership over so the survivors need not wait for an
		// election timeout.
		if servers, err := cl.Raft.Servers(); err == nil && countVoters(servers) > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := cl.Raft.TransferLeadership(ctx); err != nil {
				log.Debug("leadership transfer on stop", "err", err)
			}
			cancel()
		}
	}
	if cl.Members != nil {
		// Containers outlive the agent: ask the leader to wait for it.
		cl.Members.AnnounceRestart(cl.Host.NodeID, 500*time.Millisecond)
		cl.Members.Leave(500 * time.Millisecond)
	}
	cl.cancel()
	cl.mux.Close()
	if err := cl.Raft.Shutdown(); err != nil {
		log.Warn("raft shutdown", "err", err)
	}
	if cl.Members != nil {
		cl.Members.Shutdown()
	}
	cl.wg.Wait()
}

func (cl *Instance) selfGossipAddr() string {
	return net.JoinHostPort(cl.Host.Config.AdvertiseAddr, strconv.Itoa(cl.Host.Config.GossipPort))
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

// untilGossipBeat is membership's wait for the next beat when gossip's
// intervals are whole beats (profile.GossipOnBeats), nil otherwise.
func untilGossipBeat(p profile.Profile) func(time.Time) time.Duration {
	if !p.GossipOnBeats() {
		return nil
	}
	return resync.UntilBeat
}

// isRemoving reports whether the leader is removing node id (removing).
func (cl *Instance) isRemoving(id string) bool {
	_, busy := cl.removing.Load(id)
	return busy
}
