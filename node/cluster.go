package node

// The cluster half of an agent: everything that exists only once the node
// has run `init` or `join` — TLS identity, the cluster port, Raft and gossip,
// and the loops built on them. Its files live under DATA/cluster so that
// `leave` can drop them in one move.

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/leaderloop"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// memberMeta is what a node gossips about itself (node/membership); the
// short name keeps the pure functions that read the alive set readable.
type memberMeta = membership.Meta

type clusterFile struct {
	ClusterID string `json:"cluster_id"`
}

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
	profile Profile

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
	var cf clusterFile
	if err := readJSONFile(filepath.Join(dir, "cluster.json"), &cf); err != nil {
		return fmt.Errorf("read cluster state: %w", err)
	}
	cert, pool, err := pki.LoadNodeTLS(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("load node certificate: %w", err)
	}
	var keys [][]byte
	if err := readJSONFile(filepath.Join(dir, "keyring.json"), &keys); err != nil {
		return fmt.Errorf("read gossip keyring: %w", err)
	}
	var peers []string
	_ = readJSONFile(filepath.Join(dir, "peers.json"), &peers)
	peers = append(peers, opts.joinPeers...)

	store := consensus.NewStore()
	revoked := func(serial string) bool {
		return store.IsRevoked(serial)
	}
	src := pki.NewSource(cert, pool)
	serverTLS := src.ServerTLS(revoked)
	clientTLS := src.CheckedClientTLS(revoked)

	prof, err := ProfileByName(a.cfg.GossipProfile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.bindIP(), strconv.Itoa(a.cfg.ClusterPort)))
	if err != nil {
		return fmt.Errorf("listen on cluster port: %w", err)
	}
	fc, recordedEpoch, err := epoch.Open(dir, opts.forceNew)
	if err != nil {
		ln.Close()
		return err
	}
	m := newMux(ln, serverTLS, a.log.With("sub", "mux"), a.serveRPC, fc)
	layer := newRaftLayer(m, func() *tls.Config { return clientTLS }, fc)

	rc := raftnode.DefaultConfig()
	rc.Timing = prof.Raft
	rc.NodeID = a.id.NodeID
	rc.Addr = a.cfg.clusterAddr()
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
	fc.Trust(func(id string) bool { return isVoterOf(r, id) })
	if opts.forceNew {
		if err = epoch.SettleForced(dir, fc, recordedEpoch, store.Cluster()); err != nil {
			return err
		}
		a.log.Warn("forced a new cluster: this node is the only voter; nodes of the old configuration are fenced and re-join when they return",
			"epoch", fc.Local())
	}

	cctx, cancel := context.WithCancel(ctx)
	cl := &cluster{id: cf.ClusterID, store: store, raft: r, mux: m, client: clientTLS, tls: src, fence: fc, cancel: cancel, done: cctx.Done(),
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
		BindAddr:      a.cfg.bindIP(),
		BindPort:      a.cfg.GossipPort,
		AdvertiseAddr: a.cfg.AdvertiseAddr,
		AdvertisePort: a.cfg.GossipPort,
		Keys:          keys,
		Fence:         fc,
		Logger:        a.log,
	}, membership.Meta{NodeID: a.id.NodeID, ClusterPort: a.cfg.ClusterPort, Epoch: fc.Local(), Version: Version, Level: fsm.ProtocolLevel})
	if err != nil {
		cancel()
		cl.wg.Wait()
		return err
	}
	cl.members = mem
	a.log.Info("gossip started", "profile", cmp.Or(a.cfg.GossipProfile, DefaultProfile), "probe_interval", prof.Gossip.ProbeInterval,
		"probe_timeout", prof.Gossip.ProbeTimeout, "expected_detection_10", prof.Gossip.ExpectedDetection(10),
		"raft_heartbeat", prof.Raft.HeartbeatInterval, "raft_timeout", prof.Raft.HeartbeatTimeout)
	r.SetCommandGate(commandGate(r, mem))

	a.mu.Lock()
	a.cl = cl
	a.mu.Unlock()

	if opts.bootstrap != nil {
		if err := a.writeBootstrap(cctx, cl, opts.bootstrap); err != nil {
			a.stopCluster()
			return err
		}
	}

	cl.wg.Add(9)
	go func() { defer cl.wg.Done(); a.lostLogRejoinLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.fenceLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.recordEpochLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.keeper(cl).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.newNetLoop(cl).Run(cctx) }()
	go func() { defer cl.wg.Done(); a.removalLoop(cctx, cl) }()
	go func() { defer cl.wg.Done(); a.gossipJoinLoop(cctx, cl, peers) }()
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
			_, err := a.rotateSecretAsLeader(ctx, cl)
			return err
		},
	})
}

// writeBootstrap waits for the single-voter cluster to elect this node and
// writes the cluster record and the first node.
func (a *Agent) writeBootstrap(ctx context.Context, cl *cluster, b *bootstrapInfo) error {
	deadline := time.Now().Add(15 * time.Second)
	for !cl.raft.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("bootstrap: this node did not become raft leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := cl.raft.Apply(wctx, &fsm.BootstrapCluster{Cluster: b.cluster, Node: b.node})
	if err != nil {
		return fmt.Errorf("bootstrap: write cluster record: %w", err)
	}
	return nil
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

// gossipJoinLoop joins gossip through the known peers, retrying until at
// least one answers; then, as Serf's reconnect does, it keeps knocking on
// nodes of the state that gossip considers gone, so both sides of a healed
// partition (or a node that was declared dead while it was only slow) find
// each other again — one knock per round at most (membership.ReconnectPick).
// It also keeps peers.json fresh so a restarted node finds its way back.
func (a *Agent) gossipJoinLoop(ctx context.Context, cl *cluster, peers []string) {
	joined := len(peers) == 0
	// Retries are quick until gossip is joined; afterwards the loop runs
	// on the agent's resync clock (reconnectInterval).
	tick := time.NewTicker(500 * time.Millisecond)
	ticks, stopTicks := tick.C, tick.Stop
	defer func() { stopTicks() }()
	slow := false
	var lastSave, lastReconnect time.Time
	var saved []string // what peers.json holds, sorted
	for {
		if !joined {
			cand := append([]string{}, peers...)
			cand = append(cand, a.gossipAddrsFromState(cl, nil)...)
			if n, err := cl.members.Join(membership.Dedupe(cand, a.selfGossipAddr())); n > 0 {
				joined = true
			} else if err != nil {
				a.log.Debug("gossip join pending", "err", err)
			}
		} else if slow || time.Since(lastReconnect) >= reconnectInterval {
			lastReconnect = time.Now()
			alive := cl.members.AliveSet()
			gone := a.gossipAddrsFromState(cl, alive)
			if knock := membership.ReconnectPick(gone, len(alive), rand.Float64(), rand.Float64()); len(knock) > 0 {
				if n, _ := cl.members.Join(knock); n > 0 {
					a.log.Info("gossip reconnected to a node it had lost", "addr", knock[0], "gone", len(gone))
				}
			}
		}
		// Written when the peers changed, not on every round: an idle
		// node does no disk I/O here.
		if time.Since(lastSave) > 5*time.Second {
			if addrs := cl.members.PeerAddrs(); len(addrs) > 1 {
				addrs = membership.Dedupe(addrs, a.selfGossipAddr())
				sort.Strings(addrs)
				if !slices.Equal(addrs, saved) {
					if err := atomicfile.WriteJSON(filepath.Join(clusterDir(a.cfg.DataDir), "peers.json"), addrs); err == nil {
						saved = addrs
					}
				}
				lastSave = time.Now()
			}
		}
		if joined && !slow {
			stopTicks()
			ticks, stopTicks = cl.resync.Ticks(reconnectInterval)
			slow = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// reconnectInterval is how often gossip retries nodes it considers gone:
// each tick of the resync clock.
const reconnectInterval = resync.Period

func (a *Agent) selfGossipAddr() string {
	return net.JoinHostPort(a.cfg.AdvertiseAddr, strconv.Itoa(a.cfg.GossipPort))
}

// gossipAddrsFromState lists the gossip addresses of the other nodes of
// the state, skipping those in skip (nil: skip none).
func (a *Agent) gossipAddrsFromState(cl *cluster, skip map[string]memberMeta) []string {
	var out []string
	for _, n := range cl.store.Nodes() {
		if n.ID == a.id.NodeID || n.Addr == "" || n.GossipPort == 0 {
			continue
		}
		if _, ok := skip[n.ID]; ok {
			continue
		}
		out = append(out, net.JoinHostPort(n.Addr, strconv.Itoa(n.GossipPort)))
	}
	return out
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
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
