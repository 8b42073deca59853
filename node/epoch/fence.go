// Package epoch is a cluster instance's epoch after --force-new-cluster:
// its file beside the raft directory, the fence that judges the epochs
// peers present and learns of newer ones, and the move of a fenced node's
// raft state aside. The agent (node) decides who may fence it, probes the
// peers that gossip a newer epoch and re-joins once fenced.
package epoch

// Fencing after --force-new-cluster (the why is in consensus/epoch.go).
//
// Every cluster instance of an agent runs at one epoch, read from
// DATA/cluster/epoch.json at start (0 when absent) and raised there by
// --force-new-cluster before raft rewrites its configuration. The epoch is
// fixed for the life of the instance: it only changes by starting the
// cluster half again. It travels
//
//   - in gossip metadata: a member of another epoch is not alive for this
//     node (no admission, no voter, no backends, marked down by the leader);
//   - on every raft connection: right after the protocol byte the dialer
//     writes its epoch (8 bytes, big endian) and the acceptor answers with
//     its own; either side closes the connection unless they are equal.
//     So a returning voter of the old configuration never reaches the
//     recovered node's raft: no RequestVote with a higher term, no
//     AppendEntries from a leader of the old configuration.
//
// A node that meets a newer epoch on a raft connection (the peer's answer,
// or its dial) from a voter of its own configuration is fenced: its raft
// history lost against the recovered cluster's. Only a voter can fence:
// the survivor that ran --force-new-cluster was one, and a node's
// certificate must not let it wipe its peers' state. A newer epoch in
// gossip (which any key holder can forge) is only a hint: the node then
// dials that peer's cluster port, where mutual TLS names the peer.
//
// A fenced node stops its cluster half, moves DATA/cluster/raft aside,
// records the newer epoch and starts again with no raft state but its
// identity (node ID, certificate, gossip key): the recovered leader
// re-admits it as a non-voter (admitMissing) and autopilot may promote it.
// Its replica is rebuilt from the leader, and its reconciler then stops the
// containers of tasks that were rescheduled while it was away.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
)

// File holds this node's epoch, beside (not inside) the raft directory
// that fencing moves aside.
const File = "epoch.json"

type record struct {
	Epoch uint64 `json:"epoch"`
}

// Read returns the epoch recorded in dir, 0 when there is none.
func Read(dir string) (uint64, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	switch {
	case err == nil:
		return rec.Epoch, nil
	case errors.Is(err, os.ErrNotExist):
		return 0, nil
	default:
		return 0, fmt.Errorf("read cluster epoch: %w", err)
	}
}

// Write records epoch in dir (atomically: temp file, fsync, rename).
func Write(dir string, epoch uint64) error {
	b, err := json.MarshalIndent(record{Epoch: epoch}, "", "  ")
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(dir, File), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("write cluster epoch %d: %w", epoch, err)
	}
	return nil
}

// Fence is one cluster instance's epoch and what it learnt of newer ones.
// A nil *Fence is epoch 0 and never fenced (tests that build a mux alone).
// All methods but Watch are safe for concurrent use and never block.
//
// It is the fence node/membership asks about the epoch in each member's
// metadata (Local, Hint: membership.Fence) and the one the cluster port's
// Raft handshake presents and judges (Local, Check: clusterport.Fence).
type Fence struct {
	// epoch is fixed once the instance runs; SettleForced may still raise
	// it between raft's recovery and the first connection.
	epoch atomic.Uint64

	once  sync.Once
	ch    chan struct{} // closed when a trusted newer epoch is first seen
	hints chan string   // cluster addresses of peers gossiping a newer epoch

	mu       sync.Mutex
	mayFence func(peerID string) bool // nil: anyone may (tests)
	newer    uint64                   // the newest trusted epoch seen, from whom
	from     string
}

// NewFence returns a fence at epoch that anyone may fence until Trust.
func NewFence(epoch uint64) *Fence {
	f := &Fence{ch: make(chan struct{}), hints: make(chan string, 1)}
	f.epoch.Store(epoch)
	return f
}

// Trust sets who may fence this node (the voters of its configuration).
func (f *Fence) Trust(mayFence func(peerID string) bool) {
	f.mu.Lock()
	f.mayFence = mayFence
	f.mu.Unlock()
}

// Local is this instance's epoch.
func (f *Fence) Local() uint64 {
	if f == nil {
		return 0
	}
	return f.epoch.Load()
}

// Check judges the epoch a peer presented on a mutually authenticated raft
// connection. A newer one from a peer this node trusts marks it fenced.
func (f *Fence) Check(peer string, remote uint64) consensus.EpochVerdict {
	v := consensus.CompareEpochs(f.Local(), remote)
	if v != consensus.EpochSelfStale || f == nil {
		return v
	}
	f.mu.Lock()
	trusted := f.mayFence == nil || f.mayFence(peer)
	if trusted && remote > f.newer {
		f.newer, f.from = remote, peer
	}
	f.mu.Unlock()
	if trusted {
		f.once.Do(func() { close(f.ch) })
	}
	return v
}

// Hint records that a peer gossips a newer epoch; Watch checks it over the
// peer's cluster port. The latest hint wins; it never blocks.
func (f *Fence) Hint(clusterAddr string) {
	if f == nil {
		return
	}
	select {
	case f.hints <- clusterAddr:
	default:
		select { // replace the pending hint with this one
		case <-f.hints:
		default:
		}
		select {
		case f.hints <- clusterAddr:
		default:
		}
	}
}

// Fenced is closed once a trusted peer with a newer epoch was seen (nil on
// a nil fence: never).
func (f *Fence) Fenced() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.ch
}

// Newest returns the newest trusted epoch seen and the peer that showed it.
func (f *Fence) Newest() (uint64, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newer, f.from
}

// Watch waits until the fence is fenced (true) or ctx ends (false). Gossip
// hints are checked with probe (the raft epoch handshake on the peer's
// cluster port), at most one every ProbeInterval; a probe's failure other
// than an epoch mismatch is logged at debug level.
func (f *Fence) Watch(ctx context.Context, probe func(clusterAddr string) error, log *slog.Logger) bool {
	var lastProbe time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case <-f.Fenced():
			return true
		case addr := <-f.hints:
			if wait := ProbeInterval - time.Since(lastProbe); wait > 0 {
				select {
				case <-ctx.Done():
					return false
				case <-time.After(wait):
				}
			}
			lastProbe = time.Now()
			if err := probe(addr); err != nil && !errors.Is(err, clusterport.ErrEpochMismatch) {
				log.Debug("epoch probe", "addr", addr, "err", err)
			}
		}
	}
}

// ProbeInterval spaces the checks of gossip hints.
const ProbeInterval = time.Second

// MoveRaftAside renames DATA/cluster/raft to raft.fenced-epochN-TIME so the
// node starts without raft state but an operator keeps the old history. A
// missing raft directory is fine (moved already).
func MoveRaftAside(dir string, epoch uint64, now time.Time) error {
	src := filepath.Join(dir, "raft")
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dst := filepath.Join(dir, fmt.Sprintf("raft.fenced-epoch%d-%s", epoch, now.UTC().Format("20060102T150405.000000000")))
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("move stale raft state aside: %w", err)
	}
	return nil
}

// Open returns this instance's fence and the epoch recorded before it
// started. With forceNew the recorded epoch is raised at once, before raft
// rewrites its configuration: from then on this node never exchanges raft
// traffic with the configuration it abandons, even after a crash.
func Open(dir string, forceNew bool) (*Fence, uint64, error) {
	recorded, err := Read(dir)
	if err != nil {
		return nil, 0, err
	}
	epoch := recorded
	if forceNew {
		epoch = consensus.NextEpoch(recorded, 0)
		if err := Write(dir, epoch); err != nil {
			return nil, 0, err
		}
	}
	return NewFence(epoch), recorded, nil
}

// SettleForced raises a forced instance's epoch above the one of the
// recovered state too (the local file may be behind it). It runs after raft
// restored the state and before the cluster port accepts connections.
func SettleForced(dir string, f *Fence, recorded uint64, state *consensus.ClusterState) error {
	var inState uint64
	if state != nil {
		inState = state.Epoch
	}
	epoch := consensus.NextEpoch(recorded, inState)
	if epoch == f.Local() {
		return nil
	}
	if err := Write(dir, epoch); err != nil {
		return err
	}
	f.epoch.Store(epoch)
	return nil
}
