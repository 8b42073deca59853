package placement

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestPlanMoves(t *testing.T) {
	all := func(int, int) bool { return true }
	// n is a node with count tasks, all movable, in the groups given
	// (outermost first).
	n := func(id string, count int, group ...string) MoveNode {
		return MoveNode{ID: id, Count: count, Movable: count, Group: group}
	}
	fixed := func(mn MoveNode, movable int) MoveNode { mn.Movable = movable; return mn }
	// leaving adds tasks that moves in flight replace (running, not counted).
	leaving := func(mn MoveNode, k int) MoveNode { mn.Leaving = k; return mn }
	// faulty marks a node where the service's tasks keep failing.
	faulty := func(mn MoveNode) MoveNode { mn.Faulty = true; return mn }
	for _, tc := range []struct {
		name    string
		nodes   []MoveNode
		budget  int
		max     int
		canTake func(i, extra int) bool
		want    string
	}{
		{"balanced", []MoveNode{n("a", 2), n("b", 2), n("c", 2)}, -1, 0, all, ""},
		{"off by one is even", []MoveNode{n("a", 3), n("b", 2)}, -1, 0, all, ""},
		{"new node", []MoveNode{n("a", 3), n("b", 3), n("c", 0)}, -1, 0, all, "a>c b>c"},
		{"budget", []MoveNode{n("a", 3), n("b", 3), n("c", 0)}, 1, 0, all, "a>c"},
		{"no budget", []MoveNode{n("a", 3), n("b", 3), n("c", 0)}, 0, 0, all, ""},
		{"two new nodes", []MoveNode{n("a", 6), n("b", 0), n("c", 0)}, -1, 0, all, "a>b a>c a>b a>c"},
		{"nothing movable on the fullest", []MoveNode{fixed(n("a", 4), 0), n("b", 1), n("c", 0)}, -1, 0, all, ""},
		{"movable on the next", []MoveNode{fixed(n("a", 4), 0), n("b", 3), n("c", 0)}, -1, 0, all, "b>c"},
		{"target full", []MoveNode{n("a", 4), n("b", 0)}, -1, 0,
			func(i, extra int) bool { return i != 1 || extra < 1 }, "a>b"},
		// Failure avoidance: a faulty node takes no move, even when it
		// is the emptiest; it may still give its tasks away.
		{"faulty node takes nothing", []MoveNode{n("a", 3), n("b", 3), faulty(n("c", 0))}, -1, 0, all, ""},
		{"faulty node skipped for the next", []MoveNode{n("a", 4), faulty(n("b", 0)), n("c", 1)}, -1, 0, all, "a>c"},
		{"faulty node gives", []MoveNode{faulty(n("a", 4)), n("b", 0)}, -1, 0, all, "a>b a>b"},
		{"faulty group", []MoveNode{n("a", 4, "z1"), faulty(n("b", 0, "z2"))}, -1, 0, all, ""},
		{"lowered max, faulty target", []MoveNode{n("a", 2), faulty(n("b", 0)), n("c", 0)}, -1, 1, all, "a>c"},
		{"no room anywhere", []MoveNode{n("a", 4), n("b", 0)}, -1, 0,
			func(i, _ int) bool { return i == 0 }, ""},
		// Max replicas per node: a target never reaches more than the
		// limit, and a node above a lowered limit sheds its excess where
		// there is room, even when the spread is otherwise even.
		{"max caps the target", []MoveNode{n("a", 6), n("b", 0)}, -1, 2, all, "a>b a>b"},
		{"lowered max sheds excess", []MoveNode{n("a", 3), n("b", 2), n("c", 0)}, -1, 1, all, "a>c"},
		{"lowered max, no room", []MoveNode{n("a", 2), n("b", 2)}, -1, 1, all, ""},
		{"lowered max, room too small", []MoveNode{n("a", 4), n("b", 1)}, -1, 2, all, "a>b"},
		{"lowered max, target out of resources", []MoveNode{n("a", 3), n("b", 0), n("c", 0)}, -1, 1,
			func(i, _ int) bool { return i != 1 }, "a>c"},
		{"lowered max, budget", []MoveNode{n("a", 4), n("b", 0), n("c", 0)}, 1, 2, all, "a>b"},
		{"lowered max, excess not movable", []MoveNode{fixed(n("a", 3), 0), n("b", 0)}, -1, 2, all, ""},
		{"lowered max, excess leaves its full group", []MoveNode{n("a", 3, "z1"), n("b", 1, "z2"), n("c", 2, "z2")}, -1, 2, all, "a>b"},
		{"lowered max, excess stays in its group", []MoveNode{n("a", 3, "z1"), n("b", 1, "z1"), n("c", 2, "z2"), n("d", 2, "z2")}, -1, 2, all, "a>b"},
		{"leaving tasks count against max", []MoveNode{n("a", 3), leaving(n("b", 1), 1), n("c", 2)}, -1, 2, all, ""},
		{"leaving tasks, room elsewhere", []MoveNode{n("a", 3), leaving(n("b", 1), 1), n("c", 0)}, -1, 2, all, "a>c"},
		{"lowered max, then the groups", []MoveNode{n("a", 4, "z1"), n("b", 0, "z1"), n("c", 0, "z2")}, -1, 2, all, "a>c a>c a>b"},
		// Preferences: the groups even out first, as Spread fills them,
		// then the nodes within each group.
		{"new group gets its share", []MoveNode{n("a", 5, "z1"), n("c", 0, "z2")}, -1, 0, all, "a>c a>c"},
		{"groups before nodes", []MoveNode{n("a", 4, "z1"), n("b", 1, "z1"), n("c", 0, "z2")}, -1, 0, all, "a>c a>c"},
		{"new zone of three", []MoveNode{n("a", 3, "z1"), n("b", 3, "z2"), n("c", 0, "z3")}, -1, 0, all, "a>c b>c"},
		{"new zone, budget", []MoveNode{n("a", 3, "z1"), n("b", 3, "z2"), n("c", 0, "z3")}, 1, 0, all, "a>c"},
		{"groups even, nodes within", []MoveNode{n("a", 3, "z1"), n("b", 1, "z1"), n("c", 5, "z2"), n("d", 0, "z2")}, 2, 0, all, "c>d c>d"},
		{"off by one group is even", []MoveNode{n("a", 3, "z1"), n("b", 2, "z2")}, -1, 0, all, ""},
		{"a group without room", []MoveNode{n("a", 3, "z1"), n("b", 3, "z2"), n("c", 0, "z3"), n("d", 0, "z4")}, -1, 0,
			func(i, _ int) bool { return i != 2 }, "a>d b>d"},
		{"a group that cannot give", []MoveNode{fixed(n("a", 4, "z1"), 0), n("b", 2, "z2"), n("c", 0, "z3")}, -1, 0, all, "b>c"},
		{"max caps a new group", []MoveNode{n("a", 6, "z1"), n("b", 0, "z2")}, -1, 2, all, "a>b a>b"},
		{"nodes without the label", []MoveNode{n("a", 4, "=x"), n("b", 0, "-")}, -1, 0, all, "a>b a>b"},
		// Two levels (zone, rack): zones first, then racks within a zone,
		// then nodes within a rack; the source is the fullest rack of the
		// fullest zone, the target the emptiest rack of the emptiest zone.
		{"two levels, new zone", []MoveNode{n("a", 4, "A", "r1"), n("b", 0, "A", "r2"), n("c", 4, "B", "r1"), n("d", 0, "C", "r1")}, -1, 0, all,
			"a>d c>d a>b"},
		{"two levels, fullest rack gives", []MoveNode{n("a", 1, "A", "r1"), n("b", 3, "A", "r2"), n("c", 4, "B", "r1"), n("d", 0, "B", "r2"), n("e", 0, "C", "r1")}, 2, 0, all,
			"b>e c>e"},
		{"two levels, emptiest rack takes", []MoveNode{n("a", 6, "A", "r1"), n("b", 2, "B", "r1"), n("c", 0, "B", "r2")}, 1, 0, all, "a>c"},
		{"three levels", []MoveNode{n("a", 6, "R1", "z1", "x"), n("b", 0, "R1", "z2", "x"), n("c", 0, "R2", "z3", "x")}, -1, 0, all,
			"a>c a>c a>c a>b"},
		{"three levels, nodes last", []MoveNode{n("a", 2, "R1", "z1", "x"), n("b", 2, "R1", "z1", "x"), n("c", 4, "R2", "z2", "x"), n("d", 0, "R2", "z2", "x")}, -1, 0, all,
			"c>d c>d"},
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

// TestPlanMovesEnds: on random clusters of up to three preference levels
// the moves end (bounded by the tasks), never fill a node beyond the
// limit, and a second call on their outcome finds no move: a later plan
// never undoes one.
func TestPlanMovesEnds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := func(int, int) bool { return true }
	for iter := 0; iter < 2000; iter++ {
		levels := rng.IntN(4)
		max := 0
		if rng.IntN(2) == 0 {
			max = 1 + rng.IntN(4)
		}
		nodes := make([]MoveNode, 2+rng.IntN(8))
		total := 0
		for i := range nodes {
			c := rng.IntN(8)
			mv := c
			if rng.IntN(4) == 0 {
				mv = rng.IntN(c + 1)
			}
			g := make([]string, levels)
			for l := range g {
				g[l] = string(rune('a' + rng.IntN(3)))
			}
			nodes[i] = MoveNode{ID: string(rune('A' + i)), Count: c, Movable: mv, Group: g}
			total += c
		}
		moves := PlanMoves(nodes, -1, max, all)
		if len(moves) > total {
			t.Fatalf("%+v: %d moves for %d tasks", nodes, len(moves), total)
		}
		after := append([]MoveNode(nil), nodes...)
		for _, m := range moves {
			after[m.From].Count--
			after[m.From].Movable--
			after[m.To].Count++
			if after[m.From].Movable < 0 {
				t.Fatalf("%+v: moves %v take an unmovable task", nodes, moves)
			}
			if max > 0 && after[m.To].Count > max {
				t.Fatalf("%+v (max %d): moves %v fill %s beyond it", nodes, max, moves, after[m.To].ID)
			}
		}
		// The moved tasks are in flight (not movable) on their targets;
		// the rest of the targets' tasks may move on.
		if again := PlanMoves(after, -1, max, all); len(again) != 0 {
			t.Fatalf("%+v (max %d): after %v, more moves %v", nodes, max, moves, again)
		}
	}
}

func TestGroupPath(t *testing.T) {
	prefs := []Preference{{Label: "zone"}, {Label: "rack"}}
	node := func(labels map[string]string) string {
		return strings.Join(GroupPath(prefs, api.Node{Labels: labels}), "|")
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"zone": "a", "rack": "1"}, "=a|=1"},
		{map[string]string{"zone": "a", "rack": "1", "x": "y"}, "=a|=1"},
		{map[string]string{"zone": "a"}, "=a|-"},
		{map[string]string{"zone": "a", "rack": ""}, "=a|="},
		{nil, "-|-"},
	} {
		if got := node(tc.labels); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.labels, got, tc.want)
		}
	}
	if GroupPath(nil, api.Node{Labels: map[string]string{"zone": "a"}}) != nil {
		t.Fatal("no preferences: one group")
	}
}

// BenchmarkPlanMovesNewZone: a zone of 100 nodes joins two of 450 nodes
// running 90,000 tasks, with every move allowed at once (parallelism 0):
// 30,000 moves, or the 2,501 a plan of the default budget asks for.
func BenchmarkPlanMovesNewZone(b *testing.B) {
	var nodes []MoveNode
	for i := 0; i < 1000; i++ {
		zone, count := "c", 0
		if i < 900 {
			zone, count = string(rune('a'+i%2)), 100
		}
		nodes = append(nodes, MoveNode{ID: string(rune(i)), Count: count, Movable: count, Group: []string{zone}})
	}
	for _, bc := range []struct {
		name   string
		budget int
		want   int
	}{{"all", -1, 30000}, {"budget", 2501, 2501}} {
		b.Run(bc.name, func(b *testing.B) {
			calls := 0
			canTake := func(int, int) bool { calls++; return true }
			for b.Loop() {
				if m := PlanMoves(nodes, bc.budget, 0, canTake); len(m) != bc.want {
					b.Fatalf("%d moves", len(m))
				}
			}
			b.ReportMetric(float64(calls)/float64(b.N), "canTake/op")
		})
	}
}

// TestPlanMovesEndsFiltered is TestPlanMovesEnds with the filters a
// service's constraints and resources put in the way: some nodes take
// nothing (the emptiest group among them, often), others only up to a
// capacity of their own. No move goes where canTake refuses, none fills a
// node beyond the limit, no node both gives and takes (a task moved twice
// or moved back), and a plan on the outcome has nothing to add.
func TestPlanMovesEndsFiltered(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 3000; iter++ {
		levels := rng.IntN(4)
		max := 0
		if rng.IntN(2) == 0 {
			max = 1 + rng.IntN(4)
		}
		nodes := make([]MoveNode, 2+rng.IntN(8))
		limit := make([]int, len(nodes)) // -1: takes nothing; 0: no cap
		for i := range nodes {
			c := rng.IntN(8)
			mv := c
			if rng.IntN(4) == 0 {
				mv = rng.IntN(c + 1)
			}
			g := make([]string, levels)
			for l := range g {
				g[l] = string(rune('a' + rng.IntN(3)))
			}
			nodes[i] = MoveNode{ID: string(rune('A' + i)), Count: c, Movable: mv, Group: g}
			switch rng.IntN(4) {
			case 0:
				limit[i] = -1
			case 1:
				limit[i] = c + rng.IntN(3)
			}
		}
		canTake := func(ns []MoveNode) func(i, extra int) bool {
			return func(i, extra int) bool {
				return limit[i] == 0 || limit[i] > 0 && ns[i].Count+extra < limit[i]
			}
		}
		moves := PlanMoves(nodes, -1, max, canTake(nodes))
		after := append([]MoveNode(nil), nodes...)
		in := make([]int, len(nodes))
		gave := make([]bool, len(nodes))
		for _, m := range moves {
			gave[m.From] = true
		}
		for _, m := range moves {
			if gave[m.To] {
				t.Fatalf("%+v limits %v (max %d): moves %v both give to and take from %s (churn)", nodes, limit, max, moves, nodes[m.To].ID)
			}
			if !canTake(nodes)(m.To, in[m.To]) {
				t.Fatalf("%+v limits %v (max %d): moves %v go where canTake refuses", nodes, limit, max, moves)
			}
			after[m.From].Count--
			after[m.From].Movable--
			after[m.To].Count++
			in[m.To]++
			if after[m.From].Movable < 0 {
				t.Fatalf("%+v: moves %v take an unmovable task", nodes, moves)
			}
			if max > 0 && after[m.To].Count > max {
				t.Fatalf("%+v (max %d): moves %v fill %s beyond it", nodes, max, moves, after[m.To].ID)
			}
		}
		if again := PlanMoves(after, -1, max, canTake(after)); len(again) != 0 {
			t.Fatalf("%+v limits %v (max %d): after %v, more moves %v", nodes, limit, max, moves, again)
		}
	}
}
