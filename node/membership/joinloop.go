package membership

// The join and reconnect loop of one cluster instance: gossip is joined
// through the known peers, retrying until one answers; then, as Serf's
// reconnect does, the loop keeps knocking on nodes of the replica that
// gossip considers gone, so both sides of a healed partition (or a node
// that was declared dead while it was only slow) find each other again —
// one knock per round at most (ReconnectPick). It also keeps peers.json
// fresh so a restarted node finds its way back.

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/node/resync"
)

// ReconnectInterval is how often gossip retries nodes it considers gone:
// each tick of the resync clock.
const ReconnectInterval = resync.Period

// Replica is what the join loop reads of the replicated state: the nodes
// whose gossip addresses it may knock on.
type Replica interface {
	Nodes() []*api.Node
}

// JoinLoop joins gossip for one cluster instance and reconnects to the
// nodes it loses. Its fields are set before Run and not changed after.
type JoinLoop struct {
	Members *Membership
	// Self is this node's ID, SelfAddr its gossip address; neither is
	// joined.
	Self     string
	SelfAddr string
	// Peers are the gossip addresses known at start (peers.json, and those
	// a join handed over); none means gossip counts as joined.
	Peers   []string
	Replica Replica
	// PeersFile is where the loop keeps the peers it sees (peers.json).
	PeersFile string
	// Resync is the agent's clock; nil runs a ticker of the loop's own.
	Resync *resync.Clock
	Log    *slog.Logger
}

// Run blocks until ctx ends.
func (l *JoinLoop) Run(ctx context.Context) {
	joined := len(l.Peers) == 0
	// Retries are quick until gossip is joined; afterwards the loop runs
	// on the agent's resync clock (ReconnectInterval).
	tick := time.NewTicker(500 * time.Millisecond)
	ticks, stopTicks := tick.C, tick.Stop
	defer func() { stopTicks() }()
	slow := false
	var lastSave, lastReconnect time.Time
	var saved []string // what peers.json holds, sorted
	for {
		// What gossip keeps of members that left is kept for the nodes
		// of the replica only (Membership.SetKnown).
		l.Members.SetKnown(l.Replica.Nodes())
		if !joined {
			cand := JoinOrder(l.Peers, l.Replica.Nodes(), l.Self, l.SelfAddr, func(a []string) {
				rand.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
			})
			if n, err := l.Members.Join(cand[:min(JoinBatch, len(cand))]); n > 0 {
				joined = true
			} else if err != nil {
				l.Log.Debug("gossip join pending", "err", err)
			}
		} else if slow || time.Since(lastReconnect) >= ReconnectInterval {
			lastReconnect = time.Now()
			alive := l.Members.AliveSet()
			gone := l.replicaAddrs(alive)
			if knock := ReconnectPick(gone, len(alive), rand.Float64(), rand.Float64()); len(knock) > 0 {
				if n, _ := l.Members.Join(knock); n > 0 {
					l.Log.Info("gossip reconnected to a node it had lost", "addr", knock[0], "gone", len(gone))
				}
			}
		}
		// Written when the peers changed, not on every round: an idle
		// node does no disk I/O here.
		if time.Since(lastSave) > 5*time.Second {
			if addrs := l.Members.PeerAddrs(); len(addrs) > 1 {
				addrs = Dedupe(addrs, l.SelfAddr)
				sort.Strings(addrs)
				if !slices.Equal(addrs, saved) {
					if err := atomicfile.WriteJSON(l.PeersFile, addrs); err == nil {
						saved = addrs
					}
				}
				lastSave = time.Now()
			}
		}
		if joined && !slow {
			stopTicks()
			ticks, stopTicks = l.Resync.Ticks(ReconnectInterval)
			slow = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// JoinBatch is how many nodes one round of the join loop asks to let this
// node into gossip.
//
// Why not all of them: memberlist's Join exchanges the whole member table
// (a push-pull over TCP and TLS) with every address it is given, not
// just until one answers, and one answer is all a join needs (gossip
// spreads the rest). Given the replica's every node, 100 agents joining
// at once made ~100 push-pulls each: 14 % of the machine's CPU during the
// burst (perf), while the leader, starved, admitted nothing for 17 s.
// Three, so that one or two nodes that are down or still starting do not
// cost a round.
const JoinBatch = 3

// JoinOrder is the order in which the join loop asks nodes to let it into
// gossip: the replica's ready nodes (gossip up, as far as the leader
// knows), then the peers it was given (peers.json, a join's list), then
// the replica's other nodes, each group shuffled (shuffle) so that a burst
// of joiners spreads over the cluster instead of all asking the node they
// joined through. Self (by ID and by address) and repeats are left out.
func JoinOrder(peers []string, nodes []*api.Node, self, selfAddr string, shuffle func([]string)) []string {
	var ready, other []string
	for _, n := range nodes {
		a, ok := nodeGossipAddr(n, self)
		if !ok {
			continue
		}
		if n.Status == api.NodeReady {
			ready = append(ready, a)
		} else {
			other = append(other, a)
		}
	}
	ps := append([]string(nil), peers...)
	for _, g := range [][]string{ready, ps, other} {
		shuffle(g)
	}
	return Dedupe(slices.Concat(ready, ps, other), selfAddr)
}

// replicaAddrs lists the gossip addresses of the other nodes of the
// replica, skipping those in skip (nil: skip none).
func (l *JoinLoop) replicaAddrs(skip map[string]Meta) []string {
	var out []string
	for _, n := range l.Replica.Nodes() {
		a, ok := nodeGossipAddr(n, l.Self)
		if _, skipped := skip[n.ID]; !ok || skipped {
			continue
		}
		out = append(out, a)
	}
	return out
}

// nodeGossipAddr is n's gossip address; false for self and for a record
// without one.
func nodeGossipAddr(n *api.Node, self string) (string, bool) {
	if n.ID == self || n.Addr == "" || n.GossipPort == 0 {
		return "", false
	}
	return net.JoinHostPort(n.Addr, strconv.Itoa(n.GossipPort)), true
}
