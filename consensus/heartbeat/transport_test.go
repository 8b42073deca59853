package heartbeat

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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
	tt := newTransport(inner, 300*time.Millisecond)
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
		if st.req != nil && IsHeartbeat(st.req) && held(st.req.Term) {
			t.Fatalf("%s: the heartbeat would be held", st.name)
		}
		before := inner.calls
		heardBefore := tt.HeardFrom("n2")
		var resp raft.AppendEntriesResponse
		err := tt.AppendEntries("n2", "a2", st.req, &resp)
		// Only an answer off the wire is news of the follower (HeardFrom),
		// not an error.
		wantHeard := now
		if st.wantErr {
			wantHeard = heardBefore
		}
		if got := tt.HeardFrom("n2"); !got.Equal(wantHeard) {
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

// TestThinTransportForgetsGoneServers: a server that stopped answering (it
// left the configuration) is forgotten once forgetAfter has passed, while
// one that answers stays.
func TestThinTransportForgetsGoneServers(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true}}
	tt := newTransport(inner, 300*time.Millisecond)
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
	if !stays || tt.HeardFrom("stays").IsZero() {
		t.Fatal("the answering server was forgotten")
	}
}

// The transport tells Raft, with each successful heartbeat answer, the
// highest commit index a taken replication carried to the follower and
// whether the last replication failed on the wire.
func TestThinTransportRecordsReplication(t *testing.T) {
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 12}}
	tt := newTransport(inner, 0)
	var got []FollowerAnswer
	f := func(a FollowerAnswer) { got = append(got, a) }
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
	want := []FollowerAnswer{
		{LastLog: 12},
		{LastLog: 12, Told: 7},
		{LastLog: 12, Told: 7, ReplFailed: true},
		{LastLog: 12, Told: 7}, // refused, not failed: raft walks back at once; nothing told
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers %+v, want %+v", got, want)
	}
}

func TestWaitForHeartbeat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const slow = 400 * time.Millisecond
	fresh := &heartbeatAnswer{addr: "a2", term: 5, sentAt: t0,
		resp: raft.AppendEntriesResponse{Term: 5, Success: true}}
	failed := &heartbeatAnswer{addr: "a2", term: 5, sentAt: t0, resp: raft.AppendEntriesResponse{Term: 5}}
	entries := hbReq(5)
	entries.Entries, entries.PrevLogEntry, entries.PrevLogTerm = []*raft.Log{{Index: 2}}, 1, 5
	cases := []struct {
		name      string
		req       *raft.AppendEntriesRequest
		addr      raft.ServerAddress
		last      *heartbeatAnswer
		now       time.Time
		slow      time.Duration
		beats     beatGrid
		forced    bool
		closed    bool
		newest    uint64
		wantHold  bool
		wantUntil time.Time
	}{
		{"non-voter, fresh answer: held until due", hbReq(5), "a2", fresh, t0.Add(100 * time.Millisecond), slow, beatGrid{}, false, false, 5, true, t0.Add(slow)},
		{"just sent: held a whole interval", hbReq(5), "a2", fresh, t0, slow, beatGrid{}, false, false, 5, true, t0.Add(slow)},
		{"due: sent", hbReq(5), "a2", fresh, t0.Add(slow), slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"thinning off", hbReq(5), "a2", fresh, t0, 0, beatGrid{}, false, false, 5, false, time.Time{}},
		{"first heartbeat to the peer", hbReq(5), "a2", nil, t0, slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"last answer refused", hbReq(5), "a2", failed, t0, slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"verify in flight", hbReq(5), "a2", fresh, t0, slow, beatGrid{}, true, false, 5, false, time.Time{}},
		{"transport closed", hbReq(5), "a2", fresh, t0, slow, beatGrid{}, false, true, 5, false, time.Time{}},
		{"a newer term was seen", hbReq(5), "a2", fresh, t0, slow, beatGrid{}, false, false, 6, false, time.Time{}},
		{"new term of the request", hbReq(6), "a2", fresh, t0, slow, beatGrid{}, false, false, 6, false, time.Time{}},
		{"peer moved", hbReq(5), "a3", fresh, t0, slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"not a heartbeat", entries, "a2", fresh, t0, slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"clock went back", hbReq(5), "a2", fresh, t0.Add(-time.Millisecond), slow, beatGrid{}, false, false, 5, false, time.Time{}},
		{"on the grid: held until the last beat before due", hbReq(5), "a2", fresh, t0.Add(100 * time.Millisecond), slow, beatGrid{t0.Add(-100 * time.Millisecond), slow}, false, false, 5, true, t0.Add(300 * time.Millisecond)},
		{"on the grid: that beat reached", hbReq(5), "a2", fresh, t0.Add(300 * time.Millisecond), slow, beatGrid{t0.Add(-100 * time.Millisecond), slow}, false, false, 5, false, time.Time{}},
		{"on the grid: sent on a beat, due on the next", hbReq(5), "a2", fresh, t0.Add(time.Millisecond), slow, beatGrid{t0, slow}, false, false, 5, true, t0.Add(slow)},
		{"grid coarser than slow: unaligned", hbReq(5), "a2", fresh, t0.Add(time.Millisecond), slow, beatGrid{t0.Add(-time.Millisecond), 2 * slow}, false, false, 5, true, t0.Add(slow)},
	}
	for _, tc := range cases {
		until, hold := waitForHeartbeat(tc.req, tc.addr, tc.last, tc.now, tc.slow, tc.beats, tc.forced, tc.closed, tc.newest)
		if hold != tc.wantHold || !until.Equal(tc.wantUntil) {
			t.Errorf("%s: waitForHeartbeat = %v, %v; want %v, %v", tc.name, until, hold, tc.wantUntil, tc.wantHold)
		}
	}
}

// lockedTransport answers every AppendEntries with a success of term 5
// and counts the calls that reach it; safe for concurrent use.
type lockedTransport struct {
	raft.Transport
	calls atomic.Int32
}

func (s *lockedTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress,
	_ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	s.calls.Add(1)
	*resp = raft.AppendEntriesResponse{Term: 5, Success: true}
	return nil
}

func (s *lockedTransport) RequestVote(raft.ServerID, raft.ServerAddress, *raft.RequestVoteRequest, *raft.RequestVoteResponse) error {
	return nil
}

// TestThinTransportHeldCallEnds: a heartbeat to a non-voter whose answer
// is fresh is held (with an interval nothing in the test outlasts), and
// each of promotion, a forced verify, a newer term and close ends it at
// once; other RPCs pass while it is held.
func TestThinTransportHeldCallEnds(t *testing.T) {
	cases := []struct {
		name    string
		end     func(tt *Transport)
		wantErr error
		// wire: the held call went to the wire.
		wire bool
	}{
		{"promotion", func(tt *Transport) { tt.SetVoter("n2") }, nil, true},
		{"no longer a non-voter", func(tt *Transport) { tt.SetNonvoters([]raft.ServerID{"n3"}) }, nil, true},
		{"verify in flight", func(tt *Transport) { tt.ForceOn() }, nil, true},
		{"newer term", func(tt *Transport) {
			_ = tt.RequestVote("n3", "a3", &raft.RequestVoteRequest{Term: 6}, &raft.RequestVoteResponse{})
		}, nil, true},
		{"close", func(tt *Transport) { tt.StopHolding() }, raft.ErrTransportShutdown, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inner := &lockedTransport{}
			tt := newTransport(inner, 300*time.Millisecond)
			tt.slow = time.Hour
			tt.SetNonvoters([]raft.ServerID{"n2"})
			var resp raft.AppendEntriesResponse
			if err := tt.AppendEntries("n2", "a2", hbReq(5), &resp); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				var resp raft.AppendEntriesResponse
				done <- tt.AppendEntries("n2", "a2", hbReq(5), &resp)
			}()
			waitFor(t, "the heartbeat to be held", func() bool { return tt.held.Load() == 1 })
			// Replication passes while the heartbeat is held.
			repl := hbReq(5)
			repl.Entries, repl.PrevLogEntry, repl.PrevLogTerm = []*raft.Log{{Index: 2}}, 1, 5
			if err := tt.AppendEntries("n2", "a2", repl, &resp); err != nil {
				t.Fatal(err)
			}
			if got := inner.calls.Load(); got != 2 {
				t.Fatalf("%d calls reached the wire, want 2 (the first heartbeat and the replication)", got)
			}
			select {
			case err := <-done:
				t.Fatalf("the held heartbeat returned (%v) before anything ended it", err)
			default:
			}
			tc.end(tt)
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the held heartbeat did not end")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("held heartbeat: %v, want %v", err, tc.wantErr)
			}
			if wire := inner.calls.Load() == 3; wire != tc.wire {
				t.Fatalf("went to the wire = %v, want %v", wire, tc.wire)
			}
		})
	}
}

// stuckTransport never answers an AppendEntries until released, as a
// connection whose peer vanished.
type stuckTransport struct {
	raft.Transport
	release chan struct{}
}

func (s *stuckTransport) AppendEntries(_ raft.ServerID, _ raft.ServerAddress,
	_ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	<-s.release
	*resp = raft.AppendEntriesResponse{Term: 5, Success: true}
	return nil
}

// TestThinTransportHeartbeatBounded: a heartbeat into a connection that
// never answers fails after the heartbeat timeout, not the wrapped
// transport's, and the peer is not heard; replication is not bounded.
func TestThinTransportHeartbeatBounded(t *testing.T) {
	inner := &stuckTransport{release: make(chan struct{})}
	defer close(inner.release)
	tt := newTransport(inner, 300*time.Millisecond)
	tt.hbTimeout = 50 * time.Millisecond
	var resp raft.AppendEntriesResponse
	done := make(chan error, 1)
	go func() { done <- tt.AppendEntries("n2", "a2", hbReq(5), &resp) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("stuck heartbeat: %v, want ErrTimeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a heartbeat into a stuck connection did not give up")
	}
	if !tt.HeardFrom("n2").IsZero() {
		t.Fatal("a peer that never answered counts as heard")
	}
	repl := hbReq(5)
	repl.Entries, repl.PrevLogEntry, repl.PrevLogTerm = []*raft.Log{{Index: 2}}, 1, 5
	go func() { done <- tt.AppendEntries("n2", "a2", repl, &resp) }()
	select {
	case err := <-done:
		t.Fatalf("replication gave up (%v): only heartbeats are bounded", err)
	case <-time.After(200 * time.Millisecond):
	}
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
