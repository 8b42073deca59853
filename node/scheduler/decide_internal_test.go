package scheduler

// Table tests of the planner's pure decisions (unexported); the behaviour
// tests, which drive a simcluster.Cluster, are in package scheduler_test.

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPlanMoves(t *testing.T) {
	all := func(int, int) bool { return true }
	for _, tc := range []struct {
		name    string
		nodes   []moveNode
		budget  int
		canTake func(i, extra int) bool
		want    string
	}{
		{"balanced", []moveNode{{"a", 2, 2}, {"b", 2, 2}, {"c", 2, 2}}, -1, all, ""},
		{"off by one is even", []moveNode{{"a", 3, 3}, {"b", 2, 2}}, -1, all, ""},
		{"new node", []moveNode{{"a", 3, 3}, {"b", 3, 3}, {"c", 0, 0}}, -1, all, "a>c b>c"},
		{"budget", []moveNode{{"a", 3, 3}, {"b", 3, 3}, {"c", 0, 0}}, 1, all, "a>c"},
		{"no budget", []moveNode{{"a", 3, 3}, {"b", 3, 3}, {"c", 0, 0}}, 0, all, ""},
		{"two new nodes", []moveNode{{"a", 6, 6}, {"b", 0, 0}, {"c", 0, 0}}, -1, all, "a>b a>c a>b a>c"},
		{"nothing movable on the fullest", []moveNode{{"a", 4, 0}, {"b", 1, 1}, {"c", 0, 0}}, -1, all, ""},
		{"movable on the next", []moveNode{{"a", 4, 0}, {"b", 3, 3}, {"c", 0, 0}}, -1, all, "b>c"},
		{"target full", []moveNode{{"a", 4, 4}, {"b", 0, 0}}, -1,
			func(i, extra int) bool { return i != 1 || extra < 1 }, "a>b"},
		{"no room anywhere", []moveNode{{"a", 4, 4}, {"b", 0, 0}}, -1,
			func(i, _ int) bool { return i == 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range planMoves(tc.nodes, tc.budget, tc.canTake) {
				got = append(got, tc.nodes[m.From].ID+">"+tc.nodes[m.To].ID)
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Fatalf("moves %q, want %q", s, tc.want)
			}
		})
	}
}

func TestStateHelpersMatchAPI(t *testing.T) {
	for state, order := range api.TaskStateOrder {
		if rank(state) != order || terminal(state) != api.TaskTerminal(state) {
			t.Errorf("state %s: rank %d terminal %v, api says %d %v", state, rank(state), terminal(state), order, api.TaskTerminal(state))
		}
	}
}
