package placement

import (
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestParseConstraint(t *testing.T) {
	cases := []struct {
		in   string
		want Constraint
		err  bool
	}{
		{"node.id==abc", Constraint{"node.id", "==", "abc"}, false},
		{" node.hostname != web1 ", Constraint{"node.hostname", "!=", "web1"}, false},
		{"node.labels.zone==a", Constraint{"node.labels.zone", "==", "a"}, false},
		{"node.labels.zone == a", Constraint{"node.labels.zone", "==", "a"}, false},
		{"node.role==manager", Constraint{"node.role", "==", "manager"}, false},
		{"node.role==boss", Constraint{}, true},
		{"node.labels.==a", Constraint{}, true},
		{"node.zone==a", Constraint{}, true},
		{"node.id=a", Constraint{}, true},
		{"node.id==", Constraint{}, true},
		{"==a", Constraint{}, true},
		{"node.id==a==b", Constraint{}, true},
		{"node labels.x==a", Constraint{}, true},
	}
	for _, tc := range cases {
		got, err := ParseConstraint(tc.in)
		if tc.err {
			if err == nil || !errors.Is(err, ErrInvalidConstraint) {
				t.Errorf("%q: err %v, want ErrInvalidConstraint", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if cs, err := ParseConstraints(nil); cs != nil || err != nil {
		t.Fatalf("nil input: %v %v", cs, err)
	}
	if _, err := ParseConstraints([]string{"node.id==a", "bad"}); err == nil {
		t.Fatal("ParseConstraints accepted a bad expression")
	}
}

func TestConstraintMatch(t *testing.T) {
	n := api.Node{ID: "abc123", Hostname: "Web1", Labels: map[string]string{"zone": "a"}, Voter: true}
	cases := []struct {
		expr string
		want bool
	}{
		{"node.id==abc123", true},
		{"node.id!=abc123", false},
		{"node.hostname==web1", true}, // case-insensitive, as Swarm
		{"node.hostname!=web2", true},
		{"node.labels.zone==a", true},
		{"node.labels.zone==b", false},
		{"node.labels.zone!=b", true},
		{"node.labels.rack==r1", false}, // missing label
		{"node.labels.rack!=r1", true},
		{"node.role==manager", true},
		{"node.role==worker", false},
	}
	for _, tc := range cases {
		c, err := ParseConstraint(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(n); got != tc.want {
			t.Errorf("%s on %+v = %v, want %v", tc.expr, n, got, tc.want)
		}
	}
}

func TestFilters(t *testing.T) {
	zoneA, _ := ParseConstraints([]string{"node.labels.zone==a"})
	node := func(status, avail string, zone string, mem, used int64) *NodeInfo {
		return &NodeInfo{
			Node: api.Node{ID: "n", Status: status, Availability: avail,
				Labels: map[string]string{"zone": zone}, Resources: api.Resources{MemoryBytes: mem}},
			Reserved: api.Resources{MemoryBytes: used},
		}
	}
	// unfit marks a node that says it cannot persist its state.
	unfit := func(n *NodeInfo) *NodeInfo { n.Unfit = "disk full: raft log writes fail"; return n }
	req := &Request{Constraints: zoneA, Reservations: api.Resources{MemoryBytes: 100}}
	cases := []struct {
		name   string
		n      *NodeInfo
		ok     bool
		reason string
	}{
		{"fits", node(api.NodeReady, api.AvailabilityActive, "a", 1000, 0), true, ""},
		{"unlimited", node(api.NodeReady, api.AvailabilityActive, "a", 0, 1<<40), true, ""},
		{"exactly full", node(api.NodeReady, api.AvailabilityActive, "a", 1000, 900), true, ""},
		{"down", node(api.NodeDown, api.AvailabilityActive, "a", 0, 0), false, "not ready"},
		{"paused", node(api.NodeReady, api.AvailabilityPause, "a", 0, 0), false, "paused"},
		{"drained", node(api.NodeReady, api.AvailabilityDrain, "a", 0, 0), false, "drained"},
		{"other zone", node(api.NodeReady, api.AvailabilityActive, "b", 0, 0), false, "unmatched constraint node.labels.zone==a"},
		{"full", node(api.NodeReady, api.AvailabilityActive, "a", 1000, 901), false, "with insufficient memory"},
		{"first refusal wins", node(api.NodeDown, api.AvailabilityDrain, "b", 1, 1), false, "not ready"},
		{"disk full", unfit(node(api.NodeReady, api.AvailabilityActive, "a", 1000, 0)), false, "with a full disk"},
		{"down and disk full", unfit(node(api.NodeDown, api.AvailabilityActive, "a", 1000, 0)), false, "not ready"},
	}
	p := DefaultPipeline()
	for _, tc := range cases {
		ok, reason := p.Check(tc.n, req)
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, ok, reason, tc.ok, tc.reason)
		}
	}
}

// TestResourceShortfallHugeReservation: a reservation near MaxInt64 on a
// node that already has reservations overflowed used+want to a negative
// sum, so the task "fit" (and the node's reserved total went negative).
func TestResourceShortfallHugeReservation(t *testing.T) {
	const huge = 1<<63 - 1
	n := &NodeInfo{
		Node:     api.Node{Resources: api.Resources{NanoCPUs: 4e9, MemoryBytes: 8 << 30, Pids: 4096}},
		Reserved: api.Resources{NanoCPUs: 1e9, MemoryBytes: 1 << 30, Pids: 100},
	}
	for _, tc := range []struct {
		want api.Resources
		what string
	}{
		{api.Resources{NanoCPUs: huge}, "cpu"},
		{api.Resources{MemoryBytes: huge}, "memory"},
		{api.Resources{Pids: huge}, "pids"},
		{api.Resources{NanoCPUs: 3e9, MemoryBytes: 7 << 30, Pids: 3996}, ""},
	} {
		if got := ResourceShortfall(n, tc.want); got != tc.what {
			t.Errorf("shortfall of %+v = %q, want %q", tc.want, got, tc.what)
		}
	}
}

func TestExplain(t *testing.T) {
	zoneA, _ := ParseConstraints([]string{"node.labels.zone==a"})
	req := &Request{Constraints: zoneA}
	var nodes []*NodeInfo
	add := func(status, avail, zone string) {
		nodes = append(nodes, &NodeInfo{Node: api.Node{Status: status, Availability: avail, Labels: map[string]string{"zone": zone}}})
	}
	add(api.NodeReady, api.AvailabilityActive, "b") // constraint first seen before the others
	add(api.NodeDown, api.AvailabilityActive, "a")
	add(api.NodeReady, api.AvailabilityDrain, "a")
	add(api.NodeReady, api.AvailabilityActive, "b")
	add("unknown", api.AvailabilityActive, "a")
	add(api.NodeReady, api.AvailabilityActive, "c")
	want := "no suitable node (2 nodes not ready, 1 node drained, 3 nodes unmatched constraint node.labels.zone==a)"
	if got := DefaultPipeline().Explain(nodes, req); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := DefaultPipeline().Explain(nil, req); got != "no suitable node (no nodes in the cluster)" {
		t.Fatalf("empty cluster: %q", got)
	}
}

// TestMaxReplicasFilter: a node holding the service's max replicas per
// node is refused and Explain says so; without the per-node counts (or
// without a limit) every node passes.
func TestMaxReplicasFilter(t *testing.T) {
	nodes := []*NodeInfo{
		{Node: api.Node{ID: "a", Status: api.NodeReady}, Index: 0},
		{Node: api.Node{ID: "b", Status: api.NodeReady}, Index: 1},
		{Node: api.Node{ID: "c", Status: api.NodeDown}, Index: 2},
	}
	p := DefaultPipeline()
	for _, tc := range []struct {
		name string
		req  Request
		ok   [3]bool
	}{
		{"no limit", Request{PerNode: []int{5, 5, 5}}, [3]bool{true, true, false}},
		{"no counts", Request{MaxPerNode: 1}, [3]bool{true, true, false}},
		{"at limit", Request{MaxPerNode: 1, PerNode: []int{1, 0, 0}}, [3]bool{false, true, false}},
		{"above limit", Request{MaxPerNode: 2, PerNode: []int{3, 2, 0}}, [3]bool{false, false, false}},
	} {
		for i, n := range nodes {
			if ok, _ := p.Check(n, &tc.req); ok != tc.ok[i] {
				t.Errorf("%s: node %s ok %v, want %v", tc.name, n.Node.ID, ok, tc.ok[i])
			}
		}
	}
	req := Request{MaxPerNode: 1, PerNode: []int{1, 1, 0}}
	want := "no suitable node (1 node not ready, 2 nodes at max replicas per node (1))"
	if got := p.Explain(nodes, &req); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
