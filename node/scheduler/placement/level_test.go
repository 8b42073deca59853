package placement

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestLevelFilter: a node whose agent predates a field the spec uses is
// refused (it would drop the field and run the task less restricted); a
// node of unknown level counts as the base level.
func TestLevelFilter(t *testing.T) {
	ro := LevelNeed{Level: 3, Fields: []string{"read_only"}}
	cases := []struct {
		name   string
		level  int
		need   LevelNeed
		ok     bool
		reason string
	}{
		{"no need, unknown node", 0, LevelNeed{}, true, ""},
		{"base need, unknown node", 0, LevelNeed{Level: 1}, true, ""},
		{"same level", 3, ro, true, ""},
		{"newer node", 4, ro, true, ""},
		{"older node", 2, ro, false, "on an older Shoal (the spec's read_only needs protocol level 3)"},
		{"unknown node counts as base", 0, LevelNeed{Level: 2, Fields: []string{"x"}}, false, "on an older Shoal (the spec's x needs protocol level 2)"},
		{"several fields", 1, LevelNeed{Level: 3, Fields: []string{"cap_drop", "read_only"}}, false,
			"on an older Shoal (the spec's cap_drop, read_only needs protocol level 3)"},
		{"no field names", 1, LevelNeed{Level: 3}, false, "on an older Shoal (the spec needs protocol level 3)"},
	}
	for _, tc := range cases {
		n := &NodeInfo{Node: api.Node{ID: "n", Status: api.NodeReady}, Level: tc.level}
		ok, reason := DefaultPipeline().Check(n, &Request{Level: tc.need})
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, ok, reason, tc.ok, tc.reason)
		}
	}
}

// TestExplainLevel: the reason a task waits names the field and the level.
func TestExplainLevel(t *testing.T) {
	req := &Request{Level: LevelNeed{Level: 3, Fields: []string{"read_only"}}}
	nodes := []*NodeInfo{
		{Node: api.Node{ID: "a", Status: api.NodeReady}, Level: 2},
		{Node: api.Node{ID: "b", Status: api.NodeReady}, Level: 2},
		{Node: api.Node{ID: "c", Status: api.NodeDown}, Level: 3},
	}
	want := "no suitable node (1 node not ready, 2 nodes on an older Shoal (the spec's read_only needs protocol level 3))"
	if got := DefaultPipeline().Explain(nodes, req); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
