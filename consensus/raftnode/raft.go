// Package raftnode is this node's raft instance: storage (the log store of
// consensus/logstore and file snapshots), the transport over node's stream
// layer with its heartbeat thinning, the timing, and the small surface node
// uses (Apply, membership changes, the leadership signal). It drives the
// FSM of consensus/fsm into a consensus.Store; consensus never imports it.
package raftnode

// Why: this file is the only place that touches *raft.Raft. node gets a
// *Raft with a small surface (Apply, membership changes, leadership signal)
// and never reaches into hashicorp/raft itself. Storage is our bbolt log and
// stable store in one file (consensus/logstore: logstore.go; migrated from
// raft-wal, quarantined when unreadable: migrate.go, rejoin.go) plus file
// snapshots; the transport runs over the stream layer node multiplexes on
// the mutual-TLS cluster port.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/heartbeat"
	"github.com/shoal-org/shoal/consensus/logstore"
)

// Config configures a Raft node. Derive it from DefaultConfig; it must not
// change after New.
type Config struct {
	// NodeID is this node's stable ID (the api.Node ID); it is the raft server ID.
	NodeID string
	// Addr is the IP:port other nodes dial to reach this node's raft
	// (the advertise address and cluster port).
	Addr string
	// DataDir holds raft/raft.db (log and stable store), raft/snapshots and,
	// after an unreadable log, raft-rejoin.json and raft.broken-<time>.
	DataDir string
	// StreamLayer is the raft stream of the cluster port, provided by node.
	// Raft owns it from New on and closes it on Shutdown.
	StreamLayer raft.StreamLayer
	// Transport replaces StreamLayer when set (tests use raft's inmem
	// transport). Raft closes it on Shutdown when it is an io.Closer.
	Transport raft.Transport
	// Logger receives raft's logs; nil discards them.
	Logger *slog.Logger
	// LogLevel is the lowest raft log level passed to Logger (default Info).
	LogLevel hclog.Level

	// Timing is raft's failure detection: heartbeats, timeouts, lease.
	Timing
	CommitTimeout     time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int
	// TransportTimeout bounds one raft RPC over the stream layer.
	TransportTimeout time.Duration
	// ApplyTimeout bounds Apply, Barrier and membership changes when the
	// context has no earlier deadline.
	ApplyTimeout time.Duration

	// ForceNewCluster (--force-new-cluster) rewrites the stored raft
	// configuration before start so that this node is the only voter,
	// keeping the log and snapshots. It needs existing state.
	ForceNewCluster bool

	// heartbeatObserve, when set (tests), sees every heartbeat the
	// thinning transport handles (heartbeat.Config.Observe).
	heartbeatObserve func(id raft.ServerID, at time.Time, err error)
	// nonvoterHold, when set (tests), replaces nonvoterInterval.
	nonvoterHold time.Duration
	// BeatOrigin is where the held heartbeats' beats are counted from
	// (consensus/heartbeat): node passes the phase of its own periodic loops, so
	// that they wake together. Zero: when the transport is made.
	BeatOrigin time.Time
}

// Timing is how raft finds a dead leader and how often a leader proves it
// is alive, chosen together (node's failure-detection profiles pair it with
// gossip's timers).
type Timing struct {
	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it campaigns (randomised up to twice that).
	HeartbeatTimeout time.Duration
	// HeartbeatInterval is the time between two heartbeats that reach a
	// voter; raft asks for one every HeartbeatTimeout/10–/5 and each ask
	// is held until the next is due (consensus/heartbeat). 0 sends every one. At
	// most HeartbeatTimeout/2, so a follower hears from a live leader at
	// least twice per timeout.
	HeartbeatInterval time.Duration
	// ElectionTimeout is a candidate's wait before it tries again (at
	// least HeartbeatTimeout).
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader keeps leading without a
	// quorum's answers; it is also the short timeout ExpediteElection sets
	// (raft refuses a heartbeat timeout below the lease). A voter renews
	// the lease once per HeartbeatInterval (consensus/heartbeat), so it must be
	// well above that: the margin is how late a starved leader's heartbeats
	// may be before it steps down for nothing.
	LeaderLeaseTimeout time.Duration
	// LeaderSilence is how long a follower hears nothing from its leader
	// before it calls the leader silent (watch.go; node then asks for a
	// quick election). At least the lease: raft campaigns only once its
	// last contact is older than the expedited timeout, the lease. 0: no
	// watch.
	LeaderSilence time.Duration
}

// nonvoterInterval is the time between two real heartbeats to a
// non-voter; the calls raft makes in between are held (consensus/heartbeat).
//
// Why not longer: a non-voter cannot cost a leader its lease or start an
// election, but it still forgets the leader after HeartbeatTimeout of
// silence (raft's runFollower clears it before declining to campaign): it
// would then forward no write, count as not synced (its reconciler
// waits) and ask for a quick election (ExpediteElection). And the leader's
// second opinion on a node gossip calls dead (Raft.HeardFrom, node's
// HeardWindow: HeartbeatInterval plus one raft tick) must still find an
// answer that recent. Interval plus half a tick (400 ms under
// DefaultTiming, 1.2 s under QuietTiming) keeps every silence within what
// voters already see (interval plus up to a whole tick), so none of those
// readers changes; what it saves is the leader's wake-ups between real
// heartbeats (5–10 a second per follower, now one).
func (t Timing) nonvoterInterval() time.Duration {
	if t.HeartbeatInterval <= 0 {
		return 0
	}
	return t.HeartbeatInterval + t.HeartbeatTimeout/10
}

// DefaultTiming: a follower suspects the leader after 1–2 s of silence and
// hears a real heartbeat every 300 ms (DefaultConfig says why); the lease
// is 600 ms (consensus/heartbeat says why). LeaderSilence is two whole
// beats, not 700 ms, for the idle cost: watch.go says why.
var DefaultTiming = Timing{
	HeartbeatTimeout:   time.Second,
	HeartbeatInterval:  300 * time.Millisecond,
	ElectionTimeout:    time.Second,
	LeaderLeaseTimeout: 600 * time.Millisecond,
	LeaderSilence:      600 * time.Millisecond,
}

// QuietTiming is for clusters that trade detection speed for an idle
// cluster's CPU (node's tolerant profile, whose gossip finds a dead host in
// 2 s or more anyway): a real heartbeat reaches each follower once a second
// instead of three times, and a follower campaigns on its own after 2–4 s
// of silence. A dead leader is still replaced soon after gossip declares
// it dead: ExpediteElection shortens the timeouts to the lease, and a
// follower that has not heard from the leader for that long campaigns at
// once. A voter's heartbeats are held (consensus/heartbeat), so each renews the
// lease once a second: the lease is 1.5 s, which leaves a starved leader 500 ms of
// scheduling delay before it steps down for nothing (DefaultTiming leaves
// 300 ms) and costs a split vote 1.5–3 s instead of 0.5–1 s. Gossip takes
// 2 s here to declare the leader dead, past the 1.5 s, so the survivors
// still campaign at once. On an idle 3-node cluster the heartbeats were
// about a third of a follower's wake-ups with gossip at 800 ms probes (the
// rest: gossip and node's loops); holding the voters took the leader from
// 0.57 % of a core to 0.43 %.
var QuietTiming = Timing{
	HeartbeatTimeout:   2 * time.Second,
	HeartbeatInterval:  time.Second,
	ElectionTimeout:    2 * time.Second,
	LeaderLeaseTimeout: 1500 * time.Millisecond,
	LeaderSilence:      1600 * time.Millisecond,
}

// DefaultConfig returns LAN settings for small, busy machines that keep an
// idle cluster nearly free: a leader is suspected after 1–2 s of silence and
// steps down after 500 ms without a quorum. Shorter (0.5 s / 250 ms) lost
// the leader while 25–50 agents joined at once on a loaded 2-core machine:
// the joins it was committing failed. 2 s / 1 s halved the heartbeats again
// but made a dead leader's replacement take 2.15 s (median of 5; 1.09–3.19):
// gossip finds the dead leader within about a second and the survivors then
// campaign at once (ExpediteElection), but both do, and a split vote costs
// another election timeout. At 1 s / 500 ms failover is 1.11 s (1.09–2.14).
//
// What an idle cluster costs is raft's traffic to every follower (voters
// and non-voters alike): a heartbeat every HeartbeatTimeout/10–/5 and an
// empty AppendEntries every CommitTimeout–2×CommitTimeout, each a TLS round
// trip of ~0.2 ms of CPU on both ends here. At 0.5 s / 20 ms that was ~45
// round trips a second per follower: 1.5–2 % of a core on a follower and
// ~1 % per follower on the leader, so a 100-node leader spent most of a
// core on it. The empty appends exist only to tell followers the commit
// index when writes stop; the commit nudge (nudgeLoop) tells them at once
// after every write instead, so CommitTimeout is only the fallback for
// entries written without Apply (barriers, configuration changes), whose
// commit no store waits for (Raft.CaughtUp). It was 2 s, and each of the
// leader's followers still cost an empty AppendEntries round trip every
// 2–4 s (16 a second at 50 agents, beside ~40 heartbeats). Those appends
// also were raft's retry for a follower whose replication failed and its
// way of telling followers what a new leader's first entry committed; both
// have their own nudge now (followerAnswered, leaderNudge), so it is 5 s.
// Not longer: at 15 s a 100-agent cluster on a loaded 2-core machine took
// 34–47 s instead of ~25 s until every node was ready after a join burst
// (three runs; why was not found), though its idle leader fell from 3.3 %
// to 1.9–2.1 % of a core; at 5 s: 25.9 s and 2.5 % (one run each).
// Instead, the idle appends to non-voters that tell them nothing new are
// answered on the leader (consensus/heartbeat's idleappend.go): an idle
// 50-agent leader went from 334/316 to 275/275 thread wake-ups a second
// (two alternating pairs). What is left grows with the cluster on the
// leader alone: heartbeats, ~0.05 % of a core per follower.
//
// HeartbeatInterval 300 ms takes raft's heartbeats from every 100–200 ms
// to every 300–500 ms per follower without touching the timeouts
// (consensus/heartbeat says why that is safe): the longest silence a follower
// sees stays at half its 1 s timeout and within the 500 ms an expedited
// election waits. Measured on an idle 3-node cluster (FootprintIdle3, 60 s,
// two runs each, interleaved with the unthinned binary): raft packets on a
// follower's link -54 %, follower CPU 0.71/0.68 % -> 0.56/0.61 % of a core,
// leader 1.38/1.33 % -> 1.02/1.08 %; failover median 1.10/1.26 s ->
// 1.09/1.10 s. What remains on a follower is mostly gossip and node's loops.
func DefaultConfig() Config {
	return Config{
		LogLevel:          hclog.Info,
		Timing:            DefaultTiming,
		CommitTimeout:     5 * time.Second,
		SnapshotThreshold: 4096,
		SnapshotInterval:  30 * time.Second,
		TrailingLogs:      4096,
		SnapshotRetain:    2,
		TransportTimeout:  10 * time.Second,
		ApplyTimeout:      10 * time.Second,
	}
}

// Validate checks the config against raft's own rules (lease <= heartbeat
// <= election, minimums) without needing storage or a transport.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("raft config: empty NodeID: %w", consensus.ErrInvalid)
	}
	if c.SnapshotRetain < 1 {
		return fmt.Errorf("raft config: SnapshotRetain %d < 1: %w", c.SnapshotRetain, consensus.ErrInvalid)
	}
	if c.ApplyTimeout <= 0 || c.TransportTimeout <= 0 {
		return fmt.Errorf("raft config: ApplyTimeout and TransportTimeout must be positive: %w", consensus.ErrInvalid)
	}
	if c.LeaderLeaseTimeout <= c.HeartbeatInterval {
		return fmt.Errorf("raft config: LeaderLeaseTimeout %v must be above HeartbeatInterval %v (a voter answers once per interval): %w",
			c.LeaderLeaseTimeout, c.HeartbeatInterval, consensus.ErrInvalid)
	}
	if c.HeartbeatInterval < 0 || c.HeartbeatInterval > c.HeartbeatTimeout/2 {
		return fmt.Errorf("raft config: HeartbeatInterval %v must be between 0 and HeartbeatTimeout/2 = %v: %w",
			c.HeartbeatInterval, c.HeartbeatTimeout/2, consensus.ErrInvalid)
	}
	if c.LeaderSilence != 0 && c.LeaderSilence < c.LeaderLeaseTimeout {
		return fmt.Errorf("raft config: LeaderSilence %v must be 0 or at least LeaderLeaseTimeout %v: %w",
			c.LeaderSilence, c.LeaderLeaseTimeout, consensus.ErrInvalid)
	}
	if err := raft.ValidateConfig(c.raftConfig(nil)); err != nil {
		return fmt.Errorf("raft config: %w: %w", consensus.ErrInvalid, err)
	}
	return nil
}

func (c Config) raftConfig(logger hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.Logger = logger
	return rc
}

// Server is one member of the raft configuration.
type Server struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

// Raft is this node's raft instance and its FSM. All methods are safe for
// concurrent use.
type Raft struct {
	cfg   Config
	raft  *raft.Raft
	fsm   *fsm.FSM
	store *consensus.Store
	trans raft.Transport
	logs  raft.LogStore
	stab  raft.StableStore
	snaps raft.SnapshotStore
	// gate withholds the vote while a rejoin is pending (nil in memory).
	gate *logstore.VoteGate
	// closers run on Shutdown after raft stopped (transport, log store).
	closers []io.Closer
	// cut ends every raft connection as Shutdown begins (nil with a
	// caller's transport).
	cut *cutLayer
	// thin sends heartbeats at most every HeartbeatInterval (nil when 0
	// or the transport has no pre-vote).
	thin *heartbeat.Transport
	// bootHeld is the last index of this node's log when raft started, and
	// loaded latches once the replica has applied up to it (Loaded).
	bootHeld uint64
	loaded   atomic.Bool
	// cmdGate refuses commands some member cannot apply (gate.go).
	cmdGate atomic.Pointer[func(command.Command) error]
	// proposals keeps proposals out while a restore runs (proposals.go).
	proposals proposalGate

	// admits is the leader's queue of non-voters to add, admitCheck the
	// rule each addition asks first (admitqueue.go).
	admits     admitQueue
	admitCheck atomic.Pointer[func(id string) error]

	// watch is the follower's watch on its leader (watch.go); nil when
	// LeaderSilence is 0.
	watch *leaderWatch

	// lost is the leader this node last followed and lost, and when it
	// last heard from it (LostLeader); current is the leader it follows.
	lostMu  sync.Mutex
	current string
	lost    string
	lostAt  time.Time

	// expedited says whether ExpediteElection shortened the timeouts.
	expedited  atomic.Bool
	expediteMu sync.Mutex

	// nudgeCh (one slot, coalescing) asks nudgeLoop to tell followers the
	// commit index; nudgeStop, closed when Shutdown begins, ends it (and
	// every wait on a raft future) and nudgeDone says it has.
	nudgeCh   chan struct{}
	nudgeStop chan struct{}
	nudgeDone chan struct{}
	// applying counts the Applies between proposing and nudging: while
	// one is, nudgeLoop leaves the barrier to the nudge that Apply sends.
	applying atomic.Int64
	// leadNudge asks nudgeLoop for a second barrier after the next one:
	// set when this node becomes leader (leaderNudge). behindAt is when a
	// follower that needed catching up last asked for a barrier
	// (followerAnswered), in Unix nanoseconds.
	leadNudge atomic.Bool
	behindAt  atomic.Int64

	// confMu guards promotions (the servers AddVoter is promoting, left
	// out of the transport's non-voters) and orders the refreshes of that
	// set; it is never held across a wait for raft. leaderObs receives
	// raft's leader observations (observer) for nonvoterLoop; leaderDone
	// says it has ended.
	confMu     sync.Mutex
	promotions map[raft.ServerID]int
	leaderObs  chan raft.Observation
	observer   *raft.Observer
	leaderDone chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// storage is the three raft stores plus what must be closed after raft.
type storage struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	// gate withholds this node's vote while a rejoin is pending (nil in memory).
	gate    *logstore.VoteGate
	closers []io.Closer
}

// New opens (or creates) the raft state under cfg.DataDir and starts raft
// with an FSM writing into store. It does not bootstrap: call
// HasExistingState and BootstrapSelf, or join an existing cluster (the
// leader calls AddNonvoter for this node).
func New(cfg Config, store *consensus.Store) (*Raft, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("raft config: empty DataDir: %w", consensus.ErrInvalid)
	}
	logger := newHclog(cfg.Logger, "raft", cfg.LogLevel)
	st, err := openDiskStorage(cfg, logger)
	if err != nil {
		return nil, err
	}
	return newRaft(cfg, store, logger, st)
}

// openDiskStorage opens the bolt log + stable store (migrating a raft-wal
// store, quarantining an unreadable one: logstore/rejoin.go) and the file
// snapshots under cfg.DataDir/raft.
func openDiskStorage(cfg Config, logger hclog.Logger) (storage, error) {
	base := filepath.Join(cfg.DataDir, "raft")
	rejoin, err := logstore.RejoinPending(cfg.DataDir)
	if err != nil {
		return storage{}, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(base, cfg.SnapshotRetain, logger.Named("snapshots"))
	if err != nil {
		return storage{}, fmt.Errorf("open raft snapshots in %s: %w", base, err)
	}
	// Raft reads the log only after the newest snapshot: older entries may
	// have a hole (a follower that installed the leader's snapshot).
	var snapIndex uint64
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	logs, err := logstore.OpenDir(base, snapIndex, logger)
	if errors.Is(err, consensus.ErrLogUnreadable) {
		moved, qerr := logstore.QuarantineRaftDir(cfg.DataDir, time.Now(), err)
		if qerr != nil {
			return storage{}, errors.Join(err, qerr)
		}
		logger.Error("this node's raft log is unreadable; it was moved aside and the node starts with an empty log, "+
			"withholding its vote until the leader has made it a non-voter; the leader then sends it a snapshot",
			"error", err.Error(), "moved_to", moved)
		rejoin = true
		logs, err = logstore.OpenDir(base, 0, logger)
		if err == nil {
			// The quarantine moved the snapshots aside with the log.
			snaps, err = raft.NewFileSnapshotStoreWithLogger(base, cfg.SnapshotRetain, logger.Named("snapshots"))
			if err != nil {
				_ = logs.Close()
				return storage{}, fmt.Errorf("open raft snapshots in %s: %w", base, err)
			}
		}
	}
	if err != nil {
		return storage{}, err
	}
	logs.SetSelf(cfg.NodeID) // a non-voter's appends skip the fsync (logstore.syncFor)
	gate := &logstore.VoteGate{StableStore: logs}
	gate.Closed.Store(rejoin)
	if rejoin {
		logger.Warn("raft rejoin pending: this node withholds its vote until the leader has made it a non-voter")
	}
	return storage{logs: logs, stable: gate, snaps: snaps, gate: gate, closers: []io.Closer{logs}}, nil
}

// NewInmem starts raft with in-memory log, stable and snapshot stores over
// trans (usually raft.NewInmemTransport): state is lost on Shutdown. It is
// for tests; cfg.DataDir is ignored.
func NewInmem(cfg Config, store *consensus.Store, trans raft.Transport) (*Raft, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Transport = trans
	mem := raft.NewInmemStore()
	return newRaft(cfg, store, newHclog(cfg.Logger, "raft", cfg.LogLevel),
		storage{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore()})
}

func newRaft(cfg Config, store *consensus.Store, logger hclog.Logger, st storage) (_ *Raft, err error) {
	defer func() {
		if err != nil {
			for _, c := range st.closers {
				_ = c.Close()
			}
		}
	}()
	trans := cfg.Transport
	var cut *cutLayer
	if trans == nil {
		if cfg.StreamLayer == nil {
			return nil, fmt.Errorf("raft config: neither StreamLayer nor Transport: %w", consensus.ErrInvalid)
		}
		cut = newCutLayer(cfg.StreamLayer)
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: cut,
			// One idle connection per follower: its heartbeats and its
			// replication share it (heartbeat.Transport turns the pipeline
			// off); a call that finds it busy dials another, closed
			// after use, so a busy moment does not leave a second
			// connection and its 256 KiB buffer behind.
			MaxPool: 1,
			Timeout: cfg.TransportTimeout,
			Logger:  logger.Named("net"),
		})
	}
	var thin *heartbeat.Transport
	var watch *leaderWatch
	if _, preVote := trans.(raft.WithPreVote); preVote && cfg.HeartbeatInterval > 0 {
		hc := heartbeat.Config{Interval: cfg.HeartbeatInterval, Slow: cmp.Or(cfg.nonvoterHold, cfg.nonvoterInterval()),
			Origin: cfg.BeatOrigin, Timeout: cfg.HeartbeatTimeout / 2, Observe: cfg.heartbeatObserve, KeepNonvoters: true}
		if watch = newLeaderWatch(cfg.LeaderSilence); watch != nil {
			hc.OnHeartbeat = watch.contact
		}
		thin = heartbeat.New(trans, hc)
		trans = voteTransport{thin}
	}
	if c, ok := trans.(io.Closer); ok {
		// Transport closes before the WAL.
		st.closers = append([]io.Closer{c}, st.closers...)
	}
	if cfg.Addr == "" {
		cfg.Addr = string(trans.LocalAddr())
	}
	rc := cfg.raftConfig(logger)
	machine := fsm.New(store)

	if cfg.ForceNewCluster {
		has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
		if err != nil {
			return nil, fmt.Errorf("force new cluster: check raft state: %w", err)
		}
		if !has {
			return nil, fmt.Errorf("force new cluster: no raft state in %s: %w", cfg.DataDir, consensus.ErrNotBootstrapped)
		}
		conf := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.Addr)}}}
		// RecoverCluster replays into a throwaway FSM only to write a
		// snapshot; the real store is filled by NewRaft's restore.
		if err := raft.RecoverCluster(rc, fsm.New(consensus.NewStore()), st.logs, st.stable, st.snaps, trans, conf); err != nil {
			return nil, fmt.Errorf("force new cluster: recover raft configuration: %w", err)
		}
	}

	held, err := st.logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("start raft %s: read the log's last index: %w", cfg.NodeID, err)
	}
	r, err := startRaft(rc, machine, st, trans)
	if err != nil {
		return nil, fmt.Errorf("start raft %s: %w", cfg.NodeID, err)
	}
	rr := &Raft{cfg: cfg, raft: r, fsm: machine, store: store, trans: trans, bootHeld: held,
		logs: st.logs, stab: st.stable, snaps: st.snaps, gate: st.gate, closers: st.closers, cut: cut, thin: thin,
		nudgeCh: make(chan struct{}, 1), nudgeStop: make(chan struct{}), nudgeDone: make(chan struct{}),
		leaderDone: make(chan struct{}), promotions: map[raft.ServerID]int{}, watch: watch}
	if watch != nil {
		watch.bind(r.LastContact, func() bool { return r.State() == raft.Leader })
	}
	go rr.nudgeLoop()
	if thin != nil {
		thin.SetAnswered(rr.followerAnswered)
		rr.leaderObs = make(chan raft.Observation, 8)
		rr.observer = raft.NewObserver(rr.leaderObs, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		})
		r.RegisterObserver(rr.observer)
		go rr.nonvoterLoop()
	} else {
		close(rr.leaderDone)
	}
	return rr, nil
}

// nonvoterLoop keeps the transport's non-voters (the peers whose
// heartbeats it holds, consensus/heartbeat) in step with leadership: read from
// the configuration when this node becomes leader, none while it is not.
// Membership changes update them as they are made (setNonvoters).
// Observations may be dropped when the channel is full; each one re-reads
// the state, so the last one counts.
func (r *Raft) nonvoterLoop() {
	defer close(r.leaderDone)
	for {
		select {
		case <-r.nudgeStop:
			return
		case o := <-r.leaderObs:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				r.noteLeader(string(lo.LeaderID))
				if string(lo.LeaderID) == r.cfg.NodeID {
					r.leaderNudge()
				}
			}
		}
		r.refreshNonvoters()
	}
}

// noteLeader follows raft's leader observations: when the leader this node
// followed is lost (no leader, or another), it keeps that leader's ID and
// raft's last contact with it, for LostLeader.
func (r *Raft) noteLeader(id string) {
	r.lostMu.Lock()
	defer r.lostMu.Unlock()
	if r.current != "" && r.current != id && r.current != r.cfg.NodeID {
		r.lost, r.lostAt = r.current, r.raft.LastContact()
	}
	if r.current == r.cfg.NodeID && id != r.cfg.NodeID && r.watch != nil {
		r.watch.arm() // no longer leading: watch the next leader
	}
	r.current = id
}

// LostLeader is the leader this node last followed and lost ("" if none),
// and when it last heard from it. A new leader takes that as the old
// leader's last answer (node/leaderloop's silence.go): if the old leader's
// host died, the new leader need not wait a whole silence window from its
// own first heartbeat to mark it down.
func (r *Raft) LostLeader() (string, time.Time) {
	r.lostMu.Lock()
	defer r.lostMu.Unlock()
	return r.lost, r.lostAt
}

// refreshNonvoters sets the transport's non-voters from raft's latest
// configuration (which includes changes not yet committed) while this node
// leads, and to none otherwise (a peer not listed is treated as a voter:
// the safe default). A server being promoted is left out: the
// configuration may not show its promotion yet.
func (r *Raft) refreshNonvoters() {
	if r.thin == nil {
		return
	}
	// Held from the read to the set, so an older read never overwrites a
	// newer one; both are quick (raft keeps the latest configuration in
	// memory).
	r.confMu.Lock()
	defer r.confMu.Unlock()
	var ids []raft.ServerID
	if r.raft.State() == raft.Leader {
		f := r.raft.GetConfiguration()
		if f.Error() != nil {
			r.thin.SetNonvoters(nil)
			return
		}
		for _, s := range f.Configuration().Servers {
			if s.Suffrage != raft.Voter && s.ID != raft.ServerID(r.cfg.NodeID) && r.promotions[s.ID] == 0 {
				ids = append(ids, s.ID)
			}
		}
	}
	r.thin.SetNonvoters(ids)
}

// promoting marks id as being promoted (on) and takes it out of the
// transport's non-voters at once, so the held call to it goes out before
// raft is asked; off ends the mark and refreshes the set from the
// configuration (the promotion may have failed). Calls nest.
func (r *Raft) promoting(id raft.ServerID, on bool) {
	if r.thin == nil {
		return
	}
	r.confMu.Lock()
	if on {
		r.promotions[id]++
		r.thin.SetVoter(id)
		r.confMu.Unlock()
		return
	}
	if r.promotions[id]--; r.promotions[id] <= 0 {
		delete(r.promotions, id)
	}
	r.confMu.Unlock()
	r.refreshNonvoters()
}

// nudgeLoop tells followers the commit index soon after a write commits.
//
// Why: a follower learns that an entry is committed only from the next
// AppendEntries the leader sends it. While writes flow, the next write
// carries it; after the last write of a burst, raft sends nothing but
// heartbeats (which carry no commit index) until CommitTimeout, which we
// keep long so that an idle cluster is quiet (DefaultConfig). So after a
// write commits and nothing else is in flight, the loop appends a barrier:
// replicating it carries the commit index to every follower at once, and
// the barrier itself changes no state. Writes are coalesced: one barrier
// answers every nudge that came before it, and none is appended while
// another Apply is still under way (the last one to end nudges again, and
// its barrier carries every index committed before it).
//
// The count of Applies under way is ours, not raft's LastIndex against
// AppliedIndex: raft hands a batch to the FSM, which answers the futures,
// before it moves AppliedIndex, so right after an Apply returns its own
// entry could still look in flight, and the nudge was dropped: a follower
// then learned of the write only at CommitTimeout (CI saw it wait 10 s).
func (r *Raft) nudgeLoop() {
	defer close(r.nudgeDone)
	for {
		select {
		case <-r.nudgeStop:
			return
		case <-r.nudgeCh:
		}
		if r.raft.State() != raft.Leader || r.applying.Load() > 0 {
			continue
		}
		// An error means leadership was lost or raft is shutting down:
		// the next leader's own entries carry its commit index. wait
		// ends when Shutdown begins, also on a barrier raft never
		// answers; the select above then ends the loop.
		if err := r.wait(context.Background(), r.raft.Barrier(r.cfg.ApplyTimeout)); err == nil && r.leadNudge.Swap(false) {
			r.nudge() // leaderNudge's second barrier
		}
	}
}

// leaderNudge tells followers the commit index once this node, newly
// leader, has committed its first entry.
//
// Why: a new leader's first entry (raft's no-op) commits every entry of
// earlier terms, and followers learn of that commit only from a later
// AppendEntries. Heartbeats carry no commit index and CommitTimeout is
// long (DefaultConfig), so a follower holding commands the old leader had
// not told it were committed (it died first) would not apply them, and
// count as not caught up, until the next write. The first barrier is
// applied only once the no-op is committed; the second's replication then
// carries that commit index to every follower (the first's may have left
// before the no-op committed).
func (r *Raft) leaderNudge() {
	r.leadNudge.Store(true)
	r.nudge()
}

// needsCatchUp decides from a follower's heartbeat answer a (and the
// replication to it) whether it needs raft to replicate to it again:
// raft's last replication to it failed, or it lacks committed entries
// (its log ends before commit), or it was never told that the leader's last
// applied command (lastCommand, the leader's store index) is committed.
// Barriers after that command do not count: no store waits for them.
func needsCatchUp(a heartbeat.FollowerAnswer, commit, lastCommand uint64) bool {
	return a.ReplFailed || a.LastLog < commit || a.Told < lastCommand
}

// behindEvery bounds how often followers that need catching up append a
// barrier (followerAnswered): a follower that stays behind (one receiving
// a snapshot, or one whose disk refuses appends) costs at most one barrier
// per interval.
const behindEvery = 2 * time.Second

// followerAnswered hears from a follower's answer to a real heartbeat
// (heartbeat.Transport.SetAnswered) and nudges when needsCatchUp says the follower
// lacks committed entries or their commit.
//
// Why: raft retries a follower's failed replication only when the next
// entry is dispatched or at CommitTimeout, which is long (DefaultConfig),
// and only an AppendEntries tells a follower the commit index. A follower
// cut off while a write committed (a blip, a restart), or one that took the
// last entries of a burst (a join burst) before they were committed, would
// wait for the next write; the reconciler waits for its replica to hold
// every committed command. The barrier appended here goes to every
// follower from where each one is (raft walks back over a stale tail) and
// carries the commit index of every command before it.
func (r *Raft) followerAnswered(a heartbeat.FollowerAnswer) {
	if r.raft.State() != raft.Leader || !needsCatchUp(a, r.raft.CommitIndex(), r.store.Index()) {
		return
	}
	now := time.Now().UnixNano()
	last := r.behindAt.Load()
	if now-last < int64(behindEvery) || !r.behindAt.CompareAndSwap(last, now) {
		return
	}
	r.nudge()
}

// ExpediteElection shortens this node's heartbeat and election timeouts to
// LeaderLeaseTimeout (on) or restores the configured ones (off).
//
// Why: the configured timeouts are long so that a leader starved of CPU
// for a moment is not deposed (DefaultConfig), which would make a dead
// leader's replacement wait 2–4 s of silence. Gossip finds a dead node
// within 2 s; node calls this with on while gossip says the leader it
// knows is dead (or it knows none), so the election starts at once, and
// with off once a live leader is known again. A follower whose timer has
// already run past the short timeout starts its election immediately.
// Idempotent; safe for concurrent use.
func (r *Raft) ExpediteElection(on bool) error {
	r.expediteMu.Lock()
	defer r.expediteMu.Unlock()
	if r.expedited.Load() == on {
		return nil
	}
	rc := r.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = r.cfg.HeartbeatTimeout, r.cfg.ElectionTimeout
	if on {
		short := max(r.cfg.LeaderLeaseTimeout, time.Millisecond)
		rc.HeartbeatTimeout, rc.ElectionTimeout = min(short, rc.HeartbeatTimeout), min(short, rc.ElectionTimeout)
	}
	if err := r.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("raft timeouts (expedite %v): %w", on, err)
	}
	r.expedited.Store(on)
	return nil
}

// nudge wakes nudgeLoop; it never blocks.
func (r *Raft) nudge() {
	select {
	case r.nudgeCh <- struct{}{}:
	default:
	}
}

// startRaft is raft.NewRaft with its panics (it panics when a log entry it
// needs cannot be read) turned into an error, so that the agent prints one
// line instead of a stack trace. New has read the whole log back before, so
// this is the last line of defence, not the recovery path.
func startRaft(rc *raft.Config, machine *fsm.FSM, st storage, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("raft panicked reading its state: %v: %w", p, consensus.ErrLogUnreadable)
		}
	}()
	return raft.NewRaft(rc, machine, st.logs, st.stable, st.snaps, trans)
}

// RejoinPending reports whether this node lost its raft log and withholds its
// vote until the leader has made it a non-voter (then call RejoinDone).
func (r *Raft) RejoinPending() bool { return r.gate != nil && r.gate.Closed.Load() }

// RejoinDone records that the leader has made this node a non-voter: it
// gives the node its vote back and removes the rejoin marker. Idempotent.
func (r *Raft) RejoinDone() error {
	if r.gate == nil {
		return nil
	}
	if err := logstore.ClearRejoin(r.cfg.DataDir); err != nil {
		return err
	}
	r.gate.Closed.Store(false)
	return nil
}

// Store returns the store this node's FSM writes into.
func (r *Raft) Store() *consensus.Store { return r.store }

// HasExistingState reports whether this node has raft state (it was
// bootstrapped or has joined a cluster before).
func (r *Raft) HasExistingState() bool {
	has, err := raft.HasExistingState(r.logs, r.stab, r.snaps)
	return err == nil && has
}

// BootstrapSelf starts a new cluster with this node as the only voter. It
// fails when the node already has state. Follow it with a BootstrapCluster
// command once this node is leader.
func (r *Raft) BootstrapSelf() error {
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(r.cfg.NodeID), Address: raft.ServerAddress(r.cfg.Addr)}}}
	if err := r.raft.BootstrapCluster(conf).Error(); err != nil {
		return fmt.Errorf("bootstrap raft on %s: %w", r.cfg.NodeID, err)
	}
	return nil
}

// timeout is what is left of ctx's deadline, capped by ApplyTimeout.
func (r *Raft) timeout(ctx context.Context) time.Duration {
	t := r.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// wait waits for a future, ctx, or the start of Shutdown (ErrShutdown:
// the outcome is then unknown, as after a timeout).
//
// Why Shutdown too: hashicorp/raft does not answer every future it has
// taken when it shuts down (hashicorp/raft#498). A caller whose ctx is the
// agent's (a cluster-port handler applying a worker's write) would then
// wait until the agent stops, and so would whoever waits for that caller:
// leaving the cluster, or a fenced node's re-join, waits for its RPC
// handlers. The helper goroutine ends when raft answers, or with the
// process when it never does.
func (r *Raft) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return mapRaftErr(err)
	case <-ctx.Done():
		return ctx.Err()
	case <-r.nudgeStop:
		return consensus.ErrShutdown
	}
}

func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("%w: %w", consensus.ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return consensus.ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", consensus.ErrTimeout, err)
	default:
		return err
	}
}

// Apply proposes cmd and waits until it is committed and applied on this
// node, the leader. It returns ErrNotLeader at once on a follower, the FSM's
// business refusal as the error (test it with errors.Is), or the command's
// value. When ctx ends first it returns ctx.Err(); after ErrNotLeader caused
// by a lost leadership, or a ctx error, the entry may still be committed.
// It holds the proposal gate shared (proposals.go) unless ctx holds it: a
// restore under way makes it wait, and it is proposed after the restore,
// or not at all when ctx ends first.
func (r *Raft) Apply(ctx context.Context, cmd command.Command) (any, error) {
	data, err := command.Encode(cmd)
	if err != nil {
		return nil, err
	}
	if r.raft.State() != raft.Leader {
		return nil, consensus.ErrNotLeader
	}
	if err := r.checkGate(cmd); err != nil {
		return nil, err
	}
	if !r.holds(ctx) {
		release, err := r.proposals.shared(ctx)
		if err != nil {
			return nil, fmt.Errorf("apply command type %d: %w", cmd.Type(), err)
		}
		defer release()
		if r.raft.State() != raft.Leader { // it may have waited for a restore
			return nil, consensus.ErrNotLeader
		}
	}
	r.applying.Add(1)
	f := r.raft.Apply(data, r.timeout(ctx))
	err = r.wait(ctx, f)
	r.applying.Add(-1)
	r.nudge()
	if err != nil {
		return nil, fmt.Errorf("apply command type %d: %w", cmd.Type(), err)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return nil, fmt.Errorf("apply command type %d: unexpected response %T", cmd.Type(), f.Response())
	}
	return res.Value, res.Err
}

// IsLeader reports whether this node is the raft leader right now.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the current leader's ID and raft address as this node
// knows them; both are empty when there is no known leader.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// LastContact returns when this node last heard from a leader (zero if
// never since start; not maintained on the leader itself).
func (r *Raft) LastContact() time.Time { return r.raft.LastContact() }

// LeadershipCh delivers true when this node becomes leader and false when it
// stops being leader. It has one slot and keeps only the latest transition
// (raft never blocks on it), so a slow reader must re-check IsLeader. It is
// meant for exactly one consumer: node's leader loop.
func (r *Raft) LeadershipCh() <-chan bool { return r.raft.LeaderCh() }

// Barrier waits until every entry before it is applied to the local store.
// A new leader calls it before reading the store for leader work.
func (r *Raft) Barrier(ctx context.Context) error {
	if err := r.wait(ctx, r.raft.Barrier(r.timeout(ctx))); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

// AddNonvoter adds (or keeps) a server that receives the log without voting.
// Leader only.
func (r *Raft) AddNonvoter(ctx context.Context, id, addr string) error {
	defer r.refreshNonvoters()
	if err := r.wait(ctx, r.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, r.timeout(ctx))); err != nil {
		return fmt.Errorf("add raft nonvoter %s (%s): %w", id, addr, err)
	}
	return nil
}

// AddVoter adds a server as a voter or promotes an existing nonvoter.
// Leader only. The transport stops holding the server's heartbeats before
// raft is asked (consensus/heartbeat): from the new configuration on, the lease
// counts its answers.
func (r *Raft) AddVoter(ctx context.Context, id, addr string) error {
	start := time.Now()
	r.promoting(raft.ServerID(id), true)
	defer r.promoting(raft.ServerID(id), false)
	// A non-voter is promoted only once raft itself has an answer from it
	// newer than the promotion's start (heartbeat.Transport.AwaitReturn
	// says why): its held heartbeat, released by promoting, must come
	// back within the lease, or the new voter would count in the quorum
	// with a contact seconds old and the leader step down.
	if r.thin != nil && r.isNonvoter(raft.ServerID(id)) &&
		!r.thin.AwaitReturn(ctx, raft.ServerID(id), start, max(r.cfg.LeaderLeaseTimeout, time.Millisecond)) {
		return fmt.Errorf("add raft voter %s (%s): %w", id, addr, ErrNoContact)
	}
	f := r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, r.timeout(ctx))
	// A barrier right behind the new configuration. Why: hashicorp/raft
	// (v1.8) hands the configuration entry to replication before it makes
	// the new voter count for commitment (appendConfigurationEntry:
	// dispatchLogs, then commitment.setConfiguration, which starts the
	// new voter's match at 0). An acknowledgement from the new voter that
	// lands in between is dropped, and when the old voters cannot make a
	// quorum without it (one of two cut off) the entry then waits for the
	// next entry to be replicated; without writes, for ever: a CI run of
	// TestRaftPromotedVoterElectedByStaleVoter hung 20 minutes so. The
	// barrier is that next entry. raft answers its future; nothing waits
	// for it.
	_ = r.raft.Barrier(r.timeout(ctx))
	if err := r.wait(ctx, f); err != nil {
		return fmt.Errorf("add raft voter %s (%s): %w", id, addr, err)
	}
	return nil
}

// ErrNoContact: AddVoter found no fresh answer from the non-voter it was to
// promote within the leader's lease; nothing changed, a later try may.
var ErrNoContact = errors.New("no answer from the non-voter within the leader's lease")

// isNonvoter reports whether id is a non-voter of raft's latest
// configuration.
func (r *Raft) isNonvoter(id raft.ServerID) bool {
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s.Suffrage == raft.Nonvoter
		}
	}
	return false
}

// DemoteVoter turns a voter into a nonvoter. Leader only.
func (r *Raft) DemoteVoter(ctx context.Context, id string) error {
	defer r.refreshNonvoters()
	if err := r.wait(ctx, r.raft.DemoteVoter(raft.ServerID(id), 0, r.timeout(ctx))); err != nil {
		return fmt.Errorf("demote raft voter %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a server from the configuration. Leader only.
func (r *Raft) RemoveServer(ctx context.Context, id string) error {
	defer r.refreshNonvoters()
	if err := r.wait(ctx, r.raft.RemoveServer(raft.ServerID(id), 0, r.timeout(ctx))); err != nil {
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	return nil
}

// TransferLeadership asks raft to hand leadership to another voter (before
// a graceful leave). Leader only.
func (r *Raft) TransferLeadership(ctx context.Context) error {
	if err := r.wait(ctx, r.raft.LeadershipTransfer()); err != nil {
		return fmt.Errorf("raft leadership transfer: %w", err)
	}
	return nil
}

// TransferLeadershipTo hands leadership to the voter id at addr: raft
// replicates to it until it holds the leader's log, then tells it to
// start an election (it fails after an election timeout if the voter
// cannot catch up). Leader only.
//
// Why not TransferLeadership: raft picks the most up-to-date voter, and
// autopilot must not hand leadership to a node that cannot persist either
// (autopilot.PlanHandover).
func (r *Raft) TransferLeadershipTo(ctx context.Context, id, addr string) error {
	if err := r.wait(ctx, r.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))); err != nil {
		return fmt.Errorf("raft leadership transfer to %s: %w", id, err)
	}
	return nil
}

// Servers returns the latest raft configuration known to this node.
func (r *Raft) Servers() ([]Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", mapRaftErr(err))
	}
	conf := f.Configuration()
	out := make([]Server, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// State returns "leader", "follower", "candidate" or "shutdown".
func (r *Raft) State() string { return strings.ToLower(r.raft.State().String()) }

// LastIndex is the index of the last entry in this node's log.
func (r *Raft) LastIndex() uint64 { return r.raft.LastIndex() }

// Loaded reports whether this node's replica holds what its own log held
// when raft started. Raft applies the entries after its last snapshot only
// once a leader says they are committed: a node restarted without a quorum
// serves its snapshot's state (empty, before the first one) for as long as
// no leader is found, which read as "every service is gone". It returns
// the index its log held and the index applied when it does not. Once the
// replica has applied that far, or has caught up with a leader's commit
// index, it stays loaded.
func (r *Raft) Loaded() (held, applied uint64, ok bool) {
	if r.loaded.Load() {
		return 0, 0, true
	}
	applied = r.raft.AppliedIndex()
	caughtUp := false
	if id, _ := r.Leader(); id != "" {
		commit := r.raft.CommitIndex()
		caughtUp = commit > 0 && applied >= commit
	}
	if applied >= r.bootHeld || caughtUp {
		r.loaded.Store(true)
		return 0, 0, true
	}
	return r.bootHeld, applied, false
}

// AppliedIndex is the index of the last entry raft applied, counting the
// entries that never reach the store (barriers, no-ops, configuration
// changes): it can be above the store's index.
func (r *Raft) AppliedIndex() uint64 { return r.raft.AppliedIndex() }

// CaughtUp reports whether the store holds every command in this node's
// log. Entries raft writes for itself (barriers, the commit nudge's among
// them, no-ops, configuration changes) never reach the store, so a log
// that ends with them counts as caught up once the commands before them
// are applied; comparing the store's index with LastIndex would wait for
// the next write. It says nothing of entries this node has not received.
func (r *Raft) CaughtUp() bool {
	applied := r.store.Index()
	for i := r.raft.LastIndex(); i > applied; i-- {
		var l raft.Log
		if err := r.logs.GetLog(i, &l); err != nil {
			return false // compacted or unreadable: cannot tell
		}
		if l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}

// ReplayEnd is the store index this node's replica reaches once it has
// applied its own log: the index of the log's last command, or, when no
// command follows the last snapshot, the store's index now (raft restored
// that snapshot before New returned). Why not LastIndex: the entries raft
// writes for itself (no-ops, barriers, configuration changes) never reach
// the store, and a log ends with them after most restarts (the no-op of
// the term the node last saw), so a store index compared with LastIndex
// stayed below it until the next write, and node/events dropped that
// write's news as replayed history.
func (r *Raft) ReplayEnd() uint64 {
	floor := r.store.Index()
	for i := r.raft.LastIndex(); i > floor; i-- {
		var l raft.Log
		if err := r.logs.GetLog(i, &l); err != nil {
			break // compacted into the snapshot the store holds
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return floor
}

// Synced reports whether this node knows a leader and its store holds
// every command in its log (CaughtUp): the loops that act on what the
// replica does not hold (a task not listed, no encrypted network left)
// wait for it.
func (r *Raft) Synced() bool {
	leader, _ := r.Leader()
	return leader != "" && r.CaughtUp()
}

// Stats returns raft's diagnostic counters (for `shoal status` and
// debugging), plus heartbeats_sent and heartbeats_held: the heartbeats this
// node sent as leader and the calls of raft's it held until the follower's
// next real heartbeat was due, heartbeats_kept: the heartbeats to
// non-voters sent in a call kept after an earlier one, and appends_answered_kept: the idle appends
// to non-voters it answered itself (consensus/heartbeat).
func (r *Raft) Stats() map[string]string {
	st := r.raft.Stats()
	if r.thin != nil {
		st["heartbeats_sent"] = strconv.FormatUint(r.thin.Sent(), 10)
		st["heartbeats_held"] = strconv.FormatUint(r.thin.Held(), 10)
		st["heartbeats_kept"] = strconv.FormatUint(r.thin.Kept(), 10)
		st["appends_answered_kept"] = strconv.FormatUint(r.thin.AnsweredKept(), 10)
	}
	return st
}

// HeardFrom is when this node, as leader, last got an answer from
// follower id to an AppendEntries (a heartbeat or a replication
// request); zero when it never did or the transport is not
// thinned. An answer means the follower's agent was alive and reachable
// over the cluster port then: the leader asks it before it believes
// gossip that the node is dead (node/leaderloop).
func (r *Raft) HeardFrom(id string) time.Time {
	if r.thin == nil {
		return time.Time{}
	}
	return r.thin.HeardFrom(raft.ServerID(id))
}

// TracksContact reports whether HeardFrom knows when followers answered
// (the transport is thinned); without it HeardFrom is always zero.
func (r *Raft) TracksContact() bool { return r.thin != nil }

// VerifyLeader asks a quorum whether this node is still the leader, with
// every heartbeat it triggers sent at once, none held for its beat
// (consensus/heartbeat). Shoal's consistent reads use a Barrier instead;
// this is for a caller that wants raft's check.
func (r *Raft) VerifyLeader(ctx context.Context) error {
	if r.thin != nil {
		r.thin.ForceOn()
		defer r.thin.ForceOff()
	}
	if err := r.wait(ctx, r.raft.VerifyLeader()); err != nil {
		return fmt.Errorf("raft verify leader: %w", err)
	}
	return nil
}

// Snapshot forces a snapshot now (tests, and before a planned shutdown).
func (r *Raft) Snapshot() error {
	if err := r.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft snapshot: %w", mapRaftErr(err))
	}
	return nil
}

// Shutdown stops raft, then closes the transport and the log store. It is
// idempotent; later calls return the first result.
func (r *Raft) Shutdown() error {
	r.shutdownOnce.Do(func() {
		var errs []error
		close(r.nudgeStop)
		if r.watch != nil {
			r.watch.stop()
		}
		if r.cut != nil {
			r.cut.Cut()
		}
		if r.thin != nil {
			// raft's shutdown waits for its heartbeat goroutines, which
			// may be held in the transport (consensus/heartbeat).
			r.thin.StopHolding()
			r.raft.DeregisterObserver(r.observer)
		}
		if err := r.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		<-r.nudgeDone // it stops waiting for its barrier once nudgeStop is closed
		<-r.leaderDone
		for _, c := range r.closers {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft storage: %w", err))
			}
		}
		r.shutdownErr = errors.Join(errs...)
	})
	return r.shutdownErr
}
