package writes

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/consensus/raftnode"
)

func TestElectionHopeless(t *testing.T) {
	v := func(id string) raftnode.Server { return raftnode.Server{ID: id, Voter: true} }
	nv := func(id string) raftnode.Server { return raftnode.Server{ID: id} }
	set := func(ids ...string) func(string) bool {
		return func(id string) bool {
			for _, x := range ids {
				if x == id {
					return true
				}
			}
			return false
		}
	}
	none := set()
	cases := []struct {
		name          string
		servers       []raftnode.Server
		alive, unseen func(string) bool
		hopeless      bool
		reach, voters int
	}{
		{"two of three voters dead", []raftnode.Server{v("a"), v("b"), v("c")}, none, none, true, 1, 3},
		{"the leader dead, an election can succeed", []raftnode.Server{v("a"), v("b"), v("c")}, set("b"), none, false, 2, 3},
		{"just restarted: the others not seen yet", []raftnode.Server{v("a"), v("b"), v("c")}, none, set("b", "c"), false, 1, 3},
		{"one seen dead, one not seen yet", []raftnode.Server{v("a"), v("b"), v("c")}, none, set("c"), false, 1, 3},
		{"non-voters alive do not elect", []raftnode.Server{v("a"), v("b"), v("c"), nv("d"), nv("e")}, set("d", "e"), none, true, 1, 3},
		{"five voters, two alive with self: three", []raftnode.Server{v("a"), v("b"), v("c"), v("d"), v("e")}, set("b", "c"), none, false, 3, 5},
		{"five voters, self and one", []raftnode.Server{v("a"), v("b"), v("c"), v("d"), v("e")}, set("b"), none, true, 2, 5},
		{"this node is a non-voter, the voters dead", []raftnode.Server{v("b"), v("c"), v("d"), nv("a")}, set("b"), none, true, 1, 3},
		{"a single voter is never hopeless on itself", []raftnode.Server{v("a")}, none, none, false, 1, 1},
		{"no configuration read", nil, none, none, false, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, reach, voters := electionHopeless(tc.servers, "a", tc.alive, tc.unseen)
			if h != tc.hopeless || reach != tc.reach || voters != tc.voters {
				t.Fatalf("got hopeless %v, %d of %d; want %v, %d of %d", h, reach, voters, tc.hopeless, tc.reach, tc.voters)
			}
		})
	}
	err := noLeaderError(1, 3, false)
	if !errors.Is(err, ErrNoQuorum) || !strings.Contains(err.Error(), "1 of 3 voters reachable") || !strings.Contains(err.Error(), "--force-new-cluster") {
		t.Fatalf("error: %v", err)
	}
}

// TestNoLeaderErrorOutcome: the fast "no leader" answer says the write was
// not applied only when no attempt reached a leader; after one that did
// (and the leader was lost before answering), the outcome is unknown, as
// SettleRetry says, never "not applied" for a write a majority may hold.
func TestNoLeaderErrorOutcome(t *testing.T) {
	for _, tc := range []struct {
		sent      bool
		want, not string
	}{
		{false, "the write was not applied", "may or may not"},
		{true, "may or may not have been applied", "was not applied"},
	} {
		err := noLeaderError(1, 3, tc.sent)
		msg := err.Error()
		if !errors.Is(err, ErrNoQuorum) || !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) ||
			!strings.Contains(msg, "cannot elect one") || !strings.Contains(msg, "--force-new-cluster") {
			t.Errorf("sent=%v: %q", tc.sent, msg)
		}
	}
}
