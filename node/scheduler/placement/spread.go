package placement

import (
	"container/heap"

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
// The caller updates the chosen node's NodeInfo (Tasks, Reserved) and then
// calls Took. A Spread is used by one goroutine for one service.
type Spread struct {
	cands []candidate
	h     candHeap
}

// candidate is a node that may take tasks of the service being placed.
type candidate struct {
	n   *NodeInfo
	svc int // the service's non-terminal tasks on the node
}

// NewSpread returns an empty Spread with room for n nodes.
func NewSpread(n int) *Spread {
	return &Spread{cands: make([]candidate, 0, n), h: make(candHeap, 0, n)}
}

// Add offers node n, which already runs svcTasks tasks of the service. Add
// every node before the first Pick.
func (s *Spread) Add(n *NodeInfo, svcTasks int) {
	s.cands = append(s.cands, candidate{n: n, svc: svcTasks})
	s.h = append(s.h, &s.cands[len(s.cands)-1])
}

// Pick returns the best node that still has room for want, or nil when
// none has. A node without room leaves for good (reservations only grow
// while a plan places tasks). The heap is ordered once, at the first Pick.
func (s *Spread) Pick(want api.Resources) *NodeInfo {
	if s.cands != nil {
		heap.Init(&s.h)
		s.cands = nil // the candidates live on through s.h
	}
	for s.h.Len() > 0 {
		c := s.h[0]
		if ResourceShortfall(c.n, want) != "" {
			heap.Pop(&s.h)
			continue
		}
		return c.n
	}
	return nil
}

// Took records that the node Pick returned got one more task of the
// service (and that the caller updated its NodeInfo).
func (s *Spread) Took() {
	s.h[0].svc++
	heap.Fix(&s.h, 0)
}

// candHeap orders candidates by fewest tasks of the service, then fewest
// tasks overall, then node ID.
type candHeap []*candidate

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
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
