package placement

import (
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestPlanMoves(t *testing.T) {
	all := func(int, int) bool { return true }
	type mn = MoveNode
	for _, tc := range []struct {
		name    string
		nodes   []MoveNode
		budget  int
		max     int
		canTake func(i, extra int) bool
		want    string
	}{
		{"balanced", []mn{{"a", 2, 2, ""}, {"b", 2, 2, ""}, {"c", 2, 2, ""}}, -1, 0, all, ""},
		{"off by one is even", []mn{{"a", 3, 3, ""}, {"b", 2, 2, ""}}, -1, 0, all, ""},
		{"new node", []mn{{"a", 3, 3, ""}, {"b", 3, 3, ""}, {"c", 0, 0, ""}}, -1, 0, all, "a>c b>c"},
		{"budget", []mn{{"a", 3, 3, ""}, {"b", 3, 3, ""}, {"c", 0, 0, ""}}, 1, 0, all, "a>c"},
		{"no budget", []mn{{"a", 3, 3, ""}, {"b", 3, 3, ""}, {"c", 0, 0, ""}}, 0, 0, all, ""},
		{"two new nodes", []mn{{"a", 6, 6, ""}, {"b", 0, 0, ""}, {"c", 0, 0, ""}}, -1, 0, all, "a>b a>c a>b a>c"},
		{"nothing movable on the fullest", []mn{{"a", 4, 0, ""}, {"b", 1, 1, ""}, {"c", 0, 0, ""}}, -1, 0, all, ""},
		{"movable on the next", []mn{{"a", 4, 0, ""}, {"b", 3, 3, ""}, {"c", 0, 0, ""}}, -1, 0, all, "b>c"},
		{"target full", []mn{{"a", 4, 4, ""}, {"b", 0, 0, ""}}, -1, 0,
			func(i, extra int) bool { return i != 1 || extra < 1 }, "a>b"},
		{"no room anywhere", []mn{{"a", 4, 4, ""}, {"b", 0, 0, ""}}, -1, 0,
			func(i, _ int) bool { return i == 0 }, ""},
		// Max replicas per node: a target never reaches more than the
		// limit, and a node above a lowered limit sheds its excess where
		// there is room, even when the spread is otherwise even.
		{"max caps the target", []mn{{"a", 6, 6, ""}, {"b", 0, 0, ""}}, -1, 2, all, "a>b a>b"},
		{"lowered max sheds excess", []mn{{"a", 3, 3, ""}, {"b", 2, 2, ""}, {"c", 0, 0, ""}}, -1, 1, all, "a>c"},
		{"lowered max, no room", []mn{{"a", 2, 2, ""}, {"b", 2, 2, ""}}, -1, 1, all, ""},
		// Preferences: tasks move only within a group (same label values),
		// so the spread over the groups stays.
		{"groups kept", []mn{{"a", 4, 4, "z1"}, {"b", 1, 1, "z1"}, {"c", 0, 0, "z2"}}, -1, 0, all, "a>b"},
		{"widest gap first", []mn{{"a", 3, 3, "z1"}, {"b", 1, 1, "z1"}, {"c", 5, 5, "z2"}, {"d", 0, 0, "z2"}}, 2, 0, all, "c>d c>d"},
		{"other group cannot help", []mn{{"a", 5, 5, "z1"}, {"c", 0, 0, "z2"}}, -1, 0, all, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range PlanMoves(tc.nodes, tc.budget, tc.max, tc.canTake) {
				got = append(got, tc.nodes[m.From].ID+">"+tc.nodes[m.To].ID)
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Fatalf("moves %q, want %q", s, tc.want)
			}
		})
	}
}

func TestGroupKey(t *testing.T) {
	prefs := []Preference{{Label: "zone"}, {Label: "rack"}}
	node := func(labels map[string]string) api.Node { return api.Node{Labels: labels} }
	a1 := GroupKey(prefs, node(map[string]string{"zone": "a", "rack": "1"}))
	a1b := GroupKey(prefs, node(map[string]string{"zone": "a", "rack": "1", "x": "y"}))
	a2 := GroupKey(prefs, node(map[string]string{"zone": "a", "rack": "2"}))
	aNone := GroupKey(prefs, node(map[string]string{"zone": "a"}))
	aEmpty := GroupKey(prefs, node(map[string]string{"zone": "a", "rack": ""}))
	if a1 != a1b || a1 == a2 || a1 == aNone || aNone == aEmpty {
		t.Fatalf("keys: %q %q %q %q %q", a1, a1b, a2, aNone, aEmpty)
	}
	if GroupKey(nil, node(map[string]string{"zone": "a"})) != "" {
		t.Fatal("no preferences: one group")
	}
}
