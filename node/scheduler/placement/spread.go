package placement

import (
	"container/heap"
	"sort"

	"github.com/shoal-org/shoal/api"
)

// Spread picks the nodes of a replicated service's new tasks, one at a
// time: the node with the fewest tasks of the service, then the fewest
// tasks overall, then the lowest node ID, so placement spreads evenly and
// deterministically. It is a heap: each pick costs O(log nodes), which is
// what lets one plan place 100,000 tasks on 1,000 nodes. Only nodes the
// pipeline accepted are added; resources are checked again at every pick
// because they shrink as the plan fills a node.
//
// With placement preferences the nodes form a tree, as in swarmkit's
// scheduler: one level per preference, a branch per label value (the nodes
// without the label form one more branch), a heap at each leaf. A pick
// walks down to the branch with the fewest tasks of the service (ties: by
// value, the nodes without the label last), so every group gets its share
// before any node does; a branch whose nodes have no room left drops out.
// Picking one task at a time this way fills the groups as evenly as
// swarmkit's batch split.
//
// With a limit per node (max replicas per node), a node that holds that
// many tasks of the service drops out.
//
// The caller updates the chosen node's NodeInfo (Tasks, Reserved) and then
// calls Took. A Spread is used by one goroutine for one service.
type Spread struct {
	// Admit, when set, is asked at every pick as resources are: a node it
	// refuses leaves for good (it must stay refused as the plan goes on,
	// as running out of network shares does).
	Admit func(*NodeInfo) bool

	prefs []Preference
	max   int
	root  *group
	cands []candidate // backing array of the candidates (pointers stay valid)
	path  []*group    // the groups of the last pick, root first
	leaf  *group      // the leaf of the last pick
}

// group is one branch of the tree: the nodes sharing a label value at one
// level (and every level above). A leaf holds the nodes' heap.
type group struct {
	value   string
	missing bool // the nodes without the label
	count   int  // tasks of the service on the group's nodes
	dead    bool // no node of the group has room left
	kids    []*group
	byValue map[string]*group // kids by value ("\x00" = missing), while nodes are added
	h       candHeap
	inited  bool
}

// candidate is a node that may take tasks of the service being placed.
type candidate struct {
	n      *NodeInfo
	svc    int  // the service's non-terminal tasks on the node
	faulty bool // the service's tasks kept failing there lately: tried last
}

// NewSpread returns an empty Spread with room for n nodes, spreading over
// prefs (none: over the nodes alone) and never putting more than
// maxPerNode tasks of the service on one node (0: no limit).
func NewSpread(n int, prefs []Preference, maxPerNode int) *Spread {
	return &Spread{prefs: prefs, max: maxPerNode, root: &group{}, cands: make([]candidate, 0, n)}
}

// Add offers node n, which already runs svcTasks tasks of the service. Add
// every node before the first Pick.
func (s *Spread) Add(n *NodeInfo, svcTasks int) { s.AddFaulty(n, svcTasks, false) }

// AddFaulty is Add for a node that may be faulty for the service (its
// tasks kept failing or being rejected there lately: a broken runtime, a
// disk too full for the image): within its group such a node is picked
// only when no other node has room, as swarmkit's scheduler does, so that
// a replacement does not go back to the node its predecessors died on
// because that node now runs the fewest tasks.
func (s *Spread) AddFaulty(n *NodeInfo, svcTasks int, faulty bool) {
	if len(s.cands) == cap(s.cands) {
		// A new backing array: the heaps point into the old one.
		s.cands = make([]candidate, 0, max(8, cap(s.cands)))
	}
	s.cands = append(s.cands, candidate{n: n, svc: svcTasks, faulty: faulty})
	g := s.root
	g.count += svcTasks
	for _, p := range s.prefs {
		v, ok := p.value(n.Node)
		key := v
		if !ok {
			key = "\x00"
		}
		k := g.byValue[key]
		if k == nil {
			if g.byValue == nil {
				g.byValue = map[string]*group{}
			}
			k = &group{value: v, missing: !ok}
			g.byValue[key] = k
			g.kids = append(g.kids, k)
		}
		g = k
		g.count += svcTasks
	}
	g.h = append(g.h, &s.cands[len(s.cands)-1])
}

// Pick returns the best node that still has room for want, or nil when
// none has. A node without room (or at the limit) leaves for good:
// reservations and counts only grow while a plan places tasks.
func (s *Spread) Pick(want api.Resources) *NodeInfo {
	for !s.root.dead {
		g := s.root
		s.path = append(s.path[:0], g)
		for len(g.kids) > 0 {
			if g.byValue != nil {
				g.byValue = nil
				sort.Slice(g.kids, func(i, j int) bool {
					a, b := g.kids[i], g.kids[j]
					if a.missing != b.missing {
						return b.missing
					}
					return a.value < b.value
				})
			}
			var best *group
			for _, k := range g.kids {
				if !k.dead && (best == nil || k.count < best.count) {
					best = k
				}
			}
			g = best
			s.path = append(s.path, g)
		}
		if n := s.pickLeaf(g, want); n != nil {
			s.leaf = g
			return n
		}
		// The leaf is spent: so is every group above it whose branches
		// all are.
		for i := len(s.path) - 1; i >= 0 && allDead(s.path[i].kids); i-- {
			s.path[i].dead = true
		}
	}
	return nil
}

// allDead reports whether every group of gs is spent (true for none: a
// leaf).
func allDead(gs []*group) bool {
	for _, g := range gs {
		if !g.dead {
			return false
		}
	}
	return true
}

// pickLeaf returns the best node of leaf g with room for want.
func (s *Spread) pickLeaf(g *group, want api.Resources) *NodeInfo {
	if !g.inited {
		heap.Init(&g.h)
		g.inited = true
	}
	for g.h.Len() > 0 {
		c := g.h[0]
		if (s.max > 0 && c.svc >= s.max) || ResourceShortfall(c.n, want) != "" || (s.Admit != nil && !s.Admit(c.n)) {
			heap.Pop(&g.h)
			continue
		}
		return c.n
	}
	return nil
}

// Took records that the node Pick returned got one more task of the
// service (and that the caller updated its NodeInfo).
func (s *Spread) Took() {
	s.leaf.h[0].svc++
	heap.Fix(&s.leaf.h, 0)
	for _, g := range s.path {
		g.count++
	}
}

// candHeap orders candidates healthy before faulty, then by fewest tasks
// of the service, then fewest tasks overall, then node ID.
type candHeap []*candidate

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.faulty != b.faulty {
		return !a.faulty
	}
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.n.Tasks != b.n.Tasks {
		return a.n.Tasks < b.n.Tasks
	}
	return a.n.Node.ID < b.n.Node.ID
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(*candidate)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
