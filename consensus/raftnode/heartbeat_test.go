package raftnode

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// hbReq is a heartbeat as raft v1.8.0's heartbeat() builds it.
func hbReq(term uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte("a1")},
		Term:      term,
		Leader:    []byte("a1"),
	}
}

func TestAnswerFromCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const iv = 300 * time.Millisecond
	fresh := &heartbeatAnswer{addr: "a2", term: 5, sentAt: t0,
		resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 9}}
	with := func(mut func(*heartbeatAnswer)) *heartbeatAnswer {
		c := *fresh
		mut(&c)
		return &c
	}
	withReq := func(mut func(*raft.AppendEntriesRequest)) *raft.AppendEntriesRequest {
		r := hbReq(5)
		mut(r)
		return r
	}
	cases := []struct {
		name     string
		req      *raft.AppendEntriesRequest
		addr     raft.ServerAddress
		last     *heartbeatAnswer
		now      time.Time
		interval time.Duration
		forced   bool
		want     bool
	}{
		{"fresh same-term success", hbReq(5), "a2", fresh, t0.Add(100 * time.Millisecond), iv, false, true},
		{"just sent", hbReq(5), "a2", fresh, t0, iv, false, true},
		{"one tick short of the interval", hbReq(5), "a2", fresh, t0.Add(iv - time.Nanosecond), iv, false, true},
		{"first heartbeat to the peer", hbReq(5), "a2", nil, t0, iv, false, false},
		{"answer as old as the interval", hbReq(5), "a2", fresh, t0.Add(iv), iv, false, false},
		{"answer older than the interval", hbReq(5), "a2", fresh, t0.Add(time.Second), iv, false, false},
		{"clock went back", hbReq(5), "a2", fresh, t0.Add(-time.Millisecond), iv, false, false},
		{"thinning off", hbReq(5), "a2", fresh, t0, 0, false, false},
		{"verify in flight", hbReq(5), "a2", fresh, t0, iv, true, false},
		{"new term", hbReq(6), "a2", fresh, t0, iv, false, false},
		{"answer refused", hbReq(5), "a2", with(func(c *heartbeatAnswer) { c.resp.Success = false }), t0, iv, false, false},
		{"answer carried a higher term", hbReq(5), "a2", with(func(c *heartbeatAnswer) { c.resp.Term = 6 }), t0, iv, false, false},
		{"answer to an older term", hbReq(5), "a2", with(func(c *heartbeatAnswer) { c.term = 4 }), t0, iv, false, false},
		{"peer moved", hbReq(5), "a3", fresh, t0, iv, false, false},
		{"carries entries", withReq(func(r *raft.AppendEntriesRequest) { r.Entries = []*raft.Log{{Index: 1}} }), "a2", fresh, t0, iv, false, false},
		{"names a previous entry", withReq(func(r *raft.AppendEntriesRequest) { r.PrevLogEntry, r.PrevLogTerm = 3, 5 }), "a2", fresh, t0, iv, false, false},
		{"carries a commit index", withReq(func(r *raft.AppendEntriesRequest) { r.LeaderCommitIndex = 3 }), "a2", fresh, t0, iv, false, false},
		{"no term", withReq(func(r *raft.AppendEntriesRequest) { r.Term = 0 }), "a2", with(func(c *heartbeatAnswer) { c.term, c.resp.Term = 0, 0 }), t0, iv, false, false},
		{"no leader address", withReq(func(r *raft.AppendEntriesRequest) { r.Addr, r.Leader = nil, nil }), "a2", fresh, t0, iv, false, false},
	}
	for _, tc := range cases {
		if got := answerFromCache(tc.req, tc.addr, tc.last, tc.now, tc.interval, tc.forced); got != tc.want {
			t.Errorf("%s: answerFromCache = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// scriptedTransport answers AppendEntries with resp or err and counts the
// calls that reach it.
type scriptedTransport struct {
	raft.Transport
	resp  raft.AppendEntriesResponse
	err   error
	calls int
}

func (s *scriptedTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress,
	_ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	s.calls++
	if s.err != nil {
		return s.err
	}
	*resp = s.resp
	return nil
}

// TestThinTransportSequence drives the apply half with a clock: what goes
// to the wire, what is answered from the cache, and that a cut-off peer
// gets no cached answer once its last real one is an interval old.
func TestThinTransportSequence(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 7}}
	tt := newThinTransport(inner, 300*time.Millisecond)
	tt.now = func() time.Time { return now }
	cut := errors.New("cut")

	steps := []struct {
		name       string
		advance    time.Duration
		req        *raft.AppendEntriesRequest
		setup      func()
		wantWire   bool
		wantErr    bool
		wantLastLg uint64
	}{
		{name: "first heartbeat is sent", req: hbReq(5), wantWire: true, wantLastLg: 7},
		{name: "next tick is cached", advance: 150 * time.Millisecond, req: hbReq(5), wantLastLg: 7},
		{name: "and the next", advance: 140 * time.Millisecond, req: hbReq(5), wantLastLg: 7},
		{name: "interval over: sent", advance: 10 * time.Millisecond, req: hbReq(5), wantWire: true, wantLastLg: 7},
		{name: "entries always go", advance: time.Millisecond,
			req: func() *raft.AppendEntriesRequest {
				r := hbReq(5)
				r.Entries, r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex = []*raft.Log{{Index: 8}}, 7, 5, 7
				return r
			}(), wantWire: true, wantLastLg: 7},
		{name: "heartbeat still cached after it", advance: time.Millisecond, req: hbReq(5), wantLastLg: 7},
		{name: "new term is sent", advance: time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Term = 6 }, wantWire: true, wantLastLg: 7},
		{name: "then cached in that term", advance: 100 * time.Millisecond, req: hbReq(6), wantLastLg: 7},
		// The peer is cut off: answers within the interval of the last real
		// one may still come from the cache, none after it.
		{name: "cut: within the interval still cached", advance: 150 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.err = cut }, wantLastLg: 7},
		{name: "cut: interval over, the error comes back", advance: 50 * time.Millisecond, req: hbReq(6), wantWire: true, wantErr: true},
		{name: "cut: next tick goes to the wire too", advance: 10 * time.Millisecond, req: hbReq(6), wantWire: true, wantErr: true},
		{name: "back: sent", advance: 10 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.err = nil }, wantWire: true, wantLastLg: 7},
		{name: "back: cached", advance: 10 * time.Millisecond, req: hbReq(6), wantLastLg: 7},
		{name: "refused answer is not cached", advance: 300 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Success = false }, wantWire: true, wantLastLg: 7},
		{name: "so the next is sent", advance: 10 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Success = true }, wantWire: true, wantLastLg: 7},
		{name: "replication sees a higher term", advance: 10 * time.Millisecond,
			req: func() *raft.AppendEntriesRequest {
				r := hbReq(6)
				r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex = 7, 6, 7
				return r
			}(), setup: func() { inner.resp.Term = 7 }, wantWire: true, wantLastLg: 7},
		{name: "which drops the cached answer", advance: 10 * time.Millisecond, req: hbReq(6), wantWire: true, wantLastLg: 7},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.setup != nil {
			st.setup()
		}
		before := inner.calls
		heardBefore := tt.heardFrom("n2")
		var resp raft.AppendEntriesResponse
		err := tt.AppendEntries("n2", "a2", st.req, &resp)
		// Only an answer off the wire is news of the follower (HeardFrom):
		// not one from the cache, not an error.
		wantHeard := heardBefore
		if st.wantWire && !st.wantErr {
			wantHeard = now
		}
		if got := tt.heardFrom("n2"); !got.Equal(wantHeard) {
			t.Fatalf("%s: heard from n2 at %v, want %v", st.name, got, wantHeard)
		}
		if wire := inner.calls > before; wire != st.wantWire {
			t.Fatalf("%s: sent = %v, want %v", st.name, wire, st.wantWire)
		}
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: err = %v", st.name, err)
		}
		if err == nil && resp.LastLog != st.wantLastLg {
			t.Fatalf("%s: LastLog = %d, want %d", st.name, resp.LastLog, st.wantLastLg)
		}
	}
	// A forced heartbeat (VerifyLeader in flight) goes to the wire even
	// with a fresh answer cached.
	var resp raft.AppendEntriesResponse
	inner.resp.Term = 6
	_ = tt.AppendEntries("n2", "a2", hbReq(6), &resp)
	now = now.Add(time.Millisecond)
	tt.force.Add(1)
	before := inner.calls
	_ = tt.AppendEntries("n2", "a2", hbReq(6), &resp)
	if inner.calls != before+1 {
		t.Fatal("forced heartbeat was answered from the cache")
	}
}

// wireCounter counts the heartbeats that reach the inmem transport, per
// target; once cut, every AppendEntries fails, even one whose answer was
// on its way back (as in a real partition).
type wireCounter struct {
	*raft.InmemTransport
	cut atomic.Bool
	mu  sync.Mutex
	n   map[raft.ServerID]int
}

func (w *wireCounter) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) {
		w.mu.Lock()
		w.n[id]++
		w.mu.Unlock()
	}
	err := w.InmemTransport.AppendEntries(id, target, args, resp)
	if w.cut.Load() {
		*resp = raft.AppendEntriesResponse{}
		return errors.New("cut")
	}
	return err
}

func (w *wireCounter) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[raft.ServerID(id)]
}

// TestRaftIdleHeartbeatsThinned: a 3-node cluster with the production
// timings keeps its leader for 10 s of idleness while at most one real
// heartbeat per HeartbeatInterval reaches each follower (raft alone sends
// one every 100–200 ms: 50 or more in 10 s).
func TestRaftIdleHeartbeatsThinned(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s idle")
	}
	def := DefaultConfig()
	counters := map[string]*wireCounter{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = def.HeartbeatTimeout, def.ElectionTimeout
		cfg.LeaderLeaseTimeout, cfg.HeartbeatInterval = def.LeaderLeaseTimeout, def.HeartbeatInterval
		cfg.CommitTimeout = def.CommitTimeout
		w := &wireCounter{InmemTransport: cfg.Transport.(*raft.InmemTransport), n: map[raft.ServerID]int{}}
		counters[cfg.NodeID] = w
		cfg.Transport = w
	})
	l := c.form()
	term := l.r.Stats()["term"]
	w := counters[l.id]
	start := time.Now()
	base := map[string]int{}
	for _, n := range c.nodes {
		base[n.id] = w.count(n.id)
	}
	cachedBefore, _ := strconv.Atoi(l.r.Stats()["heartbeats_cached"])

	const idle = 10 * time.Second
	for time.Since(start) < idle {
		for _, n := range c.nodes {
			if n.r.IsLeader() != (n == l) {
				t.Fatalf("after %v idle: %s leader=%v, want the leader to stay %s", time.Since(start), n.id, n.r.IsLeader(), l.id)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the condition over the idle window
	}
	elapsed := time.Since(start)
	if got := l.r.Stats()["term"]; got != term {
		t.Fatalf("term moved from %s to %s while idle", term, got)
	}
	limit := int(elapsed/def.HeartbeatInterval) + 1
	for _, n := range c.nodes {
		if n == l {
			continue
		}
		sent := w.count(n.id) - base[n.id]
		t.Logf("%s: %d heartbeats on the wire in %v (limit %d)", n.id, sent, elapsed.Round(time.Millisecond), limit)
		if sent > limit {
			t.Errorf("%s: %d heartbeats reached it in %v, want at most %d (one per %v)", n.id, sent, elapsed, limit, def.HeartbeatInterval)
		}
		if sent == 0 {
			t.Errorf("%s: no heartbeat at all", n.id)
		}
		if since := time.Since(n.r.LastContact()); since > def.HeartbeatTimeout {
			t.Errorf("%s: last heard from the leader %v ago", n.id, since)
		}
	}
	cached, _ := strconv.Atoi(l.r.Stats()["heartbeats_cached"])
	if cached <= cachedBefore {
		t.Errorf("no heartbeat answered from the cache (%d before, %d after)", cachedBefore, cached)
	}
}

// TestRaftThinnedPartitionedLeaderStepsDown: cut off from both followers,
// a leader whose heartbeats are thinned still loses its lease and steps
// down, and the others elect a leader that can write.
func TestRaftThinnedPartitionedLeaderStepsDown(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	c.isolate(l)
	waitFor(t, "the partitioned leader to step down", func() bool { return !l.r.IsLeader() })
	var rest []*clusterNode
	for _, n := range c.nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	nl := c.leader(rest...)
	if _, err := nl.r.Apply(context.Background(), command.UpsertNode{Node: testNode("n9", "n9")}); err != nil {
		t.Fatalf("write on the new leader %s: %v", nl.id, err)
	}
}

// TestRaftThinnedCutFollowerGetsNoStaleAnswers: once a follower is cut
// off, the leader answers no heartbeat to it from the cache past
// HeartbeatInterval, while raft keeps asking.
func TestRaftThinnedCutFollowerGetsNoStaleAnswers(t *testing.T) {
	type event struct {
		at     time.Time
		cached bool
		err    error
	}
	var mu sync.Mutex
	events := map[string][]event{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.heartbeatObserve = func(id raft.ServerID, at time.Time, cached bool, err error) {
			mu.Lock()
			events[string(id)] = append(events[string(id)], event{at, cached, err})
			mu.Unlock()
		}
	})
	l := c.form()
	var f *clusterNode
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	waitFor(t, "a cached answer to "+f.id, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events[f.id] {
			if e.cached {
				return true
			}
		}
		return false
	})
	c.isolate(f)
	cutAt := time.Now()
	interval := testRaftConfig("x").HeartbeatInterval
	after := cutAt.Add(interval)
	waitFor(t, "three failed heartbeats to "+f.id+" past the interval", func() bool {
		mu.Lock()
		defer mu.Unlock()
		failed := 0
		for _, e := range events[f.id] {
			if e.at.After(after) && !e.cached && e.err != nil {
				failed++
			}
		}
		return failed >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range events[f.id] {
		if e.cached && !e.at.Before(after) {
			t.Errorf("heartbeat to the cut-off %s answered from the cache %v after the cut (interval %v)", f.id, e.at.Sub(cutAt), interval)
		}
	}
	if !l.r.IsLeader() {
		t.Errorf("leader %s lost its leadership with one follower of two left", l.id)
	}
}

// TestRaftVerifyLeaderSendsRealHeartbeats: VerifyLeader right after the
// leader was cut off must not be confirmed by answers cached before the
// cut.
func TestRaftVerifyLeaderSendsRealHeartbeats(t *testing.T) {
	counters := map[string]*wireCounter{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		// The longest interval allowed, so that the answers the first
		// verify cached are still fresh when the second one runs.
		cfg.HeartbeatInterval = min(cfg.HeartbeatTimeout/2, cfg.LeaderLeaseTimeout)
		w := &wireCounter{InmemTransport: cfg.Transport.(*raft.InmemTransport), n: map[raft.ServerID]int{}}
		counters[cfg.NodeID] = w
		cfg.Transport = w
	})
	l := c.form()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.r.VerifyLeader(ctx); err != nil {
		t.Fatalf("verify a connected leader: %v", err)
	}
	counters[l.id].cut.Store(true)
	c.isolate(l)
	// A heartbeat answered before the cut (cached or real) may still be
	// on its way into raft, and raft counts an answer that lands just as a
	// verify registers (heartbeat.go). Once each follower's heartbeat has
	// gone to the wire after the cut, that call failed and dropped the
	// follower's cached answer, and nothing from before the cut is left
	// to count: from then on no verify may succeed.
	after := map[string]int{}
	for _, n := range c.nodes {
		if n.id != l.id {
			after[n.id] = counters[l.id].count(n.id)
		}
	}
	waitFor(t, "a heartbeat to each follower after the cut", func() bool {
		for id, k := range after {
			if counters[l.id].count(id) <= k {
				return false
			}
		}
		return true
	})
	if err := l.r.VerifyLeader(ctx); err == nil {
		t.Fatal("VerifyLeader confirmed a leader cut off from every follower")
	} else if !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("verify a cut-off leader: %v, want ErrNotLeader", err)
	}
}

// TestThinTransportForgetsGoneServers: a server that stopped answering (it
// left the configuration) is forgotten once forgetAfter has passed, while
// one that answers stays.
func TestThinTransportForgetsGoneServers(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true}}
	tt := newThinTransport(inner, 300*time.Millisecond)
	tt.now = func() time.Time { return now }
	send := func(id raft.ServerID) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := tt.AppendEntries(id, raft.ServerAddress("a-"+id), hbReq(5), &resp); err != nil {
			t.Fatal(err)
		}
	}
	send("gone")
	send("stays")
	for i := 0; i < 3; i++ {
		now = now.Add(forgetAfter / 2)
		send("stays")
	}
	tt.mu.Lock()
	_, heard := tt.heard["gone"]
	_, cached := tt.last["gone"]
	stays := len(tt.heard) == 1 && len(tt.last) == 1
	tt.mu.Unlock()
	if heard || cached {
		t.Fatalf("a server silent for %v is still held (heard %v, cached answer %v)", 3*forgetAfter/2, heard, cached)
	}
	if !stays || tt.heardFrom("stays").IsZero() {
		t.Fatal("the answering server was forgotten")
	}
}
