package node

import "testing"

func TestSuspectLeader(t *testing.T) {
	alive := map[string]memberMeta{"l": {NodeID: "l"}}
	seen := func(id string) bool { return id == "l" || id == "gone" }
	cases := []struct {
		name   string
		self   bool
		leader string
		want   bool
	}{
		{"this node leads", true, "", false},
		{"live leader", false, "l", false},
		{"no leader known", false, "", true},
		{"gossip declared the leader dead", false, "gone", true},
		{"leader gossip never saw (just joined)", false, "new", false},
	}
	for _, c := range cases {
		if got := suspectLeader(c.self, c.leader, alive, seen); got != c.want {
			t.Errorf("%s: suspectLeader = %v, want %v", c.name, got, c.want)
		}
	}
}
