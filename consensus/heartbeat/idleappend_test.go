package heartbeat

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// idleReq is raft's CommitTimeout append to a follower that holds
// everything: previous entry 10 of term 5, commit 10.
func idleReq(term uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l")}, Term: term, Leader: []byte("l"),
		PrevLogEntry: 10, PrevLogTerm: 5, LeaderCommitIndex: 10}
}

func TestRedundantAppend(t *testing.T) {
	t0 := time.Unix(1000, 0)
	slow := 1200 * time.Millisecond
	kept := func() *appendAnswer {
		return &appendAnswer{addr: "a", term: 5, prevIndex: 10, prevTerm: 5, commit: 10, at: t0,
			resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 10}}
	}
	hb := func() *heartbeatAnswer {
		return &heartbeatAnswer{addr: "a", term: 5, sentAt: t0.Add(3 * time.Second),
			resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 10}}
	}
	now := t0.Add(4 * time.Second)
	cases := []struct {
		name     string
		req      func(*raft.AppendEntriesRequest)
		kept     func(*appendAnswer) *appendAnswer
		hb       func(*heartbeatAnswer) *heartbeatAnswer
		voter    bool
		now      time.Time
		slow     time.Duration
		newest   uint64
		answered bool
	}{
		{name: "the same empty append to a live non-voter", answered: true},
		{name: "a voter: its contact renews the lease", voter: true},
		{name: "no heartbeats held (thinning off)", slow: -1},
		{name: "nothing kept", kept: func(*appendAnswer) *appendAnswer { return nil }},
		{name: "no heartbeat answer", hb: func(*heartbeatAnswer) *heartbeatAnswer { return nil }},
		{name: "entries", req: func(r *raft.AppendEntriesRequest) { r.Entries = []*raft.Log{{Index: 11}} }},
		{name: "a heartbeat", req: func(r *raft.AppendEntriesRequest) {
			r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex = 0, 0, 0
		}},
		{name: "a new commit index", req: func(r *raft.AppendEntriesRequest) { r.LeaderCommitIndex = 11; r.PrevLogEntry = 11 }},
		{name: "another previous entry (raft walked back)", req: func(r *raft.AppendEntriesRequest) { r.PrevLogEntry = 9 }},
		{name: "another previous term", req: func(r *raft.AppendEntriesRequest) { r.PrevLogTerm = 4 }},
		{name: "a new term", req: func(r *raft.AppendEntriesRequest) { r.Term = 6 }, newest: 6},
		{name: "a stale term: newer seen", newest: 6},
		{name: "the peer moved", kept: func(k *appendAnswer) *appendAnswer { k.addr = "b"; return k }},
		{name: "kept a minute: asked again", now: t0.Add(reuseAppendFor),
			hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.sentAt = t0.Add(reuseAppendFor - time.Second); return h }},
		{name: "kept just under a minute", now: t0.Add(reuseAppendFor - time.Millisecond), answered: true,
			hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.sentAt = t0.Add(reuseAppendFor - time.Second); return h }},
		{name: "heartbeat answer two intervals old: maybe dead", now: t0.Add(3*time.Second + 2*slow)},
		{name: "heartbeat answer just under two intervals", now: t0.Add(3*time.Second + 2*slow - time.Millisecond), answered: true},
		{name: "heartbeat refused", hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.resp.Success = false; return h }},
		{name: "heartbeat of another term", hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.term = 4; return h }},
		{name: "heartbeat from another address", hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.addr = "b"; return h }},
		{name: "the follower's log ends before the entry", hb: func(h *heartbeatAnswer) *heartbeatAnswer { h.resp.LastLog = 9; return h }},
		{name: "clock went back", now: t0.Add(-time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := idleReq(5)
			if c.req != nil {
				c.req(req)
			}
			k, h := kept(), hb()
			if c.kept != nil {
				k = c.kept(k)
			}
			if c.hb != nil {
				h = c.hb(h)
			}
			at, s, newest := now, slow, uint64(5)
			if !c.now.IsZero() {
				at = c.now
			}
			if c.slow != 0 {
				s = max(c.slow, 0)
			}
			if c.newest != 0 {
				newest = c.newest
			}
			if got := redundantAppend(req, "a", k, h, !c.voter, at, s, newest); got != c.answered {
				t.Fatalf("answered locally %v, want %v", got, c.answered)
			}
		})
	}
}

// TestTransportAnswersIdleAppends drives the apply half: what reaches the
// wire, and that a failure, a refusal or a snapshot sends the next idle
// append to the wire again.
func TestTransportAnswersIdleAppends(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := &scriptedTransport{resp: raft.AppendEntriesResponse{Term: 5, Success: true, LastLog: 10}}
	tt := New(inner, Config{Interval: 300 * time.Millisecond, Slow: 1200 * time.Millisecond, Origin: now})
	tt.now = func() time.Time { return now }
	tt.SetNonvoters([]raft.ServerID{"f"})
	call := func(req *raft.AppendEntriesRequest) (raft.AppendEntriesResponse, error) {
		var resp raft.AppendEntriesResponse
		err := tt.AppendEntries("f", "a-f", req, &resp)
		return resp, err
	}
	// beat sends a real heartbeat: one interval after the last, so none
	// is held.
	beat := func() {
		now = now.Add(1300 * time.Millisecond)
		call(hbReq(5))
	}
	r11 := idleReq(5)
	r11.LeaderCommitIndex, r11.PrevLogEntry = 11, 11
	steps := []struct {
		name    string
		setup   func()
		req     *raft.AppendEntriesRequest
		wire    bool
		wantErr bool
	}{
		{name: "first idle append goes out", setup: beat, req: idleReq(5), wire: true},
		{name: "the same again: answered", setup: beat, req: idleReq(5)},
		{name: "a voter's goes out", setup: func() { beat(); tt.SetNonvoters(nil) }, req: idleReq(5), wire: true},
		{name: "a non-voter's again: answered", setup: func() { tt.SetNonvoters([]raft.ServerID{"f"}); beat() }, req: idleReq(5)},
		{name: "a new commit goes out", setup: func() { inner.resp.LastLog = 11; beat() }, req: r11, wire: true},
		{name: "and is kept in turn", setup: beat, req: r11},
		{name: "no heartbeat answer for two intervals: goes out", setup: func() { now = now.Add(2400 * time.Millisecond) },
			req: r11, wire: true},
		{name: "the heartbeat fails: the next goes out and fails", setup: func() {
			beat()
			inner.err = errors.New("cut")
			beat()
		}, req: r11, wire: true, wantErr: true},
		{name: "back: goes out", setup: func() { inner.err = nil; beat() }, req: r11, wire: true},
		{name: "kept", setup: beat, req: r11},
		{name: "entries sent (and refused): the next goes out", setup: func() {
			inner.resp.Success = false
			call(r11) // kept: answered, never refused
			e := &raft.AppendEntriesRequest{Term: 5, Leader: []byte("l"), PrevLogEntry: 11, PrevLogTerm: 5,
				LeaderCommitIndex: 11, Entries: []*raft.Log{{Index: 12}}}
			call(e) // refused on the wire
			inner.resp.Success = true
			beat()
		}, req: r11, wire: true},
		{name: "a snapshot: the next goes out", setup: func() {
			beat()
			var sresp raft.InstallSnapshotResponse
			_ = tt.InstallSnapshot("f", "a-f", &raft.InstallSnapshotRequest{Term: 5}, &sresp, nil)
		}, req: r11, wire: true},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		before := inner.calls
		resp, err := call(s.req)
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: error %v, want error %v", s.name, err, s.wantErr)
		}
		if wire := inner.calls > before; wire != s.wire {
			t.Fatalf("%s: reached the wire %v, want %v", s.name, wire, s.wire)
		}
		if err == nil && !resp.Success {
			t.Fatalf("%s: answer %+v", s.name, resp)
		}
	}
	if got := tt.AnsweredKept(); got != 5 {
		t.Fatalf("answered locally %d times, want 5", got)
	}
}

func (s *scriptedTransport) InstallSnapshot(raft.ServerID, raft.ServerAddress, *raft.InstallSnapshotRequest,
	*raft.InstallSnapshotResponse, io.Reader) error {
	s.calls++
	return s.err
}
