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
	}
	for _, tc := range []struct {
		name  string
		nodes []nodeSpec
		picks int
		mem   int64 // reservation of each task
		want  string
	}{
		{"empty", nil, 2, 0, "- -"},
		{"by ID when equal", []nodeSpec{{id: "b"}, {id: "a"}, {id: "c"}}, 4, 0, "a b c a"},
		{"service count first", []nodeSpec{{id: "a", svc: 2, all: 2}, {id: "b", svc: 0, all: 5}}, 3, 0, "b b a"},
		{"total count next", []nodeSpec{{id: "a", all: 3}, {id: "b", all: 1}, {id: "c", all: 2}}, 4, 0, "b c a b"},
		{"room runs out", []nodeSpec{{id: "a", memCap: 100}, {id: "b", memCap: 250}}, 4, 100, "a b b -"},
		{"no room at all", []nodeSpec{{id: "a", memCap: 100, memReserv: 50}}, 1, 100, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSpread(len(tc.nodes))
			for _, ns := range tc.nodes {
				n := &NodeInfo{Node: api.Node{ID: ns.id, Resources: api.Resources{MemoryBytes: ns.memCap}},
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
