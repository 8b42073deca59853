package raftnode

import (
	"context"
	"errors"
	"fmt"
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

func TestLastAnswerFresh(t *testing.T) {
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
		if got := lastAnswerFresh(tc.req, tc.addr, tc.last, tc.now, tc.interval, tc.forced); got != tc.want {
			t.Errorf("%s: lastAnswerFresh = %v, want %v", tc.name, got, tc.want)
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

// TestThinTransportSequence drives the apply half with a clock, calling
// only when nothing is held: what goes to the wire, what would be held (the
// pure decision, with the transport's own state), and that a cut-off peer
// is asked again, not held, once its last real answer failed.
func TestThinTransportSequence(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 7}}
	tt := newThinTransport(inner, 300*time.Millisecond)
	tt.beats = beatGrid{} // unaligned: due exactly an interval after the last
	tt.now = func() time.Time { return now }
	cut := errors.New("cut")
	held := func(term uint64) bool {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		_, h := waitForHeartbeat(hbReq(term), "a2", tt.last["n2"], now, tt.interval, tt.beats, false, false, tt.term)
		return h
	}

	steps := []struct {
		name       string
		advance    time.Duration
		req        *raft.AppendEntriesRequest
		setup      func()
		wantHeld   bool // a heartbeat now would be held (nothing is called)
		wantErr    bool
		wantLastLg uint64
	}{
		{name: "first heartbeat is sent", req: hbReq(5), wantLastLg: 7},
		{name: "next tick is held", advance: 150 * time.Millisecond, wantHeld: true},
		{name: "and the next", advance: 149 * time.Millisecond, wantHeld: true},
		{name: "interval over: sent", advance: time.Millisecond, req: hbReq(5), wantLastLg: 7},
		{name: "entries always go", advance: time.Millisecond,
			req: func() *raft.AppendEntriesRequest {
				r := hbReq(5)
				r.Entries, r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex = []*raft.Log{{Index: 8}}, 7, 5, 7
				return r
			}(), wantLastLg: 7},
		{name: "heartbeat still held after it", advance: time.Millisecond, wantHeld: true},
		{name: "new term is sent", advance: time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Term = 6 }, wantLastLg: 7},
		{name: "then held in that term", advance: 100 * time.Millisecond, wantHeld: true},
		{name: "cut: interval over, the error comes back", advance: 200 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.err = cut }, wantErr: true},
		{name: "cut: next tick is not held", advance: 10 * time.Millisecond, req: hbReq(6), wantErr: true},
		{name: "back: sent", advance: 10 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.err = nil }, wantLastLg: 7},
		{name: "back: held", advance: 10 * time.Millisecond, wantHeld: true},
		{name: "refused answer", advance: 290 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Success = false }, wantLastLg: 7},
		{name: "is no reason to hold the next", advance: 10 * time.Millisecond, req: hbReq(6),
			setup: func() { inner.resp.Success = true }, wantLastLg: 7},
		{name: "replication sees a higher term", advance: 10 * time.Millisecond,
			req: func() *raft.AppendEntriesRequest {
				r := hbReq(6)
				r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex = 7, 6, 7
				return r
			}(), setup: func() { inner.resp.Term = 7 }, wantLastLg: 7},
		{name: "which drops the last answer: not held", advance: 10 * time.Millisecond, req: hbReq(6), wantLastLg: 7},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.setup != nil {
			st.setup()
		}
		if st.wantHeld {
			if !held(inner.resp.Term) {
				t.Fatalf("%s: a heartbeat would not be held", st.name)
			}
			continue
		}
		if st.req != nil && isHeartbeat(st.req) && held(st.req.Term) {
			t.Fatalf("%s: the heartbeat would be held", st.name)
		}
		before := inner.calls
		heardBefore := tt.heardFrom("n2")
		var resp raft.AppendEntriesResponse
		err := tt.AppendEntries("n2", "a2", st.req, &resp)
		// Only an answer off the wire is news of the follower (HeardFrom),
		// not an error.
		wantHeard := now
		if st.wantErr {
			wantHeard = heardBefore
		}
		if got := tt.heardFrom("n2"); !got.Equal(wantHeard) {
			t.Fatalf("%s: heard from n2 at %v, want %v", st.name, got, wantHeard)
		}
		if inner.calls != before+1 {
			t.Fatalf("%s: not sent", st.name)
		}
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: err = %v", st.name, err)
		}
		if err == nil && resp.LastLog != st.wantLastLg {
			t.Fatalf("%s: LastLog = %d, want %d", st.name, resp.LastLog, st.wantLastLg)
		}
	}
	// A forced heartbeat (VerifyLeader in flight) goes to the wire even
	// with a fresh answer.
	var resp raft.AppendEntriesResponse
	inner.resp.Term = 6
	_ = tt.AppendEntries("n2", "a2", hbReq(6), &resp)
	now = now.Add(time.Millisecond)
	tt.force.Add(1)
	before := inner.calls
	_ = tt.AppendEntries("n2", "a2", hbReq(6), &resp)
	if inner.calls != before+1 {
		t.Fatal("forced heartbeat was held")
	}
}

func TestBeatGrid(t *testing.T) {
	o := time.Unix(1000, 0)
	g := beatGrid{origin: o, every: 300 * time.Millisecond}
	ms := func(n int) time.Time { return o.Add(time.Duration(n) * time.Millisecond) }
	for _, c := range []struct {
		grid beatGrid
		at   time.Time
		want time.Time
	}{
		{g, ms(0), ms(0)},
		{g, ms(299), ms(0)},
		{g, ms(300), ms(300)},
		{g, ms(1234), ms(1200)},
		{g, ms(-5), ms(-5)}, // before the origin: unaligned
		{beatGrid{}, ms(1234), ms(1234)},
	} {
		if got := c.grid.atOrBefore(c.at); !got.Equal(c.want) {
			t.Errorf("%+v.atOrBefore(%v) = %v, want %v", c.grid, c.at.Sub(o), got.Sub(o), c.want.Sub(o))
		}
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

// TestRaftIdleHeartbeatsThinned: a 3-node cluster with each production
// timing keeps its leader (and its lease, which a held voter renews once
// per interval) for 6 s of idleness while at most one real heartbeat per
// HeartbeatInterval reaches each follower (raft alone sends one every
// 100–400 ms), raft's calls in between held.
func TestRaftIdleHeartbeatsThinned(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s idle")
	}
	t.Run("default", func(t *testing.T) { idleHeartbeatsThinned(t, DefaultTiming) })
	t.Run("quiet", func(t *testing.T) { idleHeartbeatsThinned(t, QuietTiming) })
}

// idleHeartbeatsThinned checks one timing.
func idleHeartbeatsThinned(t *testing.T, timing Timing) {
	const counter = "heartbeats_held"
	def := DefaultConfig()
	def.Timing = timing
	counters := map[string]*wireCounter{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = def.HeartbeatTimeout, def.ElectionTimeout
		cfg.Timing = def.Timing
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
	before, _ := strconv.Atoi(l.r.Stats()[counter])

	const idle = 6 * time.Second
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
	after, _ := strconv.Atoi(l.r.Stats()[counter])
	if after <= before {
		t.Errorf("%s did not grow (%d before, %d after)", counter, before, after)
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

// TestRaftThinnedCutFollowerIsAskedAgain: once a follower is cut off, the
// held heartbeat goes to the wire when due and fails, and from then on
// raft's calls to it go to the wire at once (none is held on an answer
// from before the cut), while the leader keeps its lease with the other.
func TestRaftThinnedCutFollowerIsAskedAgain(t *testing.T) {
	type event struct {
		at  time.Time
		err error
	}
	var mu sync.Mutex
	events := map[string][]event{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		cfg.heartbeatObserve = func(id raft.ServerID, at time.Time, err error) {
			mu.Lock()
			events[string(id)] = append(events[string(id)], event{at, err})
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
	waitFor(t, "a held heartbeat", func() bool {
		n, _ := strconv.Atoi(l.r.Stats()["heartbeats_held"])
		return n > 0
	})
	c.isolate(f)
	cutAt := time.Now()
	interval := testRaftConfig("x").HeartbeatInterval
	after := cutAt.Add(interval)
	var failed []time.Time
	waitFor(t, "three failed heartbeats to "+f.id+" past the interval", func() bool {
		mu.Lock()
		defer mu.Unlock()
		failed = failed[:0]
		for _, e := range events[f.id] {
			if e.at.After(after) && e.err != nil {
				failed = append(failed, e.at)
			}
		}
		return len(failed) >= 3
	})
	// Failed ones are not held: raft asks again within one of its ticks
	// (HeartbeatTimeout/10–/5 plus its backoff), not a whole interval.
	if gap := failed[2].Sub(failed[1]); gap >= 10*interval {
		t.Errorf("failed heartbeats to %s %v apart", f.id, gap)
	}
	if !l.r.IsLeader() {
		t.Errorf("leader %s lost its leadership with one follower of two left", l.id)
	}
}

// TestRaftVerifyLeaderSendsRealHeartbeats: VerifyLeader right after the
// leader was cut off must not be confirmed by answers from before the cut
// (the heartbeats it forces are not held).
func TestRaftVerifyLeaderSendsRealHeartbeats(t *testing.T) {
	counters := map[string]*wireCounter{}
	c := newRaftClusterWith(t, 3, func(cfg *Config) {
		// The longest interval allowed, so that the answers the first
		// verify got are still fresh when the second one runs.
		cfg.HeartbeatInterval = min(cfg.HeartbeatTimeout/2, cfg.LeaderLeaseTimeout-time.Millisecond)
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
	// A heartbeat answered before the cut may still be
	// on its way into raft, and raft counts an answer that lands just as a
	// verify registers (heartbeat.go). Once each follower's heartbeat has
	// gone to the wire after the cut, that call failed and dropped the
	// follower's last answer, and nothing from before the cut is left
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

// A follower needs raft to replicate to it again when its last replication
// failed, when its log ends before the commit index, or when it was never
// told that the leader's last command is committed (it took the last
// entries of a burst before they were); barriers after that command, which
// no store waits for, do not count.
func TestNeedsCatchUp(t *testing.T) {
	cases := []struct {
		name                string
		a                   followerAnswer
		commit, lastCommand uint64
		want                bool
	}{
		{"told everything", followerAnswer{LastLog: 10, Told: 9}, 10, 9, false},
		{"only the trailing barrier's commit untold", followerAnswer{LastLog: 11, Told: 10}, 11, 9, false},
		{"replication failed", followerAnswer{LastLog: 10, Told: 9, ReplFailed: true}, 10, 9, true},
		{"log ends before the commit index", followerAnswer{LastLog: 8, Told: 8}, 10, 9, true},
		{"holds the last command, not told its commit", followerAnswer{LastLog: 10, Told: 7}, 10, 9, true},
		{"never replicated to by this leader", followerAnswer{LastLog: 10}, 10, 9, true},
		{"an empty cluster", followerAnswer{}, 0, 0, false},
	}
	for _, c := range cases {
		if got := needsCatchUp(c.a, c.commit, c.lastCommand); got != c.want {
			t.Errorf("%s: needsCatchUp(%+v, %d, %d) = %v, want %v", c.name, c.a, c.commit, c.lastCommand, got, c.want)
		}
	}
}

// The transport tells Raft, with each successful heartbeat answer, the
// highest commit index a taken replication carried to the follower and
// whether the last replication failed on the wire.
func TestThinTransportRecordsReplication(t *testing.T) {
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 12}}
	tt := newThinTransport(inner, 0)
	var got []followerAnswer
	f := func(a followerAnswer) { got = append(got, a) }
	tt.answered.Store(&f)
	repl := func(commit uint64) error {
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l")}, Term: 5,
			PrevLogEntry: 10, PrevLogTerm: 5, LeaderCommitIndex: commit}
		return tt.AppendEntries("f", "a-f", req, &resp)
	}
	hb := func() {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := tt.AppendEntries("f", "a-f", hbReq(5), &resp); err != nil {
			t.Fatal(err)
		}
	}
	hb()
	if err := repl(7); err != nil {
		t.Fatal(err)
	}
	hb()
	inner.err = errors.New("cut")
	if err := repl(9); err == nil {
		t.Fatal("the cut replication succeeded")
	}
	inner.err = nil
	hb()
	inner.resp.Success = false // refused: the follower learned nothing
	if err := repl(11); err != nil {
		t.Fatal(err)
	}
	inner.resp.Success = true
	hb()
	want := []followerAnswer{
		{LastLog: 12},
		{LastLog: 12, Told: 7},
		{LastLog: 12, Told: 7, ReplFailed: true},
		{LastLog: 12, Told: 7}, // refused, not failed: raft walks back at once; nothing told
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers %+v, want %+v", got, want)
	}
}
