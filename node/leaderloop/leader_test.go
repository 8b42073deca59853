package leaderloop

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/membership"
)

func TestSuspectLeader(t *testing.T) {
	alive := map[string]membership.Meta{"l": {NodeID: "l"}}
	seen := func(id string) bool { return id == "l" || id == "gone" }
	cases := []struct {
		name   string
		self   bool
		leader string
		silent bool
		want   bool
	}{
		{"this node leads", true, "", false, false},
		{"this node leads, its watch stale", true, "", true, false},
		{"live leader", false, "l", false, false},
		{"live to gossip, silent to raft", false, "l", true, true},
		{"no leader known", false, "", false, true},
		{"gossip declared the leader dead", false, "gone", false, true},
		{"leader gossip never saw (just joined)", false, "new", false, false},
		{"leader gossip never saw, silent to raft", false, "new", true, true},
	}
	for _, c := range cases {
		if got := SuspectLeader(c.self, c.leader, c.silent, alive, seen); got != c.want {
			t.Errorf("%s: SuspectLeader = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestStatusChanges: gossip's verdict becomes the recorded status, except
// for the nodes a new leader has not heard of yet, ready nodes that
// announced a restart, and ready nodes raft heard from a moment ago.
func TestStatusChanges(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	node := func(id, status string) *api.Node { return &api.Node{ID: id, Status: status} }
	alive := map[string]membership.Meta{"up": {NodeID: "up"}, "back": {NodeID: "back"},
		"quiet": {NodeID: "quiet"}, "quietback": {NodeID: "quietback"}, "answered": {NodeID: "answered"},
		"quietrestart": {NodeID: "quietrestart"}, "self": {NodeID: "self"}}
	seen := func(id string) bool { return id != "unseen" }
	restarting := func(id string) bool { return id == "restarting" || id == "quietrestart" }
	heard := func(id string) bool { return id == "heard" || id == "heardback" }
	silent := func(id string) bool { return id == "quiet" || id == "quietrestart" || id == "self" || id == "up2" }
	unanswered := func(id string) bool { return id == "quietback" || id == "self" }
	nodes := []*api.Node{
		node("self", api.NodeDown),          // the leader itself: ready even without gossip
		node("up", api.NodeReady),           // no change
		node("back", api.NodeDown),          // alive again
		node("gone", api.NodeReady),         // dead
		node("unseen", api.NodeReady),       // dead, but never seen: waits out the grace
		node("restarting", api.NodeReady),   // dead, announced a restart
		node("restarting2", api.NodeReady),  // dead, no announcement
		node("downalready", api.NodeDown),   // no change
		node("heard", api.NodeReady),        // dead to gossip, but answered raft: stays ready
		node("heardback", api.NodeDown),     // down, answers raft, gossip still dead: stays down
		node("quiet", api.NodeReady),        // alive to gossip, raft silent: down
		node("quietback", api.NodeDown),     // down for silence, alive to gossip, raft not heard since: stays down
		node("answered", api.NodeDown),      // down for silence, raft heard since, alive: ready
		node("quietrestart", api.NodeReady), // raft silent, announced a restart: stays ready
	}
	cases := []struct {
		name    string
		inGrace bool
		want    map[string]string
	}{
		{"in grace", true, map[string]string{"self": api.NodeReady, "back": api.NodeReady, "gone": api.NodeDown,
			"restarting2": api.NodeDown, "quiet": api.NodeDown, "answered": api.NodeReady}},
		{"after grace", false, map[string]string{"self": api.NodeReady, "back": api.NodeReady, "gone": api.NodeDown,
			"unseen": api.NodeDown, "restarting2": api.NodeDown, "quiet": api.NodeDown, "answered": api.NodeReady}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := StatusChanges(nodes, "self", alive, Opinions{InGrace: c.inGrace, EverSeen: seen, Restarting: restarting,
				Heard: heard, Silent: silent, Unanswered: unanswered}, now)
			m := map[string]string{}
			for _, ch := range got {
				if !ch.At.Equal(now) {
					t.Errorf("%s: At = %v, want %v", ch.ID, ch.At, now)
				}
				m[ch.ID] = ch.Status
			}
			if len(m) != len(c.want) {
				t.Errorf("changes %v, want %v", m, c.want)
			}
			for id, st := range c.want {
				if m[id] != st {
					t.Errorf("%s: status %q, want %q (all: %v)", id, m[id], st, m)
				}
			}
		})
	}
	if got := StatusChanges(nil, "self", alive, Opinions{EverSeen: seen, Restarting: restarting, Heard: heard}, now); got != nil {
		t.Errorf("no nodes: %v, want none", got)
	}
}

// TestHeardHolds: raft's answer keeps a node gossip calls dead ready only
// while the answer is fresh and gossip's verdict is young.
func TestHeardHolds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	cases := []struct {
		name              string
		heardAgo, deadAgo time.Duration
		never             bool
		want              bool
	}{
		{name: "fresh answer, young verdict", heardAgo: 100 * time.Millisecond, deadAgo: time.Second, want: true},
		{name: "never heard", never: true, deadAgo: time.Second},
		{name: "answer too old (a dead node)", heardAgo: 700 * time.Millisecond, deadAgo: 10 * time.Millisecond},
		{name: "verdict held long enough", heardAgo: 100 * time.Millisecond, deadAgo: raftHeardHold},
		{name: "just inside the hold", heardAgo: 0, deadAgo: raftHeardHold - time.Millisecond, want: true},
	}
	for _, c := range cases {
		heard := now.Add(-c.heardAgo)
		if c.never {
			heard = time.Time{}
		}
		if got := HeardHolds(heard, now.Add(-c.deadAgo), now, DefaultHeardWindow); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBarrierUntilDone: a new leader's work tries its barrier again until
// one passes (a failed first barrier used to leave the leader without its
// work for the whole term), and gives up only when ctx ends.
func TestBarrierUntilDone(t *testing.T) {
	calls := 0
	var failures []error
	flaky := func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("leadership lost")
		}
		return nil
	}
	if err := barrierUntilDone(context.Background(), flaky, time.Second, time.Millisecond, func(err error) { failures = append(failures, err) }); err != nil {
		t.Fatalf("barrierUntilDone: %v", err)
	}
	if calls != 3 || len(failures) != 2 {
		t.Fatalf("%d tries, %d failures reported; want 3 tries, 2 failures", calls, len(failures))
	}

	// A try that outlives its timeout is cut and tried again.
	calls = 0
	slow := func(ctx context.Context) error {
		calls++
		if calls == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	if err := barrierUntilDone(context.Background(), slow, 10*time.Millisecond, time.Millisecond, func(error) {}); err != nil || calls != 2 {
		t.Fatalf("slow first try: err %v after %d tries, want nil after 2", err, calls)
	}

	// Never passing: it returns once ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	never := func(context.Context) error { return errors.New("not leader") }
	tries := 0
	err := barrierUntilDone(ctx, never, time.Second, time.Millisecond, func(error) {
		if tries++; tries == 5 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("after ctx ended: %v, want context.Canceled", err)
	}
}
