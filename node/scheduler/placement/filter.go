package placement

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// The filter pipeline follows swarmkit's manager/scheduler/filter.go: a node
// may take a new task only if every filter accepts it, and a refused node is
// attributed to the first filter that refused it, so that a task nobody can
// take gets a message saying why each node said no.

// NodeInfo is a node as the filters see it: the record plus what the tasks
// already on it (and those placed earlier in the same plan) use.
type NodeInfo struct {
	Node api.Node
	// Level is the protocol level the node's agent advertises (0:
	// unknown, counted as the base level; see LevelFilter).
	Level int
	// Unfit is why the node cannot persist its state (its gossip:
	// node/diskhealth), "" when it can: ReadyFilter refuses it.
	Unfit string
	// Reserved sums the reservations of the node's non-terminal tasks.
	Reserved api.Resources
	// Tasks counts the node's non-terminal tasks with desired state running.
	Tasks int
	// HostPorts are the host-mode published ports its placed, non-terminal
	// tasks hold (HostPortFilter; nil: none).
	HostPorts map[HostPort]bool

	// Index is the node's position in the plan's sorted node list: the
	// planner's bookkeeping, read only by MaxReplicasFilter (into
	// Request.PerNode).
	Index int
}

// Request is what a new task asks of a node.
type Request struct {
	// Level is what the spec needs of a node's agent (LevelFilter).
	Level LevelNeed

	Constraints  []Constraint
	Reservations api.Resources
	// MaxPerNode is the service's max replicas per node (0 = no limit)
	// and PerNode its tasks meant to run on each node, by NodeInfo.Index:
	// with both set, MaxReplicasFilter refuses a node at the limit. Spread
	// applies the limit as it places; the planner sets PerNode to explain.
	MaxPerNode int
	PerNode    []int
	// Shares are the allocated-share networks of the spec (ShareFilter).
	Shares []*NetShares
	// HostPorts are the spec's host-mode published ports (HostPortFilter).
	HostPorts []HostPort
}

// Filter accepts or refuses a node for a new task. Check must be pure and
// cheap: it runs once per candidate node per service in a plan. When it
// refuses, reason is a short phrase that reads after a node count, e.g.
// "drained" in "1 node drained".
type Filter interface {
	Check(n *NodeInfo, r *Request) (ok bool, reason string)
}

// ReadyFilter refuses nodes whose status is not ready, and ready nodes
// that cannot persist their state (NodeInfo.Unfit: a full disk), which
// would never see the task (their raft appends fail) or could not fetch
// its image.
type ReadyFilter struct{}

// Check implements Filter.
func (ReadyFilter) Check(n *NodeInfo, _ *Request) (bool, string) {
	switch {
	case n.Node.Status != api.NodeReady:
		return false, "not ready"
	case n.Unfit != "":
		return false, "with a full disk"
	}
	return true, ""
}

// AvailabilityFilter refuses paused and drained nodes: only active nodes take
// new tasks. (Paused nodes keep their tasks; the planner, not this filter,
// moves tasks off drained nodes.)
type AvailabilityFilter struct{}

// Check implements Filter.
func (AvailabilityFilter) Check(n *NodeInfo, _ *Request) (bool, string) {
	switch n.Node.Availability {
	case api.AvailabilityActive, "":
		return true, ""
	case api.AvailabilityPause:
		return false, "paused"
	case api.AvailabilityDrain:
		return false, "drained"
	default:
		return false, "with availability " + n.Node.Availability
	}
}

// ConstraintFilter refuses nodes that fail one of the request's constraints
// and names the first one failed.
type ConstraintFilter struct{}

// Check implements Filter.
func (ConstraintFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	if ok, c := MatchAll(r.Constraints, n.Node); !ok {
		return false, "unmatched constraint " + c.String()
	}
	return true, ""
}

// ResourceFilter refuses nodes where the request's reservations do not fit
// in capacity minus what is already reserved. A zero capacity is unlimited.
type ResourceFilter struct{}

// Check implements Filter.
func (ResourceFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	if what := ResourceShortfall(n, r.Reservations); what != "" {
		return false, "with insufficient " + what
	}
	return true, ""
}

// ResourceShortfall names the first resource of want that does not fit in
// n's capacity minus its reservations, or "" (the planner asks it again for
// each task it places on a node after the filters passed it).
func ResourceShortfall(n *NodeInfo, want api.Resources) string {
	capa, used := n.Node.Resources, n.Reserved
	// want > capa-used, not used+want > capa: a reservation near MaxInt64
	// (the spec allows any non-negative int64) would overflow the sum.
	if want.NanoCPUs > 0 && capa.NanoCPUs > 0 && want.NanoCPUs > capa.NanoCPUs-used.NanoCPUs {
		return "cpu"
	}
	if want.MemoryBytes > 0 && capa.MemoryBytes > 0 && want.MemoryBytes > capa.MemoryBytes-used.MemoryBytes {
		return "memory"
	}
	if want.Pids > 0 && capa.Pids > 0 && want.Pids > capa.Pids-used.Pids {
		return "pids"
	}
	return ""
}

// MaxReplicasFilter refuses nodes that already hold the request's
// MaxPerNode tasks of the service (swarmkit's MaxReplicasFilter). It reads
// NodeInfo.Index into PerNode; without PerNode it accepts every node.
type MaxReplicasFilter struct{}

// Check implements Filter.
func (MaxReplicasFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	if r.MaxPerNode > 0 && n.Index >= 0 && n.Index < len(r.PerNode) && r.PerNode[n.Index] >= r.MaxPerNode {
		return false, fmt.Sprintf("at max replicas per node (%d)", r.MaxPerNode)
	}
	return true, ""
}

// Pipeline is an ordered list of filters.
type Pipeline []Filter

// DefaultPipeline is ready, availability, protocol level, constraints,
// resources, max replicas per node, host-mode ports, network shares: the
// order in which refusals are attributed.
func DefaultPipeline() Pipeline {
	return Pipeline{ReadyFilter{}, AvailabilityFilter{}, LevelFilter{}, ConstraintFilter{}, ResourceFilter{}, MaxReplicasFilter{}, HostPortFilter{}, ShareFilter{}}
}

// Check runs the filters in order and returns the first refusal.
func (p Pipeline) Check(n *NodeInfo, r *Request) (bool, string) {
	ok, _, reason := p.check(n, r)
	return ok, reason
}

// check is Check plus the index of the refusing filter.
func (p Pipeline) check(n *NodeInfo, r *Request) (bool, int, string) {
	for i, f := range p {
		if ok, reason := f.Check(n, r); !ok {
			return false, i, reason
		}
	}
	return true, -1, ""
}

// Explain says why no node in nodes can take r, e.g.
// "no suitable node (2 nodes not ready, 1 node drained, 3 nodes unmatched
// constraint node.labels.zone==a)". Reasons appear in pipeline order, then
// in the order first seen.
func (p Pipeline) Explain(nodes []*NodeInfo, r *Request) string {
	if len(nodes) == 0 {
		return "no suitable node (no nodes in the cluster)"
	}
	counts := map[string]int{}
	stage := map[string]int{}
	var order []string
	for _, n := range nodes {
		ok, i, reason := p.check(n, r)
		if ok {
			continue
		}
		if counts[reason] == 0 {
			order = append(order, reason)
			stage[reason] = i
		}
		counts[reason]++
	}
	sort.SliceStable(order, func(a, b int) bool { return stage[order[a]] < stage[order[b]] })
	if len(order) == 0 {
		return "no suitable node"
	}
	parts := make([]string, len(order))
	for i, reason := range order {
		noun := "nodes"
		if counts[reason] == 1 {
			noun = "node"
		}
		parts[i] = fmt.Sprintf("%d %s %s", counts[reason], noun, reason)
	}
	return "no suitable node (" + strings.Join(parts, ", ") + ")"
}
