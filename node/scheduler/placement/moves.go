package placement

import (
	"github.com/shoal-org/shoal/api"
)

// Rebalancing moves (the planner's calm.go applies them): which tasks of a
// replicated service should move to even out its spread once a node joined
// or came back, or once its max replicas per node was lowered.

// MoveNode is one node a rebalanced service may run on: its active tasks
// of the service (moves counted at their target), how many of them may
// move, and its group under the service's preferences (GroupPath: one
// value per preference, outermost first; all nodes have as many).
// Leaving are its tasks that moves in flight replace: not in Count (the
// spread counts a move at its target) but still running until the move's
// new task is ready, so they count against maxPerNode. Faulty is a node
// where the service's tasks kept failing lately (the planner's failure
// avoidance): it takes no move, since Spread uses such a node only when
// no other has room and a moved task runs somewhere already; it may still
// give its tasks away.
type MoveNode struct {
	ID      string
	Count   int
	Movable int
	Group   []string
	Leaving int
	Faulty  bool
}

// Move is one rebalancing move, from and to indexes of PlanMoves' nodes.
type Move struct{ From, To int }

// PlanMoves decides rebalancing moves (pure), one at a time, at most budget
// (negative = no limit). A node may take a task if it is not Faulty, is
// below maxPerNode
// (when set, counting its Leaving tasks) and canTake(i, extra) says so
// (node i with extra more tasks of the service placed by this plan); a
// node gives one only if it has a movable task.
//
//  1. Excess first: the node furthest above a lowered maxPerNode gives one
//     task, placed the way Spread places a new one (the emptiest group
//     with room at each level, then the emptiest node), counting the
//     source without it; none moves while no node has room.
//  2. Then the groups, outermost level first, as Spread fills them: among
//     the groups of one parent, when the fullest that can give holds at
//     least two tasks more than the emptiest that can take, a task moves
//     from the fullest node of the fullest subgroups of the one to the
//     emptiest node of the emptiest subgroups of the other. Of several
//     parents at a level, the widest gap goes first.
//  3. Last the nodes within each innermost group, the same way.
//
// Ties go to the first in the given order. Each move lowers the excess
// or, leaving every level above it as it was, the spread of one level, so
// the moves end, and a later plan on their outcome finds nothing to undo:
// a new group (a node with a label value of its own) gets its share of
// the tasks, and no move ever fills a node beyond maxPerNode.
func PlanMoves(nodes []MoveNode, budget, maxPerNode int, canTake func(i, extra int) bool) []Move {
	if len(nodes) < 2 {
		return nil
	}
	ns := append([]MoveNode(nil), nodes...)
	p := &moveTree{ns: ns, extra: make([]int, len(ns)), room: make([]bool, len(ns)),
		max: maxPerNode, canTake: canTake, root: buildMoveTree(ns)}
	for i := range ns {
		p.setRoom(i)
	}
	var out []Move
	for budget != 0 {
		m, ok := p.best()
		if !ok {
			break
		}
		out = append(out, m)
		ns[m.From].Count--
		ns[m.From].Movable--
		ns[m.To].Count++
		p.extra[m.To]++
		// Only these two changed: canTake is asked once per node and
		// move target, not once per node and move.
		p.setRoom(m.From)
		p.setRoom(m.To)
		budget--
	}
	return out
}

// setRoom notes whether node i may take a task now.
func (p *moveTree) setRoom(i int) {
	p.room[i] = !p.ns[i].Faulty && (p.max <= 0 || p.ns[i].Count+p.ns[i].Leaving < p.max) && p.canTake(i, p.extra[i])
}

// moveUnit is a group of the tree (kids: its subgroups or, innermost, its
// nodes) or a node (node >= 0). count, give and take are recomputed for
// each move: the tasks below it, whether one of them may move, whether a
// node below it may take one.
type moveUnit struct {
	node       int
	kids       []*moveUnit
	count      int
	give, take bool
	byValue    map[string]*moveUnit // while building
}

// moveTree is PlanMoves' working state.
type moveTree struct {
	ns      []MoveNode
	extra   []int
	room    []bool
	max     int
	canTake func(i, extra int) bool
	root    *moveUnit
}

// buildMoveTree makes the tree of groups: a level per preference value,
// the nodes at the leaves, kids in order of their first node.
func buildMoveTree(ns []MoveNode) *moveUnit {
	root := &moveUnit{node: -1}
	for i, n := range ns {
		u := root
		for _, v := range n.Group {
			k := u.byValue[v]
			if k == nil {
				if u.byValue == nil {
					u.byValue = map[string]*moveUnit{}
				}
				k = &moveUnit{node: -1}
				u.byValue[v] = k
				u.kids = append(u.kids, k)
			}
			u = k
		}
		u.kids = append(u.kids, &moveUnit{node: i})
	}
	return root
}

// sum recomputes count, give and take below u.
func (p *moveTree) sum(u *moveUnit) {
	if u.node >= 0 {
		n := p.ns[u.node]
		u.count, u.give, u.take = n.Count, n.Movable > 0, p.room[u.node]
		return
	}
	u.count, u.give, u.take = 0, false, false
	for _, k := range u.kids {
		p.sum(k)
		u.count += k.count
		u.give = u.give || k.give
		u.take = u.take || k.take
	}
}

// best is the next move, if any (PlanMoves' rules).
func (p *moveTree) best() (Move, bool) {
	if p.max > 0 {
		from := -1
		for i, n := range p.ns {
			if n.Movable > 0 && n.Count > p.max && (from < 0 || n.Count > p.ns[from].Count) {
				from = i
			}
		}
		if from >= 0 {
			// Placed as a new task would be, the source counted without
			// it (still at or above the limit, so it takes nothing).
			p.ns[from].Count--
			p.sum(p.root)
			to := p.root.emptiest()
			p.ns[from].Count++
			if to >= 0 {
				return Move{From: from, To: to}, true
			}
		}
	}
	p.sum(p.root)
	// Level by level: the parents at depth d, outermost first.
	level := []*moveUnit{p.root}
	for len(level) > 0 {
		var bestFrom, bestTo *moveUnit
		gap := 1
		var next []*moveUnit
		for _, u := range level {
			if u.node >= 0 {
				continue
			}
			next = append(next, u.kids...)
			var from, to *moveUnit
			for _, k := range u.kids {
				if k.give && (from == nil || k.count > from.count) {
					from = k
				}
			}
			for _, k := range u.kids {
				if k != from && k.take && (to == nil || k.count < to.count) {
					to = k
				}
			}
			if from != nil && to != nil && from.count-to.count > gap {
				bestFrom, bestTo, gap = from, to, from.count-to.count
			}
		}
		if bestFrom != nil {
			return Move{From: bestFrom.fullest(), To: bestTo.emptiest()}, true
		}
		level = next
	}
	return Move{}, false
}

// fullest walks down from u to the node that gives a task: at each level
// the kid with the most tasks among those that can give one.
func (u *moveUnit) fullest() int {
	for u.node < 0 {
		var b *moveUnit
		for _, k := range u.kids {
			if k.give && (b == nil || k.count > b.count) {
				b = k
			}
		}
		if b == nil {
			return -1
		}
		u = b
	}
	return u.node
}

// emptiest walks down from u to the node that takes a task: at each level
// the kid with the fewest tasks among those that can take one, as Spread
// picks a new task's node.
func (u *moveUnit) emptiest() int {
	for u.node < 0 {
		var b *moveUnit
		for _, k := range u.kids {
			if k.take && (b == nil || k.count < b.count) {
				b = k
			}
		}
		if b == nil {
			return -1
		}
		u = b
	}
	return u.node
}

// GroupPath is the node's group under prefs, one element per preference
// in order: its value of the label, a missing label being a value of its
// own (distinct from an empty one). Nodes with equal paths are the ones a
// Spread puts in one leaf.
func GroupPath(prefs []Preference, n api.Node) []string {
	if len(prefs) == 0 {
		return nil
	}
	out := make([]string, len(prefs))
	for i, p := range prefs {
		if v, ok := p.value(n); ok {
			out[i] = "=" + v
		} else {
			out[i] = "-"
		}
	}
	return out
}
