package placement

import (
	"strings"

	"github.com/shoal-org/shoal/api"
)

// Rebalancing moves (the planner's calm.go applies them): which tasks of a
// replicated service should move to even out its spread once a node joined
// or came back, or once its max replicas per node was lowered.

// MoveNode is one node a rebalanced service may run on: its active tasks
// of the service (moves counted at their target), how many of them may
// move, and its group (GroupKey of the service's preferences): tasks move
// only within a group, so the spread over label values stays as the
// preferences made it.
type MoveNode struct {
	ID      string
	Count   int
	Movable int
	Group   string
}

// Move is one rebalancing move, from and to indexes of PlanMoves' nodes.
type Move struct{ From, To int }

// PlanMoves decides rebalancing moves (pure): while, within a group, the
// fullest node that has a movable task holds at least two tasks more than
// the emptiest node that can take one (canTake(i, extra): node i with
// extra more tasks of the service placed by this plan; below maxPerNode
// when that is set), move one, at most budget moves (negative = no
// limit). The group with the widest gap goes first; ties go to the first
// node in the given order. A node above a lowered maxPerNode always has a
// gap of two or more to a node that may take a task, so its excess moves
// where there is room (and stays where there is none).
func PlanMoves(nodes []MoveNode, budget, maxPerNode int, canTake func(i, extra int) bool) []Move {
	ns := append([]MoveNode(nil), nodes...)
	extra := make([]int, len(ns))
	var out []Move
	for budget != 0 {
		m, ok := bestMove(ns, extra, maxPerNode, canTake)
		if !ok {
			break
		}
		out = append(out, m)
		ns[m.From].Count--
		ns[m.From].Movable--
		ns[m.To].Count++
		extra[m.To]++
		budget--
	}
	return out
}

// bestMove finds, in each group, the fullest node with a movable task and
// the emptiest other node that can take one, and returns the pair of the
// group with the widest gap, if it is more than one.
func bestMove(ns []MoveNode, extra []int, maxPerNode int, canTake func(i, extra int) bool) (Move, bool) {
	type pair struct{ from, to int }
	groups := map[string]*pair{}
	var order []*pair
	for i, n := range ns {
		g := groups[n.Group]
		if g == nil {
			g = &pair{-1, -1}
			groups[n.Group] = g
			order = append(order, g)
		}
		if n.Movable > 0 && (g.from < 0 || n.Count > ns[g.from].Count) {
			g.from = i
		}
	}
	for i, n := range ns {
		g := groups[n.Group]
		if i == g.from || (g.to >= 0 && n.Count >= ns[g.to].Count) ||
			(maxPerNode > 0 && n.Count >= maxPerNode) || !canTake(i, extra[i]) {
			continue
		}
		g.to = i
	}
	best, gap := Move{}, 1
	for _, g := range order {
		if g.from >= 0 && g.to >= 0 && ns[g.from].Count-ns[g.to].Count > gap {
			best, gap = Move{From: g.from, To: g.to}, ns[g.from].Count-ns[g.to].Count
		}
	}
	return best, gap > 1
}

// GroupKey is the node's group under prefs: its value of each preference's
// label in order, a missing label being a value of its own. Nodes with
// equal keys are the ones a Spread puts in one leaf.
func GroupKey(prefs []Preference, n api.Node) string {
	if len(prefs) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range prefs {
		if v, ok := p.value(n); ok {
			b.WriteString("=" + v)
		} else {
			b.WriteString("-")
		}
		b.WriteByte(0)
	}
	return b.String()
}
