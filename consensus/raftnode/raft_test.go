package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// testCluster and testNode are the cluster record and nodes of
// consensus/fsm's tests, for bootstrapping a raft cluster.
func testCluster() consensus.ClusterState {
	return consensus.ClusterState{
		ClusterID:       "c1",
		CACertPEM:       []byte("cert"),
		CAKeyPEM:        []byte("key"),
		TokenSecretHash: "abc",
		GossipKeys:      [][]byte{bytes.Repeat([]byte{1}, 32)},
		ClusterCIDR:     "10.42.0.0/16",
		VIPCIDR:         "10.43.0.0/16",
		CreatedAt:       t0,
	}
}

func testNode(id, host string) api.Node {
	return api.Node{ID: id, Hostname: host, Addr: "127.0.0.1", Status: api.NodeReady,
		Availability: api.AvailabilityActive, CreatedAt: t0, CertSerial: "serial-" + id}
}

// testRaftConfig derives a fast config from the default (STYLE habit 11).
func testRaftConfig(id string) Config {
	c := DefaultConfig()
	c.NodeID = id
	// Fast, but not so fast that a loaded 2-core CI machine running -race
	// loses leaders mid-test: at 50 ms, "leadership lost while committing
	// log" failed a test in about one run of three.
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	// Thinned as in production (heartbeat.go), so every raft test runs
	// over the thinning transport: a real heartbeat at most every 60 ms.
	c.HeartbeatInterval = 60 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ApplyTimeout = 5 * time.Second
	return c
}

// clusterNode is one member of an in-memory test cluster.
type clusterNode struct {
	id    string
	dir   string
	store *consensus.Store
	trans *raft.InmemTransport
	r     *Raft
	down  bool
}

// raftCluster is a raft cluster on inmem transports with the log store on disk,
// which can partition nodes and restart them (raft's MakeCluster idea).
type raftCluster struct {
	t     *testing.T
	nodes []*clusterNode
	// mut, when set, changes each node's config before start.
	mut func(*Config)
	// log passes raft's lines to t.Log (testlog_test.go).
	log *testLogWriter
}

func newRaftCluster(t *testing.T, n int) *raftCluster {
	return newRaftClusterWith(t, n, nil)
}

// newRaftClusterWith is newRaftCluster with mut applied to every node's
// config.
func newRaftClusterWith(t *testing.T, n int, mut func(*Config)) *raftCluster {
	t.Helper()
	c := &raftCluster{t: t, mut: mut, log: &testLogWriter{t: t}}
	t.Cleanup(c.log.stop) // runs after the shutdown below (cleanups run last first)
	for i := 0; i < n; i++ {
		node := &clusterNode{id: fmt.Sprintf("n%d", i+1), dir: raftdirtest.Dir(t)}
		c.start(node, false)
		c.nodes = append(c.nodes, node)
	}
	c.connectAll()
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if !n.down {
				_ = n.r.Shutdown()
			}
		}
	})
	return c
}

// start opens the node's raft from its data dir with a fresh transport.
func (c *raftCluster) start(n *clusterNode, force bool) {
	c.t.Helper()
	// A restarted node keeps its address, as a real one does.
	var addr raft.ServerAddress
	if n.trans != nil {
		addr = n.trans.LocalAddr()
	}
	_, n.trans = raft.NewInmemTransport(addr)
	n.store = consensus.NewStore()
	cfg := testRaftConfig(n.id)
	cfg.DataDir = n.dir
	cfg.Transport = n.trans
	cfg.ForceNewCluster = force
	cfg.Logger, cfg.LogLevel = testLogger(c.log, n.id)
	if c.mut != nil {
		c.mut(&cfg)
	}
	r, err := New(cfg, n.store)
	if err != nil {
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	n.r, n.down = r, false
}

func (c *raftCluster) connectAll() {
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b && !a.down && !b.down {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
}

// isolate cuts n off from every other node, both ways.
func (c *raftCluster) isolate(n *clusterNode) {
	for _, o := range c.nodes {
		if o != n {
			n.trans.Disconnect(o.trans.LocalAddr())
			o.trans.Disconnect(n.trans.LocalAddr())
		}
	}
}

func (c *raftCluster) stop(n *clusterNode) {
	c.isolate(n)
	if err := n.r.Shutdown(); err != nil {
		c.t.Fatalf("shutdown %s: %v", n.id, err)
	}
	n.down = true
}

// waitFor polls cond until it holds or the deadline passes (STYLE habit 15).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits for exactly one leader among the given (running) nodes.
func (c *raftCluster) leader(among ...*clusterNode) *clusterNode {
	c.t.Helper()
	if len(among) == 0 {
		among = c.nodes
	}
	var l *clusterNode
	waitFor(c.t, "a leader", func() bool {
		l = nil
		for _, n := range among {
			if !n.down && n.r.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		return l != nil
	})
	return l
}

// form bootstraps node 1 and adds the others as voters.
func (c *raftCluster) form() *clusterNode {
	c.t.Helper()
	if c.nodes[0].r.HasExistingState() {
		c.t.Fatal("fresh node has state")
	}
	return c.formNonvoters(0)
}

// except returns the cluster's nodes other than n.
func (c *raftCluster) except(n *clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, o := range c.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

func (c *raftCluster) waitReplicated(index uint64, nodes ...*clusterNode) {
	c.t.Helper()
	for _, n := range nodes {
		waitFor(c.t, fmt.Sprintf("%s to apply index %d", n.id, index), func() bool { return n.store.Index() >= index })
	}
}

func TestConfigValidate(t *testing.T) {
	good := testRaftConfig("n1")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	def.NodeID = "x"
	if err := def.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	// A heartbeat interval past the lease is allowed: the lease is
	// renewed by every answer, cached ones too (heartbeat.go).
	quiet := def
	quiet.Timing = QuietTiming
	if err := quiet.Validate(); err != nil {
		t.Fatalf("quiet timing: %v", err)
	}
	cases := map[string]func(*Config){
		"no id":                func(c *Config) { c.NodeID = "" },
		"lease > heartbeat":    func(c *Config) { c.LeaderLeaseTimeout = time.Second },
		"election < hb":        func(c *Config) { c.ElectionTimeout = 10 * time.Millisecond },
		"no retain":            func(c *Config) { c.SnapshotRetain = 0 },
		"tiny commit":          func(c *Config) { c.CommitTimeout = 0 },
		"zero apply timeout":   func(c *Config) { c.ApplyTimeout = 0 },
		"negative hb interval": func(c *Config) { c.HeartbeatInterval = -time.Millisecond },
		"hb interval > hb/2":   func(c *Config) { c.HeartbeatInterval = c.HeartbeatTimeout/2 + time.Millisecond },
	}
	for name, mut := range cases {
		c := testRaftConfig("n1")
		mut(&c)
		if err := c.Validate(); !errors.Is(err, consensus.ErrInvalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := New(good, consensus.NewStore()); !errors.Is(err, consensus.ErrInvalid) {
		t.Errorf("New without DataDir: %v", err)
	}
}

func TestRaftElectApplyFailover(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()

	servers, err := l.r.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("servers = %v, %v", servers, err)
	}
	for _, s := range servers {
		if !s.Voter {
			t.Fatalf("server %s is not a voter", s.ID)
		}
	}
	v, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if svc := v.(*api.Service); svc.Version != l.store.Index() {
		t.Fatalf("version %d, store index %d", svc.Version, l.store.Index())
	}
	// A business refusal comes back as the error.
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s2", Name: "web"}}); !errors.Is(err, consensus.ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	c.waitReplicated(l.store.Index(), c.nodes...)

	// Followers refuse writes.
	for _, n := range c.nodes {
		if n != l {
			if _, err := n.r.Apply(ctx, command.RotateToken{SecretHash: "x"}); !errors.Is(err, consensus.ErrNotLeader) {
				t.Fatalf("follower apply: %v", err)
			}
			id, addr := n.r.Leader()
			if id != l.id || addr != string(l.trans.LocalAddr()) {
				t.Fatalf("follower sees leader %s %s", id, addr)
			}
			if n.r.State() != "follower" {
				t.Fatalf("state = %s", n.r.State())
			}
		}
	}
	if l.r.State() != "leader" || l.r.Stats()["state"] != "Leader" || l.r.LastIndex() == 0 {
		t.Fatalf("leader state %s stats %v", l.r.State(), l.r.Stats()["state"])
	}

	// Kill the leader: the others elect a new one, which accepts writes.
	c.stop(l)
	rest := c.except(l)
	nl := c.leader(rest...)
	if err := nl.r.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := nl.store.ServiceByName("web"); err != nil {
		t.Fatal(err)
	}
	if _, err := nl.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s3", Name: "db"}}); err != nil {
		t.Fatalf("apply on new leader: %v", err)
	}
	c.waitReplicated(nl.store.Index(), rest...)
	for _, n := range rest {
		if _, err := n.store.ServiceByName("db"); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
	}
	if err := l.r.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if _, err := l.r.Apply(ctx, command.RotateToken{SecretHash: "x"}); !errors.Is(err, consensus.ErrNotLeader) && !errors.Is(err, consensus.ErrShutdown) {
		t.Fatalf("apply after shutdown: %v", err)
	}
}

func TestRaftPartitionedMinorityCannotApply(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ch := l.r.LeadershipCh()
	c.isolate(l)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.r.Apply(ctx, command.RotateToken{SecretHash: "minority"})
	if !errors.Is(err, consensus.ErrNotLeader) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, consensus.ErrTimeout) {
		t.Fatalf("minority apply: %v", err)
	}
	waitFor(t, "isolated leader to step down", func() bool { return !l.r.IsLeader() })
	waitFor(t, "leadership-lost signal", func() bool {
		select {
		case v := <-ch:
			return !v
		default:
			return false
		}
	})

	var majority []*clusterNode
	for _, n := range c.nodes {
		if n != l {
			majority = append(majority, n)
		}
	}
	nl := c.leader(majority...)
	if _, err := nl.r.Apply(context.Background(), command.RotateToken{SecretHash: "majority"}); err != nil {
		t.Fatalf("majority apply: %v", err)
	}
	// Heal: the old leader catches up and never applied its own entry.
	c.connectAll()
	c.waitReplicated(nl.store.Index(), c.nodes...)
	if got := l.store.Cluster().TokenSecretHash; got != "majority" {
		t.Fatalf("old leader token hash %q", got)
	}
}

func TestRaftRestartKeepsState(t *testing.T) {
	c := newRaftCluster(t, 1)
	n := c.nodes[0]
	l := c.form()
	ctx := context.Background()
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// Entries after the snapshot come back from the WAL.
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s2", Name: "db"}}); err != nil {
		t.Fatal(err)
	}
	want := n.store.Index()
	c.stop(n)

	c.start(n, false)
	if !n.r.HasExistingState() {
		t.Fatal("no state after restart")
	}
	if err := n.r.BootstrapSelf(); err == nil {
		t.Fatal("bootstrap over existing state succeeded")
	}
	c.leader(n)
	waitFor(t, "replay", func() bool { return n.store.Index() >= want })
	for _, name := range []string{"web", "db"} {
		if _, err := n.store.ServiceByName(name); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	if n.store.Cluster() == nil {
		t.Fatal("cluster record lost")
	}
}

func TestRaftForceNewCluster(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(l.store.Index(), c.nodes...)
	for _, n := range c.nodes {
		c.stop(n)
	}
	// Only a follower survives; it comes back alone with --force-new-cluster.
	var survivor *clusterNode
	for _, n := range c.nodes {
		if n != l {
			survivor = n
			break
		}
	}
	c.start(survivor, true)
	sl := c.leader(survivor)
	servers, err := sl.r.Servers()
	if err != nil || len(servers) != 1 || servers[0].ID != survivor.id || !servers[0].Voter {
		t.Fatalf("servers = %+v, %v", servers, err)
	}
	if err := sl.r.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sl.store.ServiceByName("web"); err != nil {
		t.Fatalf("state lost: %v", err)
	}
	if _, err := sl.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s2", Name: "db"}}); err != nil {
		t.Fatalf("apply after recovery: %v", err)
	}

	// Forcing a node without state is refused.
	cfg := testRaftConfig("fresh")
	cfg.DataDir = raftdirtest.Dir(t)
	_, cfg.Transport = raft.NewInmemTransport("")
	cfg.ForceNewCluster = true
	if _, err := New(cfg, consensus.NewStore()); !errors.Is(err, consensus.ErrNotBootstrapped) {
		t.Fatalf("force on empty dir: %v", err)
	}
}

func TestRaftMembershipChanges(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()
	var other *clusterNode
	for _, n := range c.nodes {
		if n != l {
			other = n
			break
		}
	}
	if err := l.r.DemoteVoter(ctx, other.id); err != nil {
		t.Fatal(err)
	}
	servers, _ := l.r.Servers()
	for _, s := range servers {
		if s.ID == other.id && s.Voter {
			t.Fatal("still a voter")
		}
	}
	if err := l.r.RemoveServer(ctx, other.id); err != nil {
		t.Fatal(err)
	}
	if servers, _ := l.r.Servers(); len(servers) != 2 {
		t.Fatalf("servers after remove = %+v", servers)
	}
	// Deadline handling: an already expired context fails fast.
	expired, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-expired.Done()
	if err := l.r.Barrier(expired); err == nil {
		t.Log("barrier finished before noticing the expired context (allowed)")
	}
}

func TestNewInmem(t *testing.T) {
	addr, trans := raft.NewInmemTransport("")
	r, err := NewInmem(testRaftConfig("solo"), consensus.NewStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	if err := r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leader", r.IsLeader)
	if id, a := r.Leader(); id != "solo" || a != string(addr) {
		t.Fatalf("leader %s %s", id, a)
	}
	if _, err := r.Apply(context.Background(), command.BootstrapCluster{Cluster: testCluster(), Node: testNode("solo", "h")}); err != nil {
		t.Fatal(err)
	}
	if r.Store().Cluster() == nil {
		t.Fatal("no cluster")
	}
}

// Followers apply a write soon after it commits although the commit
// timeout (raft's empty appends that carry the commit index) never fires in
// this test: the commit nudge carries it. Bursts stay correct too, and the
// leader's own follow-up work (a barrier per burst) changes no state.
func TestRaftCommitNudgeReachesFollowers(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Hour })
	l := c.form()
	ctx := context.Background()
	var followers []*clusterNode
	for _, n := range c.nodes {
		if n != l {
			followers = append(followers, n)
		}
	}
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(l.store.Index(), followers...)
	for _, n := range followers {
		if _, err := n.store.Service("s1"); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
	}
	// A burst from several writers: the last write reaches every follower.
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			_, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: fmt.Sprintf("b%d", i), Name: fmt.Sprintf("burst%d", i)}})
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.waitReplicated(l.store.Index(), followers...)
	for _, n := range followers {
		if got := len(n.store.Services()); got != 21 {
			t.Fatalf("%s holds %d services, want 21", n.id, got)
		}
	}
	// The log ends with the nudge's barrier, which no store sees; every
	// replica still counts as caught up (the reconciler waits for this).
	waitFor(t, "the nudge's barrier on the leader", func() bool { return l.r.LastIndex() > l.store.Index() })
	for _, n := range c.nodes {
		waitFor(t, n.id+" caught up", n.r.CaughtUp)
	}
}

// With long timeouts a dead leader's replacement waits for the heartbeat
// timeout (20-40 s of silence here; long, so that the two survivors
// campaigning at once and splitting the vote, then again after an
// election timeout of 2.5-5 s, still shows the difference); ExpediteElection on the survivors
// (what node does once gossip declares the leader dead, which takes a
// while) starts the election at once. Off restores the configured timeouts.
func TestRaftExpediteElection(t *testing.T) {
	const hb, lease = 20 * time.Second, 2500 * time.Millisecond
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = hb, hb, lease
		cfg.LeaderSilence = 0 // only ExpediteElection cuts the timeouts here
	})
	// A lone bootstrapped node also waits the heartbeat timeout first.
	if err := c.nodes[0].r.ExpediteElection(true); err != nil {
		t.Fatal(err)
	}
	l := c.form()
	for _, n := range c.nodes {
		if err := n.r.ExpediteElection(false); err != nil {
			t.Fatal(err)
		}
		if got := n.r.raft.ReloadableConfig().HeartbeatTimeout; got != hb {
			t.Fatalf("%s: heartbeat timeout %s after off, want %s", n.id, got, hb)
		}
	}
	c.stop(l)
	var rest []*clusterNode
	for _, n := range c.nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	// Gossip needs a while to declare the leader dead: by then the
	// survivors have not heard from it for more than the lease.
	for _, n := range rest {
		waitFor(t, n.id+" silent past the lease", func() bool { return time.Since(n.r.LastContact()) > lease })
	}
	expedited := time.Now()
	for _, n := range rest {
		for range 2 { // idempotent
			if err := n.r.ExpediteElection(true); err != nil {
				t.Fatal(err)
			}
		}
		if got := n.r.raft.ReloadableConfig().HeartbeatTimeout; got != lease {
			t.Fatalf("%s: heartbeat timeout %s expedited, want the lease %s", n.id, got, lease)
		}
	}
	// Without expediting, no survivor could campaign before hb-lease from
	// now (its silence reaches hb no earlier).
	deadline := expedited.Add(hb - lease)
	for !rest[0].r.IsLeader() && !rest[1].r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("no leader %s after expediting", time.Since(expedited))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("leader elected %s after expediting", time.Since(expedited))
	nl := c.leader(rest...)
	if _, err := nl.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
}

// TestRaftLostLeader: the new leader knows which leader it lost and when it
// last heard from it (node's leader marks that host down at once from it);
// a node that never followed another leader reports none.
func TestRaftLostLeader(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	c.waitReplicated(l.store.Index(), c.nodes...)
	if id, _ := l.r.LostLeader(); id != "" {
		t.Fatalf("first leader lost %q, want none", id)
	}
	c.stop(l)
	stopped := time.Now() // isolated and shut down: nothing of it arrives later
	nl := c.leader(c.except(l)...)
	var id string
	var at time.Time
	waitFor(t, "the new leader to record the lost one", func() bool {
		id, at = nl.r.LostLeader()
		return id != ""
	})
	if id != l.id {
		t.Fatalf("lost leader %q, want %q", id, l.id)
	}
	// Its last contact was a heartbeat before the stop, within a few
	// heartbeat intervals of it.
	if at.After(stopped) || stopped.Sub(at) > 2*time.Second {
		t.Fatalf("last contact %v, stop at %v", at, stopped)
	}
}

// TestRaftLeaderWatch: followers of a live leader are not silent; once the
// leader is gone a follower says so (SilenceCh, LeaderSilent) without any
// gossip, and the leader itself never is.
func TestRaftLeaderWatch(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.LeaderSilence = 300 * time.Millisecond
		// No election of its own within the test: only the watch may speak.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = 5*time.Second, 5*time.Second
		cfg.HeartbeatInterval = 100 * time.Millisecond
	})
	l := c.form()
	c.waitReplicated(l.store.Index(), c.nodes...)
	var rest []*clusterNode
	for _, n := range c.nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	// The joiners were silent before they had a leader; the inmem
	// transport has no heartbeat hook, so each clears within a window.
	waitFor(t, "the joiners to hear the leader", func() bool {
		return !rest[0].r.LeaderSilent() && !rest[1].r.LeaderSilent()
	})
	// Three windows of a live leader: nobody silent.
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.r.LeaderSilent() {
				t.Fatalf("%s silent while the leader lives (last contact %v ago, leader %v)", n.id, time.Since(n.r.LastContact()), n.r.IsLeader())
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.stop(l)
	for _, n := range rest {
		select {
		case <-n.r.SilenceCh():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no silence signal", n.id)
		}
		waitFor(t, n.id+" to call the leader silent", n.r.LeaderSilent)
	}
}

// A follower cut off while a write commits has it soon after it is back,
// although raft retries a failed replication only when the next entry is
// dispatched or at CommitTimeout (an hour here): its first heartbeat answer
// shows it behind the commit index, and the leader appends a barrier whose
// replication sends it what it lacks (followerAnswered).
func TestRaftLaggingFollowerCaughtUp(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Hour })
	l := c.form()
	f := c.except(l)[0]
	c.isolate(f)
	if _, err := l.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	// The write's and the nudges' replication to f have failed: raft
	// waits for the next entry or CommitTimeout to try f again.
	quiesce(t, l)
	c.connectAll()
	c.waitReplicated(l.store.Index(), f)
	if _, err := f.store.Service("s1"); err != nil {
		t.Fatalf("%s: %v", f.id, err)
	}
}

// Followers learn what a new leader's first entry committed without
// waiting for a write or CommitTimeout (an hour here): the new leader
// appends two barriers once it leads (leaderNudge), and the second one's
// replication carries a commit index at or past its no-op.
func TestRaftNewLeaderTellsCommit(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Hour })
	l := c.form()
	if _, err := l.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.r.TransferLeadership(context.Background()); err != nil {
		t.Fatal(err)
	}
	nl := c.leader(c.except(l)...)
	// The new leader's no-op is the first entry of its term.
	term := nl.r.raft.CurrentTerm()
	var noop uint64
	waitFor(t, "the new leader's no-op", func() bool {
		for i := nl.r.raft.LastIndex(); i > 0; i-- {
			var e raft.Log
			if err := nl.r.logs.GetLog(i, &e); err != nil || e.Term != term {
				break
			}
			noop = i
		}
		return noop > 0
	})
	for _, n := range c.nodes {
		if n == nl {
			continue
		}
		waitFor(t, fmt.Sprintf("%s to learn commit index %d", n.id, noop), func() bool { return n.r.raft.CommitIndex() >= noop })
	}
}

// An old leader cut off with a stale tail of its own entries, as long as
// the new leader's log, catches up soon after it is back although its
// heartbeat answers do not show it behind the commit index: the new
// leader's replication to it failed on the transport, and the first
// heartbeat it answers again asks for a barrier (followerAnswered), whose
// replication walks back over the stale tail. CommitTimeout is an hour.
func TestRaftStaleTailCaughtUp(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Hour })
	old := c.form()
	c.isolate(old)
	// Entries the old leader appends before it steps down; none commits.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = old.r.Apply(ctx, command.CreateService{Service: api.Service{ID: fmt.Sprintf("x%d", i), Name: fmt.Sprintf("stale%d", i)}})
		}()
	}
	wg.Wait()
	nl := c.leader(c.except(old)...)
	if _, err := nl.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	quiesce(t, nl)
	if o, n := old.r.raft.LastIndex(), nl.r.raft.CommitIndex(); o < n {
		t.Fatalf("setup: the old leader's log ends at %d, before the new commit index %d: its answers would show it behind", o, n)
	}
	c.connectAll()
	c.waitReplicated(nl.store.Index(), old)
	if _, err := old.store.Service("s1"); err != nil {
		t.Fatalf("%s: %v", old.id, err)
	}
	if _, err := old.store.Service("x0"); err == nil {
		t.Fatalf("%s applied an entry that never committed", old.id)
	}
}

// quiesce waits until leader n has appended and committed every barrier
// it will append on its own (the commit nudge's after the last command,
// its own two after its election), so that whatever a test does next is
// the only thing that can make it replicate again. A nudge taken but not
// yet appended cannot be seen: a short settle shows one, and fails the
// setup rather than let the test pass for the wrong reason.
func quiesce(t *testing.T, n *clusterNode) {
	t.Helper()
	quiet := func() bool {
		last := n.r.raft.LastIndex()
		return last > n.store.Index() && n.r.raft.CommitIndex() == last && !n.r.leadNudge.Load() && len(n.r.nudgeCh) == 0
	}
	waitFor(t, n.id+" quiet", quiet)
	last := n.r.raft.LastIndex()
	time.Sleep(100 * time.Millisecond)
	if n.r.raft.LastIndex() != last || !quiet() {
		t.Fatalf("setup: %s appended an entry after it looked quiet", n.id)
	}
}

// TestRaftReplayEnd: a log that ends with entries raft writes for itself
// (barriers, no-ops) replays to the store index of its last command, which
// is below LastIndex; ReplayEnd says so, and the store reaches it.
func TestRaftReplayEnd(t *testing.T) {
	c := newRaftCluster(t, 1)
	n := c.form()
	if _, err := n.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	cmd := n.store.Index()
	if err := n.r.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := n.r.LastIndex(); last <= cmd {
		t.Fatalf("setup: the log ends at %d, not past the last command %d", last, cmd)
	}
	if got := n.r.ReplayEnd(); got != cmd {
		t.Fatalf("ReplayEnd = %d, want %d (the last command; LastIndex %d)", got, cmd, n.r.LastIndex())
	}
}
