package placement

import (
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestSpread: fewest tasks of the service first, then fewest tasks overall,
// then the lowest node ID; a node without room for the request drops out.
func TestSpread(t *testing.T) {
	type nodeSpec struct {
		id        string
		svc, all  int
		memCap    int64
		memReserv int64
		zone      string // node.labels.zone, "" = none
		rack      string // node.labels.rack, "" = none
	}
	for _, tc := range []struct {
		name  string
		nodes []nodeSpec
		picks int
		mem   int64 // reservation of each task
		want  string
		prefs []string // labels spread over, outermost first
		max   int      // max replicas per node
	}{
		{"empty", nil, 2, 0, "- -", nil, 0},
		{"by ID when equal", []nodeSpec{{id: "b"}, {id: "a"}, {id: "c"}}, 4, 0, "a b c a", nil, 0},
		{"service count first", []nodeSpec{{id: "a", svc: 2, all: 2}, {id: "b", svc: 0, all: 5}}, 3, 0, "b b a", nil, 0},
		{"total count next", []nodeSpec{{id: "a", all: 3}, {id: "b", all: 1}, {id: "c", all: 2}}, 4, 0, "b c a b", nil, 0},
		{"room runs out", []nodeSpec{{id: "a", memCap: 100}, {id: "b", memCap: 250}}, 4, 100, "a b b -", nil, 0},
		{"no room at all", []nodeSpec{{id: "a", memCap: 100, memReserv: 50}}, 1, 100, "-", nil, 0},
		// Max replicas per node: a node at the limit drops out.
		{"max per node", []nodeSpec{{id: "a"}, {id: "b"}, {id: "c"}}, 4, 0, "a b c -", nil, 1},
		{"max counts tasks already there", []nodeSpec{{id: "a", svc: 2}, {id: "b"}}, 3, 0, "b b -", nil, 2},
		// Preferences: the groups first (fewest tasks of the service;
		// ties by value, the nodes without the label last), then the
		// nodes within a group.
		{"spread over zones", []nodeSpec{{id: "a1", zone: "a"}, {id: "a2", zone: "a"}, {id: "b1", zone: "b"}}, 4, 0,
			"a1 b1 a2 b1", []string{"zone"}, 0},
		{"missing label is a group", []nodeSpec{{id: "a1", zone: "a"}, {id: "x"}, {id: "y"}}, 4, 0,
			"a1 x a1 y", []string{"zone"}, 0},
		{"existing tasks count in the group", []nodeSpec{{id: "a1", zone: "a", svc: 3}, {id: "a2", zone: "a"}, {id: "b1", zone: "b"}}, 4, 0,
			"b1 b1 b1 a2", []string{"zone"}, 0},
		{"spent group drops out", []nodeSpec{{id: "a1", zone: "a", memCap: 100}, {id: "b1", zone: "b"}}, 3, 100,
			"a1 b1 b1", []string{"zone"}, 0},
		{"max within groups", []nodeSpec{{id: "a1", zone: "a"}, {id: "a2", zone: "a"}, {id: "b1", zone: "b"}}, 4, 0,
			"a1 b1 a2 -", []string{"zone"}, 1},
		{"nested", []nodeSpec{{id: "a1", zone: "a", rack: "1"}, {id: "a2", zone: "a", rack: "1"}, {id: "a3", zone: "a", rack: "2"}, {id: "b1", zone: "b", rack: "1"}}, 6, 0,
			"a1 b1 a3 b1 a2 b1", []string{"zone", "rack"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prefs []Preference
			for _, l := range tc.prefs {
				prefs = append(prefs, Preference{Label: l})
			}
			s := NewSpread(len(tc.nodes), prefs, tc.max)
			for _, ns := range tc.nodes {
				labels := map[string]string{}
				if ns.zone != "" {
					labels["zone"] = ns.zone
				}
				if ns.rack != "" {
					labels["rack"] = ns.rack
				}
				n := &NodeInfo{Node: api.Node{ID: ns.id, Labels: labels, Resources: api.Resources{MemoryBytes: ns.memCap}},
					Reserved: api.Resources{MemoryBytes: ns.memReserv}, Tasks: ns.all}
				s.Add(n, ns.svc)
			}
			want := api.Resources{MemoryBytes: tc.mem}
			var got []string
			for range tc.picks {
				n := s.Pick(want)
				if n == nil {
					got = append(got, "-")
					continue
				}
				got = append(got, n.Node.ID)
				n.Tasks++ // as the planner's assign does
				n.Reserved.MemoryBytes += tc.mem
				s.Took()
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("picks %q, want %q", g, tc.want)
			}
		})
	}
}
