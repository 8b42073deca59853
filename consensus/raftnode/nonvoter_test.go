package raftnode

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
)

// bootstrapFirst makes c's first node a cluster of one, with its
// cluster and node records, and returns it once it leads.
func (c *raftCluster) bootstrapFirst() *clusterNode {
	c.t.Helper()
	first := c.nodes[0]
	if err := first.r.BootstrapSelf(); err != nil {
		c.t.Fatal(err)
	}
	l := c.leader(first)
	if _, err := l.r.Apply(context.Background(), command.BootstrapCluster{Cluster: testCluster(), Node: testNode(first.id, first.id)}); err != nil {
		c.t.Fatal(err)
	}
	return l
}

// formNonvoters forms c with its last k nodes left non-voters.
func (c *raftCluster) formNonvoters(k int) *clusterNode {
	c.t.Helper()
	l := c.bootstrapFirst()
	ctx := context.Background()
	for i, n := range c.nodes[1:] {
		if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode(n.id, n.id)}); err != nil {
			c.t.Fatal(err)
		}
		if err := l.r.AddNonvoter(ctx, n.id, string(n.trans.LocalAddr())); err != nil {
			c.t.Fatal(err)
		}
		if i+1 < len(c.nodes)-k {
			if err := l.r.AddVoter(ctx, n.id, string(n.trans.LocalAddr())); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	return l
}

// hbEvents records the heartbeats a leader's transport handled, per peer.
type hbEvents struct {
	mu sync.Mutex
	ev map[string][]hbEvent
}

type hbEvent struct {
	at  time.Time
	err error
}

func (h *hbEvents) observe(id raft.ServerID, at time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ev == nil {
		h.ev = map[string][]hbEvent{}
	}
	h.ev[string(id)] = append(h.ev[string(id)], hbEvent{at, err})
}

// count is how many heartbeats to id were sent in [from, to), and how many
// of those succeeded.
func (h *hbEvents) count(id string, from, to time.Time) (all, ok int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.ev[id] {
		if e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		all++
		if e.err == nil {
			ok++
		}
	}
	return all, ok
}

// TestRaftNonvoterHeartbeatsHeld: with the production timings, raft's
// calls to a non-voter are held, so a real heartbeat reaches it once per
// nonvoterInterval and raft's goroutine for it makes no call in between
// (every call it makes ends as one heartbeat on the wire), while the
// voters' are held to one per interval, and the leader keeps its
// leadership.
func TestRaftNonvoterHeartbeatsHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("4 s idle")
	}
	def := DefaultConfig()
	events := map[string]*hbEvents{}
	c := newRaftClusterWith(t, 4, func(cfg *Config) {
		cfg.Timing = def.Timing
		cfg.CommitTimeout = def.CommitTimeout
		h := &hbEvents{}
		events[cfg.NodeID] = h
		cfg.heartbeatObserve = h.observe
	})
	l := c.formNonvoters(1)
	nv := c.nodes[3]
	slow := def.nonvoterInterval()
	// Two heartbeats to the non-voter sent in its kept call: two slow
	// intervals past its first, by when the voters' heartbeats, which the
	// promotions of formNonvoters left off the beats for a round or two,
	// fall on them again (the window counts them against the beats).
	waitFor(t, "two kept heartbeats to the non-voter", func() bool {
		n, _ := strconv.Atoi(l.r.Stats()["heartbeats_kept"])
		return n >= 2
	})
	term := l.r.Stats()["term"]
	start := time.Now()
	for time.Since(start) < 4*time.Second {
		if !l.r.IsLeader() {
			t.Fatalf("leader %s lost its leadership after %v", l.id, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond) // polling the condition over the idle window
	}
	end := time.Now()
	if got := l.r.Stats()["term"]; got != term {
		t.Fatalf("term moved from %s to %s", term, got)
	}
	h := events[l.id]
	all, ok := h.count(nv.id, start, end)
	limit := int(end.Sub(start)/slow) + 1
	t.Logf("non-voter %s: %d real heartbeats (%d answered) in %v (limit %d)", nv.id, all, ok, end.Sub(start).Round(time.Millisecond), limit)
	if all > limit || ok == 0 {
		t.Errorf("non-voter %s: %d heartbeats sent (%d answered) in %v, want 1 to %d (one per %v)",
			nv.id, all, ok, end.Sub(start), limit, slow)
	}
	vlimit := int(end.Sub(start)/def.HeartbeatInterval) + 1
	for _, v := range c.nodes[1:3] {
		all, ok := h.count(v.id, start, end)
		t.Logf("voter %s: %d real heartbeats (%d answered)", v.id, all, ok)
		if all > vlimit || ok == 0 {
			t.Errorf("voter %s: %d heartbeats sent (%d answered), want 1 to %d (one per %v)", v.id, all, ok, vlimit, def.HeartbeatInterval)
		}
	}
	if since := time.Since(nv.r.LastContact()); since > def.HeartbeatTimeout {
		t.Errorf("non-voter last heard from the leader %v ago", since)
	}
	if lid, _ := nv.r.Leader(); lid != l.id {
		t.Errorf("non-voter knows leader %q, want %s", lid, l.id)
	}
	if _, err := l.r.Apply(context.Background(), command.UpsertNode{Node: testNode("w", "w")}); err != nil {
		t.Fatalf("write with a held non-voter: %v", err)
	}
	c.waitReplicated(l.store.Index(), c.nodes[1:]...)
}

// TestRaftHeldNonvoterPromotedAndShutdown: a leader whose calls to its
// non-voters are held for an hour commits writes (the non-voters receive
// them: replication is never held), keeps its lease across the promotion
// of one of them to the only other voter (the held call ends at once; if
// it did not, no heartbeat would reach the new voter and the lease would
// run out: CommitTimeout is long here, so nothing else would), and shuts
// down at once with a call still held.
func TestRaftHeldNonvoterPromotedAndShutdown(t *testing.T) {
	events := &hbEvents{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = 2 * time.Second
		cfg.nonvoterHold = time.Hour
		if cfg.NodeID == "n1" {
			cfg.heartbeatObserve = events.observe
		}
	})
	l := c.formNonvoters(2)
	if l.id != "n1" {
		t.Fatalf("leader %s, want n1", l.id)
	}
	n2, n3 := c.nodes[1], c.nodes[2]
	held := func() int {
		n, _ := strconv.Atoi(l.r.Stats()["heartbeats_held"])
		return n
	}
	waitFor(t, "calls held to both non-voters", func() bool { return held() >= 2 })
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode(fmt.Sprintf("w%d", i), "w")}); err != nil {
			t.Fatalf("write %d with held non-voters: %v", i, err)
		}
	}
	c.waitReplicated(l.store.Index(), n2, n3)

	term := l.r.Stats()["term"]
	promoted := time.Now()
	if err := l.r.AddVoter(ctx, n2.id, string(n2.trans.LocalAddr())); err != nil {
		t.Fatalf("promote %s: %v", n2.id, err)
	}
	waitFor(t, "a real heartbeat to the promoted "+n2.id, func() bool {
		_, sent := events.count(n2.id, promoted, time.Now().Add(time.Hour))
		return sent > 0
	})
	// Lease 150 ms: 20 of them with n2 the only other voter.
	until := time.Now().Add(3 * time.Second)
	for time.Now().Before(until) {
		if !l.r.IsLeader() {
			t.Fatal("the leader lost its lease after promoting a held non-voter")
		}
		time.Sleep(20 * time.Millisecond) // polling the condition over the window
	}
	// A step-down and re-election between two polls shows in the term.
	if got := l.r.Stats()["term"]; got != term {
		t.Fatalf("term moved from %s to %s across the promotion: the leader lost its lease", term, got)
	}
	if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode("after", "w")}); err != nil {
		t.Fatalf("write after the promotion: %v", err)
	}

	// n3 is still a non-voter, its call held.
	waitFor(t, "a call held to "+n3.id, func() bool { return l.r.thin.Holding() == 1 })
	done := make(chan error, 1)
	go func() { done <- l.r.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown waits for a held heartbeat")
	}
	l.down = true
}

// TestRaftHeldNonvoterRemovedAndDemoted: membership changes of a held
// non-voter never leave raft's heartbeat goroutine for it held past the
// change (the hold here outlasts the test): a removed non-voter's held
// call ends, a voter demoted to non-voter is held, and promoted again its
// held call ends and the leader keeps its lease (the term does not move).
func TestRaftHeldNonvoterRemovedAndDemoted(t *testing.T) {
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = 2 * time.Second
		cfg.nonvoterHold = time.Hour
	})
	l := c.formNonvoters(2)
	n2, n3 := c.nodes[1], c.nodes[2]
	holding := func(n int) func() bool { return func() bool { return l.r.thin.Holding() == n } }
	waitFor(t, "calls held to both non-voters", holding(2))
	ctx := context.Background()
	term := l.r.Stats()["term"]
	if err := l.r.RemoveServer(ctx, n3.id); err != nil {
		t.Fatalf("remove %s: %v", n3.id, err)
	}
	waitFor(t, "the removed non-voter's held call to end", holding(1))
	if err := l.r.AddVoter(ctx, n2.id, string(n2.trans.LocalAddr())); err != nil {
		t.Fatalf("promote %s: %v", n2.id, err)
	}
	waitFor(t, "no call held after the promotion", holding(0))
	if err := l.r.DemoteVoter(ctx, n2.id); err != nil {
		t.Fatalf("demote %s: %v", n2.id, err)
	}
	waitFor(t, "the demoted voter's call held", holding(1))
	if err := l.r.AddVoter(ctx, n2.id, string(n2.trans.LocalAddr())); err != nil {
		t.Fatalf("promote %s again: %v", n2.id, err)
	}
	waitFor(t, "no call held after the second promotion", holding(0))
	if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode("after", "w")}); err != nil {
		t.Fatalf("write after the changes: %v", err)
	}
	if got := l.r.Stats()["term"]; got != term || !l.r.IsLeader() {
		t.Fatalf("term moved from %s to %s (leader %v): the leader lost its lease across the changes", term, got, l.r.IsLeader())
	}
}

// TestRaftNonvoterIdleAppendsAnswered: raft's idle appends to a non-voter
// (CommitTimeout, 300 ms here) are answered by the leader's transport once
// the non-voter took the same one, yet a write still reaches it, and a
// non-voter restarted while idle learns the commit index without a new
// write: its restart fails a call (as the broken connection of a real
// restart does; the in-memory transport is waited on for it), which drops
// the kept answer.
func TestRaftNonvoterIdleAppendsAnswered(t *testing.T) {
	events := map[string]*hbEvents{}
	c := newRaftClusterWith(t, 4, func(cfg *Config) {
		if events[cfg.NodeID] == nil {
			events[cfg.NodeID] = &hbEvents{}
		}
		cfg.heartbeatObserve = events[cfg.NodeID].observe
		// As in production, idle appends come less often than the
		// non-voter's heartbeats (80 ms here): a heartbeat after the
		// restart succeeds before the next idle append is due.
		cfg.CommitTimeout = 300 * time.Millisecond
	})
	l := c.formNonvoters(1)
	nv := c.nodes[3]
	kept := func() int {
		n, _ := strconv.Atoi(l.r.Stats()["appends_answered_kept"])
		return n
	}
	waitFor(t, "an idle append answered by the leader", func() bool { return kept() > 0 })
	ctx := context.Background()
	if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode("w1", "w1")}); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(l.store.Index(), nv)
	before := kept()
	waitFor(t, "idle appends answered again after the write", func() bool { return kept() > before })

	stopped := time.Now()
	c.stop(nv)
	waitFor(t, "a failed heartbeat to the stopped non-voter", func() bool {
		all, ok := events[l.id].count(nv.id, stopped, time.Now())
		return all > ok
	})
	c.start(nv, false)
	c.connectAll()
	c.waitReplicated(l.store.Index(), nv)
	if lid, _ := nv.r.Leader(); lid != l.id {
		t.Fatalf("restarted non-voter knows leader %q, want %s", lid, l.id)
	}
}

// TestRaftNonvoterRestartOverTCP: over the real network transport, a
// non-voter restarted at once, between two heartbeats and with no write
// after it, still learns the commit index and applies the log it holds.
// idleappend.go leans on this: the leader's pooled connection to the old
// process is dead, so a call fails and drops the kept answer (over the
// in-memory transport such a restart passes unseen, and the non-voter
// waited for the kept answer to age out).
func TestRaftNonvoterRestartOverTCP(t *testing.T) {
	type member struct {
		addr  string
		dir   string
		r     *Raft
		store *consensus.Store
	}
	start := func(m *member, id string) {
		t.Helper()
		var ln net.Listener
		waitFor(t, "listening on "+m.addr, func() bool {
			var err error
			ln, err = net.Listen("tcp", m.addr)
			return err == nil
		})
		cfg := testRaftConfig(id)
		cfg.DataDir, cfg.StreamLayer, cfg.TransportTimeout = m.dir, &countingLayer{Listener: ln}, 5*time.Second
		// As in production, idle appends come less often than the
		// non-voter's heartbeats (80 ms here): a heartbeat after the
		// restart succeeds before the next idle append is due.
		cfg.CommitTimeout = 300 * time.Millisecond
		m.store = consensus.NewStore()
		r, err := New(cfg, m.store)
		if err != nil {
			t.Fatal(err)
		}
		m.r = r
		m.addr = ln.Addr().String()
	}
	l, nv := &member{addr: "127.0.0.1:0", dir: raftdirtest.Dir(t)}, &member{addr: "127.0.0.1:0", dir: raftdirtest.Dir(t)}
	start(l, "n1")
	start(nv, "n2")
	t.Cleanup(func() { _ = l.r.Shutdown(); _ = nv.r.Shutdown() })
	if err := l.r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to lead", l.r.IsLeader)
	ctx := context.Background()
	for _, c := range []command.Command{command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "n1")},
		command.UpsertNode{Node: testNode("n2", "n2")}} {
		if _, err := l.r.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.r.AddNonvoter(ctx, "n2", nv.addr); err != nil {
		t.Fatal(err)
	}
	if _, err := l.r.Apply(ctx, command.UpsertNode{Node: testNode("w1", "w1")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to apply every write", func() bool { return nv.store.Index() >= l.store.Index() })
	kept := func() int {
		n, _ := strconv.Atoi(l.r.Stats()["appends_answered_kept"])
		return n
	}
	before := kept()
	waitFor(t, "idle appends to n2 answered by the leader", func() bool { return kept() > before+2 })

	if err := nv.r.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start(nv, "n2")
	if nv.store.Index() >= l.store.Index() {
		t.Fatalf("restarted n2 applied index %d before hearing from the leader", nv.store.Index())
	}
	waitFor(t, "restarted n2 to apply the log it holds", func() bool { return nv.store.Index() >= l.store.Index() })
}
