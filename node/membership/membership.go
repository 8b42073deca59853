// Package membership is the agent's gossip (hashicorp/memberlist): the
// tuning, what each node says about itself (Meta), who is alive now, and
// coalescing change signals for the agent's loops. It does not import node:
// what it needs of the agent (its cluster epoch) comes in through Config.
package membership

// Membership is gossip (hashicorp/memberlist) tuned for a LAN of small,
// busy machines: a host that dies must be declared dead on every node within
// about a second, and a 2-core machine under CPU load must not be.
//
// The arithmetic (Timing, tested in membership_test.go): some member probes
// a given node every ProbeInterval on average, so a dead node's first failed
// probe starts PI/2 after the death on average; the probe is suspect at the
// end of its interval (memberlist waits out the interval for indirect acks,
// so a ProbeTimeout above the interval is the interval: with the old 400 ms
// timeout over a 200 ms interval the indirect probes were asked and judged
// in the same instant); the suspicion then lasts SuspicionMult*PI*
// max(1,log10(n)). With PI 300 ms, timeout 150 ms and SuspicionMult 1:
// 0.15+0.3+0.3 = 0.75 s expected at n ≤ 10, 0.96 s at 50, 1.05 s at 100.
// The suspicion is short, so what keeps a loaded machine from accusing a
// healthy peer is that the direct ping gets 150 ms and three indirect
// probes (with nacks, Lifeguard) the other 150 ms, and Lifeguard's awareness
// stretching the whole interval (up to 8×) on a prober that is itself slow.
//
// Idle cost (issue 10, measured with pprof, a runtime trace and strace on
// a 3-node idle cluster): an idle agent does almost nothing per event, but
// each wake-up costs ~0.2 ms of CPU here (the goroutine hand-offs, sysmon
// spinning back up, the UDP or TLS path through two network namespaces).
// So what counts is wake-ups per second, not bytes: the prober's tick, the
// target's ping and the prober's ack make ~3 per ProbeInterval per node,
// and every GossipInterval one more, even with nothing to send. At 200 ms
// and 100 ms that was 25 of an idle follower's ~45 wake-ups a second; at
// 300 ms and 300 ms it is 13, and detection got faster (0.90 s median
// against 1.09 s, node-down bench, same load). Gossip ticks every other
// probe (600 ms): an idle tick finds nothing to send, and what there is to
// send (suspect, dead, alive) does not wait for it: memberlist piggybacks
// pending broadcasts on every ping and ack too, so a verdict still leaves
// within a probe interval. 11.7 wake-ups a second; a runtime trace of an
// idle follower: memberlist's tick goroutine 6.6 -> 4.8 wake-ups a second,
// node-down detection 0.98 s median (0.89-1.24) against 1.02 (0.90-1.13),
// 5 kills each, same machine. Compression is off: pings
// and acks are tens of bytes, and compressing each was 10 % of an idle
// agent's CPU (a peer that compresses is still understood).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

var (
	// ErrUnknownMember is returned for a message to a node gossip does not know.
	ErrUnknownMember = errors.New("not a gossip member")
	// ErrWrongAddress: a member announced itself under the name of a node
	// of the node table from another gossip address than that node's
	// record (NotifyAlive refuses it).
	ErrWrongAddress = errors.New("gossip name used from another address than its node record's")
)

// Fence is the part of the agent's cluster-epoch fence that gossip needs
// (node/epoch): this node's epoch, and where to send a hint that a peer
// gossips a newer one. Its methods must not block (memberlist callbacks
// call them).
type Fence interface {
	Local() uint64
	Hint(clusterAddr string)
}

// Timing is gossip's timers (see the arithmetic at the top of this file).
type Timing struct {
	// ProbeInterval: each member probes one other member this often.
	ProbeInterval time.Duration
	// ProbeTimeout is how long the direct ping waits for its ack before
	// indirect probes are asked; it must leave them part of the interval.
	ProbeTimeout time.Duration
	// SuspicionMult scales the suspicion that follows a failed probe:
	// SuspicionMult*ProbeInterval*max(1,log10(n)).
	SuspicionMult int
	// GossipInterval is how often a member gossips pending broadcasts
	// (and wakes up to find none when idle).
	GossipInterval time.Duration
}

// DefaultTiming is gossip's timing under the fast profile, what New uses
// unless told otherwise. Gossip is no longer what finds a dead host
// quickly: the leader's raft does (node/leaderloop's silence.go: a node
// raft has heard nothing from for 0.9 s, fast, or 1.8 s, tolerant, is
// marked down), and so does a follower's watch on its leader (raftnode's
// watch.go, which starts the quick election gossip's verdict used to).
// Gossip keeps membership, each node's metadata, the key rotation, and a
// second opinion on a death (a host that dies again before raft heard it
// back, a node raft never reached): its verdict still marks a node down,
// in 2-2.25 s.
//
// So its probes can be slow. The old fast timing (300 ms probes, 150 ms
// ping, gossip every 600 ms: 0.75 s expected detection) was 11.7 of an idle
// follower's wake-ups a second; 800 ms probes were 4.4 (a gossip tick
// every other probe: pending broadcasts ride every ping and
// ack anyway). An idle 3-node fast cluster (FootprintIdle3, schedstat,
// side by side with the old timing and without raft's verdicts): median
// agent 0.435 -> 0.301 % of a core, sum 1.58 -> 1.18 %. On the beats
// (900 ms), most of those wake-ups merge with raft's.
//
// Why at least 400 ms for each half of a probe: the tolerant profile's
// numbers, which let 100 agents on 2 cores (2 % of a core each) stay
// calm. The old fast profile's 150 ms ping and 300 ms suspicion could not
// tell a starved agent from a dead one there: its false suspicions fed a
// gossip storm (suspect, dead and refuting alive messages, each
// retransmitted to log(n) members, each waking every loop that follows
// membership) that kept the load at 100-260.
//
// Why 900 ms under fast: three of raft's 300 ms heartbeat beats. The agent
// starts gossip on a beat of the cluster-wide grid (Config.UntilBeat,
// node/resync), so every member's probes, the pings it receives and the
// leader's heartbeats arrive in the same wake-ups instead of each in one
// of its own. The direct ping gets 450 ms and the indirect probes the
// other 450 ms; the suspicion lasts 0.9 s per log10(n): 2.25 s expected
// detection up to 10 nodes (2 s at 800 ms), 3.15 s at 100. Raft's silence
// (0.9 s) is what finds a dead host first; gossip's verdict alone decides
// only where raft's cannot (a 2-node cluster, a node raft never reached).
var DefaultTiming = Timing{
	ProbeInterval:  900 * time.Millisecond,
	ProbeTimeout:   450 * time.Millisecond,
	SuspicionMult:  1,
	GossipInterval: 1800 * time.Millisecond,
}

// TolerantTiming is gossip's timing under the tolerant profile: 800 ms
// probes, 400 ms each half, gossip every 1.6 s, 2 s expected detection up
// to 10 nodes, 2.8 s at 100. Its raft beats are a second apart, which no
// probe interval within that detection shares, so its probes stay off
// the grid.
var TolerantTiming = Timing{
	ProbeInterval:  800 * time.Millisecond,
	ProbeTimeout:   400 * time.Millisecond,
	SuspicionMult:  1,
	GossipInterval: 1600 * time.Millisecond,
}

// apply sets t on memberlist's config.
func (t Timing) apply(mc *memberlist.Config) {
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.SuspicionMaxTimeoutMult = 4
	mc.GossipInterval = t.GossipInterval
}

// ExpectedDetection is how long after a member of an n-member cluster dies
// the first survivor declares it dead, on average: half a probe interval
// until some member probes it, the interval of that probe (memberlist
// waits it out for indirect acks), then the suspicion. A suspicion that
// waits for confirmations (SuspicionMult > 2) is counted at its shortest.
func (t Timing) ExpectedDetection(n int) time.Duration {
	return t.ProbeInterval/2 + t.ProbeInterval + t.suspicion(n)
}

// EarliestVerdict is the soonest a survivor can declare a dead member
// dead: a probe sent just after the death fails at the end of its
// interval, then the shortest suspicion (n ≤ 10).
func (t Timing) EarliestVerdict() time.Duration {
	return t.ProbeInterval + t.suspicion(1)
}

// suspicion is how long a suspect member of an n-member cluster stays
// suspect (memberlist's suspicionTimeout at its shortest):
// SuspicionMult*ProbeInterval*max(1,log10(n)).
func (t Timing) suspicion(n int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
}

// IdleWakeups is how many times a second gossip wakes an idle member: per
// probe interval its own probe tick, the ack of its probe and the ping of
// the member probing it; per gossip interval one gossip tick.
func (t Timing) IdleWakeups() float64 {
	return 3/t.ProbeInterval.Seconds() + 1/t.GossipInterval.Seconds()
}

// Config is what New needs to start gossip. The timers are not in it: they
// are this package's (see the arithmetic at the top of this file).
type Config struct {
	// Name is this node's ID, its memberlist name.
	Name string
	// BindAddr and BindPort are where gossip listens (TCP and UDP);
	// AdvertiseAddr and AdvertisePort what peers are told.
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int
	// Keys is the gossip keyring, primary first; none: not encrypted.
	Keys [][]byte
	// Fence judges members' epochs; nil counts every member at epoch 0.
	Fence Fence
	// Logger receives memberlist's log lines (nil: discarded).
	Logger *slog.Logger
	// Timing is gossip's timers; the zero value is DefaultTiming.
	Timing Timing
	// UntilBeat, when set, is how long after now the agent's next beat
	// comes (resync.UntilBeat): New starts memberlist's probe and gossip
	// tickers on it, so they tick on the beats (see DefaultTiming).
	// memberlist takes its tickers' phase from Create; it has no other
	// hook for it.
	UntilBeat func(now time.Time) time.Duration
}

// Meta is what every node gossips about itself (≤ 512 bytes).
type Meta struct {
	NodeID      string `json:"id"`
	ClusterPort int    `json:"cp"`
	Subnet      string `json:"sn,omitempty"`
	// Epoch is the node's cluster epoch (node/epoch); absent means 0.
	Epoch uint64 `json:"ep,omitempty"`
	// Version is the node's release (node.Version) and Level the newest
	// command level its binary applies (command.ProtocolLevel); both are
	// absent on releases before the upgrade gate (docs/upgrades.md).
	Version string `json:"v,omitempty"`
	Level   int    `json:"pl,omitempty"`
	// LB is the Raft index this node's load balancer has synced through
	// (node/netloop/lbsync.go): a node that drains a task waits until every live node is
	// past the entry that took the task out (taskplan.DrainStops).
	LB uint64 `json:"lb,omitempty"`
	// DW is the highest Raft index this node's held stops wait for the
	// other load balancers to pass (taskplan.DrainStops), absent while no
	// stop is held. It is the demand that makes the other nodes gossip LB:
	// they do on every change of their load balancer, and past that only
	// while a member's DW is ahead of what they last gossiped
	// (ShouldPublishLB).
	DW uint64 `json:"dw,omitempty"`
	// GK is the fingerprint of the gossip keyring this node applied
	// (Fingerprint): the leader takes the next step of a key
	// rotation only when every live node reports the keyring in the store.
	GK string `json:"gk,omitempty"`
	// Unfit is why this node cannot persist what the cluster gives it
	// (node/diskhealth: "disk full: ..."), absent while it can. The leader
	// places nothing new on such a node and keeps it from voting; older
	// releases ignore it (gossip, not Raft: no protocol level).
	Unfit string `json:"uf,omitempty"`
}

// Membership owns the memberlist instance and turns its callbacks into
// state that other loops poll, and coalescing change signals, one per
// subscriber (the leader loop and the network loop both need every change).
type Membership struct {
	ml *memberlist.Memberlist
	// keyring is gossip's keyring (nil: gossip is not encrypted); keysMu
	// serialises ApplyKeyring.
	keyring *memberlist.Keyring
	keysMu  sync.Mutex

	metaMu sync.Mutex
	meta   []byte // guarded by metaMu
	self   Meta   // guarded by metaMu: what meta gossips
	// lbLocal is the index this node's load balancer has synced through
	// (guarded by metaMu); self.LB is the part of it gossiped last.
	lbLocal  uint64
	pubCh    chan struct{}
	stopCh   chan struct{}
	stopOnce sync.Once
	lbSubs   map[chan struct{}]struct{} // guarded by subMu
	// fence judges the epoch in each member's metadata: a member of
	// another epoch is not alive for this node; a newer one is a hint
	// that this node may be fenced.
	fence Fence

	subMu sync.Mutex
	subs  map[chan struct{}]struct{}

	msgs chan []byte // user messages (removal hints, see node/revocation/removal.go)

	mu    sync.Mutex
	alive map[string]Meta   // node ID → meta of members alive now
	addrs map[string]string // node ID → gossip address, kept after death
	// seen is the last metadata of every member ever alive, kept after
	// death: a down node's release still shows and still gates commands.
	seen map[string]Meta
	// restarts records when a member announced that its agent is
	// stopping cleanly (restartMsgType): a restart or an upgrade, its
	// containers still running. Cleared when it joins again.
	restarts map[string]time.Time
	// known is the node table of the replica as the join loop last read
	// it (SetKnown; nil before), node ID → the gossip address its record
	// holds ("" when it holds none): what seen, addrs and restarts keep of
	// a member that is gone is kept only for a node in it, and a member
	// under a name in it counts only from that address (NotifyAlive).
	known map[string]string
	// name is this node's own gossip name (Config.Name).
	name string
}

// restartMsgType is the first byte of the user message an agent sends every
// member, over TCP, just before it leaves gossip on a clean stop; the rest
// is its node ID. memberlist does not tell a goodbye from a failure to the
// event delegate, so the agent says it.
const restartMsgType byte = 'S'

// maxNodeID bounds the node ID a user message may name (IDs are far shorter).
const maxNodeID = 64

// AnnounceRestart tells every other member that this agent stops cleanly
// and its containers keep running, so the leader holds off marking the node
// down for node.Config.RestartGrace. Best effort, bounded by timeout.
func (m *Membership) AnnounceRestart(self string, timeout time.Duration) {
	msg := append([]byte{restartMsgType}, self...)
	var wg sync.WaitGroup
	for _, n := range m.aliveNodes() {
		if n.Name == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = m.ml.SendReliable(n, msg)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// EverSeen reports whether gossip has ever reported the node alive since
// this agent started.
func (m *Membership) EverSeen(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.addrs[id]
	return ok
}

// New starts gossip on cfg's address with this node's metadata (its
// fingerprint of cfg.Keys is filled in here); Join then contacts peers.
func New(cfg Config, meta Meta) (*Membership, error) {
	m := newMembership(cfg.Fence)
	meta.GK = Fingerprint(cfg.Keys)
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	m.meta = b
	m.self = meta
	m.name = cfg.Name
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	keys := cfg.Keys

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	timing := cfg.Timing
	if timing == (Timing{}) {
		timing = DefaultTiming
	}
	timing.apply(mc)
	mc.EnableCompression = false
	mc.GossipToTheDeadTime = 5 * time.Second
	mc.PushPullInterval = 30 * time.Second // a full state exchange; a backstop, gossip carries changes
	mc.TCPTimeout = 2 * time.Second
	mc.DeadNodeReclaimTime = 1 * time.Second // a restarted node comes back under the same name
	mc.Delegate = m
	mc.Events = m
	mc.Alive = m
	mc.Logger = log.New(&slogWriter{l: logger.With("sub", "gossip")}, "", 0)
	if len(keys) > 0 {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		m.keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	tr, err := newTransport(cfg.BindAddr, cfg.BindPort, mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	mc.Transport = tr
	if cfg.UntilBeat != nil {
		// At most one beat (300 ms under fast), once, at the agent's start.
		time.Sleep(cfg.UntilBeat(time.Now()))
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("start gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	m.ml = ml
	go m.publish()
	return m, nil
}

// NewDetached returns a Membership with no gossip behind it: its member
// view changes only through the memberlist delegate methods called
// directly (NotifyJoin, NotifyMsg, ...), which is how the agent's tests
// stage members. Join, Leave and messages to members must not be used.
func NewDetached(f Fence) *Membership { return newMembership(f) }

func newMembership(f Fence) *Membership {
	return &Membership{
		fence:    f,
		subs:     map[chan struct{}]struct{}{},
		lbSubs:   map[chan struct{}]struct{}{},
		msgs:     make(chan []byte, 16),
		alive:    map[string]Meta{},
		addrs:    map[string]string{},
		pubCh:    make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
		seen:     map[string]Meta{},
		restarts: map[string]time.Time{},
	}
}

// publish gossips this node's metadata again after each change (coalesced).
// UpdateNode waits for the broadcast to spread; a newer one replaces it, so
// the wait is cut short and the newest metadata is always what spreads.
func (m *Membership) publish() {
	for {
		select {
		case <-m.stopCh:
			return
		case <-m.pubCh:
		}
		_ = m.ml.UpdateNode(10 * time.Millisecond) // a timeout only means it is still spreading
	}
}

// SetLBIndex records that this node's load balancer reflects the state up
// to Raft index i and wakes LBSubscribe's subscribers. It gossips the index
// when the pass that reached it changed the load balancer (changed: a drain
// elsewhere may wait on exactly that), or when a member's drain demands it
// (ShouldPublishLB); otherwise the index stays local. Gossiping it after
// every Raft entry, as before, made each entry cost every node an alive
// broadcast that every other node handled and passed on: n² per write,
// the largest part of a follower's work per entry at 30 nodes and
// growing with n. It never blocks; an index not above the last one is
// ignored.
func (m *Membership) SetLBIndex(i uint64, changed bool) {
	m.metaMu.Lock()
	if i <= m.lbLocal {
		m.metaMu.Unlock()
		return
	}
	m.lbLocal = i
	m.metaMu.Unlock()
	m.publishLB(changed)
	m.signalLB()
}

// SetUnfit gossips why this node cannot persist its state ("" once it
// can: node/diskhealth). Unchanged, it does nothing; it never blocks.
func (m *Membership) SetUnfit(reason string) {
	if m.updateSelf(func(self *Meta) bool {
		changed := self.Unfit != reason
		self.Unfit = reason
		return changed
	}) {
		m.signal()
	}
}

// Unfit returns, by node ID, why each member alive now (this node
// included) cannot persist its state; members that can are absent. nil
// on a cluster without gossip (tests).
func (m *Membership) Unfit() map[string]string {
	if m == nil {
		return nil
	}
	var out map[string]string
	add := func(id, why string) {
		if why == "" {
			return
		}
		if out == nil {
			out = map[string]string{}
		}
		out[id] = why
	}
	m.mu.Lock()
	for id, meta := range m.alive {
		add(id, meta.Unfit)
	}
	m.mu.Unlock()
	m.metaMu.Lock()
	if m.self.NodeID != "" {
		if out != nil {
			delete(out, m.self.NodeID)
		}
		add(m.self.NodeID, m.self.Unfit)
	}
	m.metaMu.Unlock()
	return out
}

// SetDrainWait gossips the highest index this node's held stops wait for
// (0: none held), so that the members whose last gossiped load balancer
// index is behind it gossip theirs (ShouldPublishLB). Unchanged, it does
// nothing; it never blocks.
func (m *Membership) SetDrainWait(i uint64) {
	m.updateSelf(func(self *Meta) bool {
		changed := self.DW != i
		self.DW = i
		return changed
	})
}

// updateSelf applies change to this node's gossip meta and, when it
// changed anything, gossips the meta again (with the freshest load
// balancer index, at no extra broadcast). It reports whether it did.
func (m *Membership) updateSelf(change func(self *Meta) bool) bool {
	m.metaMu.Lock()
	if !change(&m.self) {
		m.metaMu.Unlock()
		return false
	}
	m.self.LB = m.lbLocal
	m.encodeSelfLocked()
	m.metaMu.Unlock()
	m.Republish()
	return true
}

// ShouldPublishLB decides whether a node gossips its load balancer index
// local when nothing on its load balancer changed: only when it is ahead
// of what the node gossiped last (published) and some member's drain waits
// on an index past that (demand, the highest DW alive). Pure.
func ShouldPublishLB(published, local, demand uint64) bool {
	return local > published && demand > published
}

// lbDemand is the highest DW of the members alive now.
func (m *Membership) lbDemand() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d uint64
	for _, meta := range m.alive {
		d = max(d, meta.DW)
	}
	return d
}

// publishLB gossips this node's load balancer index when it is ahead of
// what was gossiped last and either force is set (the load balancer
// changed) or a member's drain waits on it (ShouldPublishLB).
func (m *Membership) publishLB(force bool) {
	var demand uint64
	if !force {
		demand = m.lbDemand()
	}
	m.metaMu.Lock()
	publish := force && m.lbLocal > m.self.LB || ShouldPublishLB(m.self.LB, m.lbLocal, demand)
	if publish {
		m.self.LB = m.lbLocal
		m.encodeSelfLocked()
	}
	m.metaMu.Unlock()
	if publish {
		m.Republish()
	}
}

// ApplyKeyring makes gossip use keys (primary first, as in the store):
// it installs the keys it lacks, switches the primary, then removes the
// keys no longer listed (KeyringPlan), and gossips the fingerprint of the
// result. It reports whether anything changed. Gossip without encryption
// (no keyring at start) cannot be switched on live: it reports no change.
func (m *Membership) ApplyKeyring(keys [][]byte) (bool, error) {
	if m.keyring == nil || len(keys) == 0 {
		return false, nil
	}
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	fp := Fingerprint(keys)
	if m.KeyringFP() == fp {
		return false, nil
	}
	add, primary, remove := KeyringPlan(m.keyring.GetKeys(), keys)
	for _, k := range add {
		if err := m.keyring.AddKey(k); err != nil {
			return false, fmt.Errorf("install gossip key: %w", err)
		}
	}
	if err := m.keyring.UseKey(primary); err != nil {
		return false, fmt.Errorf("use gossip key: %w", err)
	}
	for _, k := range remove {
		if err := m.keyring.RemoveKey(k); err != nil {
			return false, fmt.Errorf("remove gossip key: %w", err)
		}
	}
	m.metaMu.Lock()
	m.self.GK = fp
	m.encodeSelfLocked()
	m.metaMu.Unlock()
	m.Republish()
	return true, nil
}

// encodeSelfLocked re-encodes m.self as the metadata gossip sends next
// (a Meta always encodes; on the impossible error the last one stays).
// metaMu must be held.
func (m *Membership) encodeSelfLocked() {
	if b, err := json.Marshal(m.self); err == nil {
		m.meta = b
	}
}

// Republish gossips this node's metadata again (coalesced, never
// blocks): during a key rotation the leader waits for every node's keyring
// fingerprint, and a lost broadcast would otherwise wait for a push-pull.
func (m *Membership) Republish() {
	select {
	case m.pubCh <- struct{}{}:
	default:
	}
}

// KeyringFP returns the fingerprint of the keyring this node applied last
// ("" when gossip is not encrypted).
func (m *Membership) KeyringFP() string {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.self.GK
}

// LBIndexes returns the load balancer index of every member alive now (0
// for one that never said: an older agent) and of this node.
func (m *Membership) LBIndexes(selfID string) map[string]uint64 {
	m.mu.Lock()
	out := make(map[string]uint64, len(m.alive)+1)
	for id, meta := range m.alive {
		out[id] = meta.LB
	}
	m.mu.Unlock()
	m.metaMu.Lock()
	out[selfID] = m.lbLocal
	m.metaMu.Unlock()
	return out
}

// LBSubscribe is Subscribe for changes of any member's load balancer index
// (this node's included); it also fires on every membership change.
func (m *Membership) LBSubscribe() (<-chan struct{}, func()) { return m.subscribeTo(m.lbSubs) }

// subscribeTo adds a coalescing channel to set (guarded by subMu) and
// returns it with the function that removes it.
func (m *Membership) subscribeTo(set map[chan struct{}]struct{}) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.subMu.Lock()
	set[ch] = struct{}{}
	m.subMu.Unlock()
	return ch, func() {
		m.subMu.Lock()
		delete(set, ch)
		m.subMu.Unlock()
	}
}

func (m *Membership) signalLB() {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	for ch := range m.lbSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// join contacts any of the given gossip addresses; it is fine for some to
// be dead.
func (m *Membership) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	return m.ml.Join(addrs)
}

// AliveSet returns a copy of the members alive now.
func (m *Membership) AliveSet() map[string]Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Meta, len(m.alive))
	for k, v := range m.alive {
		out[k] = v
	}
	return out
}

// Restarting reports whether the member announced a clean stop less than
// grace ago and has not joined since: an agent being restarted or
// upgraded, whose containers keep running (docs/upgrades.md). The leader
// holds off marking it down, and so rescheduling its tasks, for that long.
func (m *Membership) Restarting(id string, grace time.Duration) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.restarts[id]
	return ok && time.Since(at) < grace
}

// VersionOf returns the release a member last advertised ("" when gossip
// never reported it, or it runs a release that does not advertise one).
func (m *Membership) VersionOf(id string) string {
	if m == nil {
		return "" // a cluster without gossip (tests)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[id].Version
}

// PeerLevels returns what gossip last said of each node's protocol level.
func (m *Membership) PeerLevels(ids []string) []command.PeerLevel {
	out := make([]command.PeerLevel, 0, len(ids))
	if m == nil {
		for _, id := range ids {
			out = append(out, command.PeerLevel{ID: id})
		}
		return out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		meta, ok := m.seen[id]
		out = append(out, command.PeerLevel{ID: id, Level: meta.Level, Version: meta.Version, Known: ok})
	}
	return out
}

// PeerAddrs lists the gossip addresses of members known alive.
func (m *Membership) PeerAddrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.addrs))
	for id, a := range m.addrs {
		if _, ok := m.alive[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Leave tells the members this node leaves (a clean stop).
func (m *Membership) Leave(timeout time.Duration) {
	_ = m.ml.Leave(timeout)
}

// Shutdown stops gossip; the Membership is not used after it.
func (m *Membership) Shutdown() {
	m.stopOnce.Do(func() { close(m.stopCh) })
	_ = m.ml.Shutdown()
}

// Subscribe returns a channel that receives (coalesced) a signal after
// every membership change, and a function to stop receiving.
func (m *Membership) Subscribe() (<-chan struct{}, func()) { return m.subscribeTo(m.subs) }

// signal wakes every subscriber; it never blocks (memberlist callbacks
// call it).
func (m *Membership) signal() {
	m.signalLB()
	m.subMu.Lock()
	defer m.subMu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// memberlist.Delegate: must not block.

func (m *Membership) NodeMeta(limit int) []byte {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}

// NotifyMsg records restart announcements and queues a copy of other user
// messages; when the queue is full the message is dropped (senders repeat
// them).
//
// A restart announcement is kept only for a member this node has seen: any
// member may send one, and names it made up would grow the map without
// bound.
func (m *Membership) NotifyMsg(b []byte) {
	if len(b) > 1 && b[0] == restartMsgType {
		if len(b) <= 1+maxNodeID {
			m.noteRestart(string(b[1:]))
		}
		return
	}
	select {
	case m.msgs <- append([]byte(nil), b...):
	default:
	}
}

// noteRestart records a restart announcement from the member id.
func (m *Membership) noteRestart(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[id]; ok {
		m.restarts[id] = time.Now()
	}
}

func (m *Membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *Membership) LocalState(join bool) []byte                { return nil }
func (m *Membership) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate: must not block.

func (m *Membership) NotifyJoin(n *memberlist.Node) {
	m.mu.Lock()
	if m.wrongAddrLocked(n) == "" {
		delete(m.restarts, n.Name) // back (or new): a later stop announces again
	}
	m.mu.Unlock()
	m.upsert(n)
}

// wrongAddrLocked returns the gossip address the node table records for
// n's name when n comes from another one (NotifyAlive), else "". m.mu
// must be held.
func (m *Membership) wrongAddrLocked(n *memberlist.Node) string {
	want := m.known[n.Name]
	if want == "" || n.Name == m.name || memberAddr(n) == want {
		return ""
	}
	return want
}

// memberAddr is n's gossip address as upsert keeps it in addrs.
func memberAddr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}
func (m *Membership) NotifyUpdate(n *memberlist.Node) { m.upsert(n) }
func (m *Membership) NotifyLeave(n *memberlist.Node) {
	m.mu.Lock()
	delete(m.alive, n.Name)
	if _, ok := m.known[n.Name]; m.known != nil && !ok {
		m.forgetLocked(n.Name)
	}
	m.mu.Unlock()
	m.signal()
}

// SetKnown tells gossip which nodes the replica's node table holds, and
// at which gossip address (the join loop calls it every round). It never
// blocks.
//
// It forgets what it kept of the members that are neither alive nor in
// the table, and from then on forgets such a member as it leaves: a
// gossip key holder can join under any number of made-up names, and seen
// and addrs kept each one for good. What a node of the table left behind
// (its release and level for the upgrade gate, its restart announcement,
// EverSeen) stays.
//
// And it binds the names of the table to their addresses: a member alive
// under the name of a node of the table from another address than the
// record's is not alive for this node (NotifyAlive refuses it from now on;
// one accepted before is dropped from the alive set here).
func (m *Membership) SetKnown(nodes []*api.Node) {
	known := make(map[string]string, len(nodes))
	for _, n := range nodes {
		known[n.ID] = recordedGossipAddr(n)
	}
	m.mu.Lock()
	m.known = known
	dropped := false
	for id := range m.alive {
		if want := known[id]; want != "" && id != m.name && m.addrs[id] != want {
			delete(m.alive, id)
			dropped = true
		}
	}
	gone := func(id string) bool {
		_, alive := m.alive[id]
		_, inTable := known[id]
		return !alive && !inTable
	}
	for id := range m.seen {
		if gone(id) {
			m.forgetLocked(id)
		}
	}
	for id := range m.addrs {
		if gone(id) {
			m.forgetLocked(id)
		}
	}
	for id := range m.restarts {
		if gone(id) {
			m.forgetLocked(id)
		}
	}
	m.mu.Unlock()
	if dropped {
		m.signal()
	}
}

// recordedGossipAddr is the gossip address n's record holds, in the form
// upsert keeps member addresses ("" when the record holds no address or
// port: a record written before they were, or a test's).
func recordedGossipAddr(n *api.Node) string {
	ip := net.ParseIP(n.Addr)
	if ip == nil || n.GossipPort <= 0 || n.GossipPort > 65535 {
		return ""
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(n.GossipPort))
}

// NotifyAlive (memberlist.AliveDelegate) refuses an alive message for a
// node of the node table (SetKnown) from another address than the one its
// record holds. Gossip names were not bound to identities: anyone holding
// the gossip key could announce himself under the name of a node dead for
// more than DeadNodeReclaimTime, and every member counted that node alive
// again (its backends stayed in the load balancers, the leader never
// marked it down). Names the table does not hold yet are let through: a
// joiner's record is written before it joins gossip, but this replica
// may not have applied it yet. It must not block: it takes m.mu only.
func (m *Membership) NotifyAlive(peer *memberlist.Node) error {
	m.mu.Lock()
	want := m.wrongAddrLocked(peer)
	m.mu.Unlock()
	if want != "" {
		return fmt.Errorf("%w: %s from %s, its record holds %s", ErrWrongAddress, peer.Name, memberAddr(peer), want)
	}
	return nil
}

// forgetLocked drops what gossip kept of a member that left. m.mu must be
// held.
func (m *Membership) forgetLocked(id string) {
	delete(m.seen, id)
	delete(m.addrs, id)
	delete(m.restarts, id)
}

func (m *Membership) upsert(n *memberlist.Node) {
	meta := decodeMeta(n.Name, n.Meta)
	if v := consensus.CompareEpochs(fenceLocal(m.fence), meta.Epoch); v != consensus.EpochSame {
		// Of the raft configuration that --force-new-cluster abandoned
		// (or of its successor, and then this node may be the stale one:
		// the fence checks that over mutual TLS): not a member until both
		// run at one epoch.
		if v == consensus.EpochSelfStale && meta.ClusterPort > 0 && m.fence != nil {
			m.fence.Hint(net.JoinHostPort(n.Addr.String(), strconv.Itoa(meta.ClusterPort)))
		}
		m.mu.Lock()
		delete(m.alive, n.Name)
		m.mu.Unlock()
		m.signal()
		return
	}
	addr := memberAddr(n)
	m.mu.Lock()
	if m.wrongAddrLocked(n) != "" {
		// Not the node the table names (NotifyAlive): an update of a
		// member accepted before the table was known.
		_, wasAlive := m.alive[n.Name]
		delete(m.alive, n.Name)
		m.mu.Unlock()
		if wasAlive {
			m.signal()
		}
		return
	}
	prev, wasAlive := m.alive[n.Name]
	lbOnly := wasAlive && m.addrs[n.Name] == addr && onlyLBMoved(prev, meta)
	m.alive[n.Name] = meta
	if m.seen == nil {
		m.seen = map[string]Meta{}
	}
	m.seen[n.Name] = meta
	m.addrs[n.Name] = addr
	m.mu.Unlock()
	if meta.DW > prev.DW { // a drain newly waits (prev is zero for a newcomer)
		m.publishLB(false)
	}
	if lbOnly {
		m.signalLB()
		return
	}
	m.signal()
}

// fenceLocal is f's epoch, 0 without a fence.
func fenceLocal(f Fence) uint64 {
	if f == nil {
		return 0
	}
	return f.Local()
}

// onlyLBMoved reports whether a live member's new metadata differs from
// the old in its load balancer index or its drain's demand alone: only the
// drains waiting on LBSubscribe care about those. Waking the general
// subscribers too (the leader loop, the network loop: each reads the whole
// state) made every write cost O(n²) passes across the cluster when every
// node gossiped its index after each entry.
func onlyLBMoved(old, cur Meta) bool {
	old.LB, old.DW = cur.LB, cur.DW
	return old == cur
}

// decodeMeta decodes a peer's gossip metadata (untrusted bytes,
// fuzzed); anything unusable, or metadata naming another node than the
// member, falls back to the member's name alone.
func decodeMeta(name string, b []byte) Meta {
	var meta Meta
	if err := json.Unmarshal(b, &meta); err != nil || meta.NodeID == "" || meta.NodeID != name {
		return Meta{NodeID: name}
	}
	return meta
}

// SendBestEffort sends a user message to the member named id over UDP; a
// lost message is repeated by the caller's next round.
func (m *Membership) SendBestEffort(id string, msg []byte) error {
	for _, n := range m.aliveNodes() {
		if n.Name == id {
			return m.ml.SendBestEffort(n, msg)
		}
	}
	return fmt.Errorf("gossip member %s: %w", id, ErrUnknownMember)
}

// aliveNodes are the members alive now as nodes of their own, built from
// what the event callbacks recorded (alive, addrs) under m.mu. Why not
// memberlist's Members: it hands out pointers to its own records, which
// its packet handler rewrites (address, meta) under a lock the caller
// cannot take, so sending to one raced with every alive message about it
// (seen by the race detector in TestGossipJoinMetadataAndDeath).
func (m *Membership) aliveNodes() []*memberlist.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*memberlist.Node, 0, len(m.alive))
	for id := range m.alive {
		if n, ok := nodeAt(id, m.addrs[id]); ok {
			out = append(out, n)
		}
	}
	return out
}

// nodeAt is a memberlist node named id at addr (IP:port, as memberAddr
// writes it); false when addr is not one.
func nodeAt(id, addr string) (*memberlist.Node, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, false
	}
	ip := net.ParseIP(host)
	p, err := strconv.ParseUint(port, 10, 16)
	if ip == nil || err != nil {
		return nil, false
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return &memberlist.Node{Name: id, Addr: ip, Port: uint16(p)}, true
}

// UserMessages returns the channel of user messages gossip delivered
// (other than restart announcements); NotifyMsg drops them when it is full.
func (m *Membership) UserMessages() <-chan []byte { return m.msgs }

// MemberStates returns memberlist's own state of every member it knows
// (alive, suspect, dead, left), for the metrics.
func (m *Membership) MemberStates() map[string]memberlist.NodeStateType {
	out := map[string]memberlist.NodeStateType{}
	for _, n := range m.ml.Members() {
		out[n.Name] = n.State
	}
	return out
}

// Fingerprint is a short fingerprint of a keyring, order included (the
// primary is part of the state): what nodes gossip to say which keyring
// they applied. It is not secret-revealing: 8 bytes of a SHA-256.
func Fingerprint(keys [][]byte) string {
	if len(keys) == 0 {
		return ""
	}
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte{byte(len(k))})
		h.Write(k)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// KeyringPlan is what a node does to move its gossip keyring from
// installed to desired (primary first): install the keys it lacks, make
// desired[0] primary, then remove the keys no longer listed.
func KeyringPlan(installed, desired [][]byte) (add [][]byte, primary []byte, remove [][]byte) {
	for _, k := range desired {
		if !containsKey(installed, k) && !containsKey(add, k) {
			add = append(add, k)
		}
	}
	if len(desired) > 0 {
		primary = desired[0]
	}
	for _, k := range installed {
		if !containsKey(desired, k) {
			remove = append(remove, k)
		}
	}
	return add, primary, remove
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// slogWriter adapts memberlist's *log.Logger output to slog, demoting its
// chatty DEBUG lines.
type slogWriter struct{ l *slog.Logger }

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	s := string(p)
	s = strings.TrimRight(s, "\n")
	switch {
	case strings.Contains(s, "[DEBUG]"):
		w.l.Debug(s)
	case strings.Contains(s, "[ERR]"):
		w.l.Warn(s)
	case strings.Contains(s, "[WARN]"):
		w.l.Info(s)
	default:
		w.l.Debug(s)
	}
	return len(p), nil
}

// Dedupe returns in without repeats and without drop (this node's own
// address, or "" for none), in order: the gossip peers a join or a
// reconnect is given, which the replica, peers.json and the caller's list
// may each repeat.
func Dedupe(in []string, drop string) []string {
	seen := map[string]bool{drop: true}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ReconnectPick chooses which of the gone nodes (gossip addresses of nodes
// the state lists but gossip does not hold alive) a reconnect round knocks
// on, as Serf's reconnect does: with probability len(gone)/alive, one of
// them (roll in [0,1) decides whether, pick in [0,1) which). Across the
// cluster that is about one knock per gone node per round. Knocking on
// every gone node from every node was alive×gone full-state exchanges per
// round: at 100 agents on two cores, with 17 nodes flagged down by the
// load, 850 a second, which kept up the load that flagged them. One knock
// that gets through heals the whole view: a join exchanges the full state.
func ReconnectPick(gone []string, alive int, roll, pick float64) []string {
	if len(gone) == 0 {
		return nil
	}
	if alive < 1 {
		alive = 1
	}
	if roll >= float64(len(gone))/float64(alive) {
		return nil
	}
	i := min(int(pick*float64(len(gone))), len(gone)-1)
	return gone[i : i+1]
}
