package scheduler_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// Rebalancing across the groups of placement preferences and off nodes
// above a lowered max replicas per node (the pure decision is
// placement.PlanMoves, table-tested there).

// zoneCluster makes one node per "node=zone" pair, labelled zone=<zone>.
func zoneCluster(nodes ...string) *simcluster.Cluster {
	c := simcluster.New(t0)
	for _, nz := range nodes {
		id, zone, _ := strings.Cut(nz, "=")
		c.AddNode(id, map[string]string{"zone": zone})
	}
	return c
}

// rebalanceRun steps the cluster until nothing changes (jumping to the
// plan's wake), failing as soon as the service runs fewer than want tasks,
// more moves than maxMoving are in flight, or a node other than those in
// over holds more than limit tasks meant to run (limit 0: no check). It
// returns the most moves in flight at once.
func rebalanceRun(t *testing.T, c *simcluster.Cluster, svc string, want, maxMoving, limit int, over ...string) int {
	t.Helper()
	most := 0
	for i := 0; i < 300; i++ {
		p := step(t, c)
		moving := 0
		for _, tk := range c.Tasks {
			if tk.ServiceID == svc && tk.Replaces != "" && tk.DesiredState == api.TaskRunning && !taskReady(tk) {
				moving++
			}
		}
		most = max(most, moving)
		if maxMoving > 0 && moving > maxMoving {
			t.Fatalf("step %d: %d moves in flight, parallelism %d: %s", i, moving, maxMoving, simcluster.Summarize(p))
		}
		if limit > 0 {
			per := map[string]int{}
			for _, tk := range c.Active(svc) {
				if tk.NodeID != "" && tk.State != api.TaskNew && !api.TaskTerminal(tk.State) {
					per[tk.NodeID]++
				}
			}
			for n, k := range per {
				if k > limit && !strings.Contains(" "+strings.Join(over, " ")+" ", " "+n+" ") {
					t.Fatalf("step %d: %s holds %d tasks, limit %d: %s", i, n, k, limit, simcluster.Summarize(p))
				}
			}
		}
		moved := c.Report()
		if got := runningCount(c, svc); got < want {
			t.Fatalf("step %d: %d running, below the %d replicas: %s", i, got, want, simcluster.Summarize(p))
		}
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				return most
			}
			c.Now = p.NextWake
		}
	}
	t.Fatal("no convergence")
	return most
}

// TestRebalanceNewZone: two zones of one node run 3 tasks each; a node
// joins in a new zone. The zones even out to 2/2/2 by start-first moves
// (never fewer than 6 running), a few at a time under the update config,
// unless the service opted out or the new node may not take the tasks.
func TestRebalanceNewZone(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spec      func(*api.ServiceSpec)
		node      func(c *simcluster.Cluster)
		maxMoving int
		want      string
	}{
		{"one at a time", func(sp *api.ServiceSpec) { sp.UpdateConfig.Parallelism = 1 }, nil, 1, "n1=2 n2=2 n3=2"},
		{"all at once", func(sp *api.ServiceSpec) { sp.UpdateConfig.Parallelism = 0 }, nil, 2, "n1=2 n2=2 n3=2"},
		{"with a delay", func(sp *api.ServiceSpec) { sp.UpdateConfig.Delay = 10 * time.Second }, nil, 1, "n1=2 n2=2 n3=2"},
		{"within max replicas per node", func(sp *api.ServiceSpec) { sp.MaxReplicasPerNode = 3 }, nil, 1, "n1=2 n2=2 n3=2"},
		{"opted out", func(sp *api.ServiceSpec) { sp.NoRebalance = true }, nil, 0, "n1=3 n2=3 n3=0"},
		{"constraint keeps it out", func(sp *api.ServiceSpec) { sp.Constraints = []string{"node.labels.zone!=c"} }, nil, 0, "n1=3 n2=3 n3=0"},
		{"new node paused", nil, func(c *simcluster.Cluster) { c.Nodes["n3"].Availability = api.AvailabilityPause }, 0, "n1=3 n2=3 n3=0"},
		{"new node drained", nil, func(c *simcluster.Cluster) { c.Nodes["n3"].Availability = api.AvailabilityDrain }, 0, "n1=3 n2=3 n3=0"},
		{"new node too old for the spec", func(sp *api.ServiceSpec) { sp.ReadOnly = true },
			func(c *simcluster.Cluster) { c.Levels = map[string]int{"n1": 3, "n2": 3, "n3": 2} }, 0, "n1=3 n2=3 n3=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := zoneCluster("n1=a", "n2=b")
			c.Levels = map[string]int{"n1": 3, "n2": 3}
			sp := testSpec("web", 6)
			sp.UpdateConfig.Parallelism = 1
			sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
			if tc.spec != nil {
				tc.spec(&sp)
			}
			s := c.CreateService(sp)
			converge(t, c)
			if got := spreadOf(c, s.ID, "n1", "n2"); got != "n1=3 n2=3" {
				t.Fatalf("before: %s", got)
			}
			c.AddNode("n3", map[string]string{"zone": "c"})
			if tc.node != nil {
				tc.node(c)
			}
			limit := int(sp.MaxReplicasPerNode)
			most := rebalanceRun(t, c, s.ID, 6, max(sp.UpdateConfig.Parallelism, 0), limit)
			if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != tc.want {
				t.Fatalf("spread %s, want %s", got, tc.want)
			}
			if most > tc.maxMoving || (tc.maxMoving > 0 && most == 0) {
				t.Fatalf("%d moves in flight at most, want %d", most, tc.maxMoving)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// TestRebalanceNestedPreferences: with two preferences (zone, then rack)
// a node in a new zone gets the zone's share first; the racks within a
// zone and the nodes within a rack even out after.
func TestRebalanceNestedPreferences(t *testing.T) {
	c := simcluster.New(t0)
	c.AddNode("n1", map[string]string{"zone": "a", "rack": "1"})
	c.AddNode("n2", map[string]string{"zone": "a", "rack": "2"})
	c.AddNode("n3", map[string]string{"zone": "b", "rack": "1"})
	sp := testSpec("web", 6)
	sp.UpdateConfig.Parallelism = 2
	sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}
	s := c.CreateService(sp)
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=2 n2=1 n3=3" && got != "n1=1 n2=2 n3=3" {
		t.Fatalf("before: %s", got)
	}
	c.AddNode("n4", map[string]string{"zone": "c", "rack": "1"})
	c.AddNode("n5", map[string]string{"zone": "c", "rack": "1"})
	rebalanceRun(t, c, s.ID, 6, 2, 0)
	per := c.RunningPerNode(s.ID)
	if a, b, cz := per["n1"]+per["n2"], per["n3"], per["n4"]+per["n5"]; a != 2 || b != 2 || cz != 2 {
		t.Fatalf("zones a=%d b=%d c=%d, want 2 each", a, b, cz)
	}
	if per["n1"] != 1 || per["n2"] != 1 || per["n4"] != 1 || per["n5"] != 1 {
		t.Fatalf("racks and nodes within the zones: %v", per)
	}
	checkSlots(t, c, s.ID)
}

// TestMaxReplicasPerNodeLoweredMoves: after the limit is lowered, a node's
// excess moves start-first (the running count never drops) to nodes with
// room, in its zone or another one, a few at a time, and never fills a
// node beyond the limit; without room it keeps running where it is.
func TestMaxReplicasPerNodeLoweredMoves(t *testing.T) {
	for _, tc := range []struct {
		name        string
		nodes       []string // node=zone
		prefs       bool
		noRebalance bool
		limit       uint64
		want        string
		moved       bool
		over        []string // nodes above the limit before it was lowered
	}{
		{"room on other nodes", []string{"n1=a", "n2=a", "n3=a"}, false, false, 2, "n1=2 n2=2 n3=2", true, []string{"n1"}},
		{"room in another zone", []string{"n1=a", "n2=b", "n3=b"}, true, false, 2, "n1=2 n2=2 n3=2", true, []string{"n1"}},
		{"no room: the excess stays", []string{"n1=a", "n2=b"}, true, false, 2, "n1=3 n2=3", false, []string{"n1", "n2"}},
		{"opted out: the excess stays", []string{"n1=a", "n2=b", "n3=b"}, true, true, 2, "n1=3 n2=2 n3=1", false, []string{"n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := zoneCluster(tc.nodes[:1]...)
			sp := testSpec("web", 6)
			sp.UpdateConfig.Parallelism = 1
			sp.NoRebalance = tc.noRebalance
			if tc.prefs {
				sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
			}
			s := c.CreateService(sp)
			converge(t, c)
			// The other nodes join with 3 tasks spread over them (a scale
			// up), so the first node holds more than the new limit.
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 3 })
			converge(t, c)
			var ids []string
			for _, nz := range tc.nodes[1:] {
				id, zone, _ := strings.Cut(nz, "=")
				c.AddNode(id, map[string]string{"zone": zone})
				ids = append(ids, id)
			}
			c.UpdateService(s.ID, func(x *api.ServiceSpec) { x.Replicas = 6; x.NoRebalance = true }) // no moves yet
			converge(t, c)
			before := activeIDs(c, s.ID)
			c.UpdateService(s.ID, func(x *api.ServiceSpec) { x.MaxReplicasPerNode = tc.limit; x.NoRebalance = tc.noRebalance })
			rebalanceRun(t, c, s.ID, 6, 1, int(tc.limit), tc.over...)
			nodes := append([]string{"n1"}, ids...)
			if got := spreadOf(c, s.ID, nodes...); got != tc.want {
				t.Fatalf("spread %s, want %s", got, tc.want)
			}
			if after := activeIDs(c, s.ID); (strings.Join(after, " ") != strings.Join(before, " ")) != tc.moved {
				t.Fatalf("tasks %v, were %v; moved %v", after, before, tc.moved)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// TestRebalanceMoveTargetDown: start-first moves to a new zone's node n3
// are in flight (the new tasks assigned, the old ones still running) when
// n3 goes down. A move's old task is left out of its node's count only
// while the move is in flight; a new task whose node is down is away, so
// its move is no longer in flight and the old task counts on its node
// again. No later move may then fill that node past max replicas per node
// (not even one off a node above a limit lowered meanwhile), and the
// running count never drops: whether n3 stays down (the new tasks are
// written off), comes back within the grace period, or another node of the
// zone takes the zone's share meanwhile.
func TestRebalanceMoveTargetDown(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    []string // node=zone; n3 is in zone c
		replicas uint64
		before   string
		limit    uint64
		lower    uint64 // the limit after n3 went down (0: unchanged)
		back     bool   // n3 comes back after one plan with it down
		want     string
		over     []string // nodes above the lowered limit, with nowhere to go
		up       bool     // n3 stays up: the moves are still in flight
	}{
		{"stays down", []string{"n1=a", "n2=b"}, 6, "n1=3 n2=3", 3, 0, false, "n1=3 n2=3 n3=0", nil, false},
		{"back within grace", []string{"n1=a", "n2=b"}, 6, "n1=3 n2=3", 3, 0, true, "n1=2 n2=2 n3=2", nil, false},
		{"zone sibling takes over", []string{"n1=a", "n2=b", "n4=c"}, 6, "n1=3 n2=3 n4=0", 3, 0, false, "n1=2 n2=2 n3=0 n4=2", nil, false},
		{"limit lowered meanwhile", []string{"n1=a", "n2=a", "n5=b"}, 7, "n1=2 n2=2 n5=3", 3, 2, false, "n1=2 n2=2 n3=0 n5=3", []string{"n5"}, false},
		// The same with n3 up: the old tasks of the moves in flight still
		// run on n1 and n2, so n5's excess waits for them to stop.
		{"limit lowered, moves in flight", []string{"n1=a", "n2=a", "n5=b"}, 7, "n1=2 n2=2 n5=3", 3, 2, false, "n1=2 n2=1 n3=2 n5=2", []string{"n5"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for _, nz := range tc.nodes {
				id, _, _ := strings.Cut(nz, "=")
				ids = append(ids, id)
			}
			c := zoneCluster(tc.nodes...)
			if tc.nodes[len(tc.nodes)-1] == "n4=c" {
				c.Nodes["n4"].Availability = api.AvailabilityPause // joins zone c with n3
			}
			sp := testSpec("web", tc.replicas)
			sp.UpdateConfig.Parallelism = 0
			sp.MaxReplicasPerNode = tc.limit
			sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
			s := c.CreateService(sp)
			converge(t, c)
			if got := spreadOf(c, s.ID, ids...); got != tc.before {
				t.Fatalf("before: %s, want %s", got, tc.before)
			}
			c.AddNode("n3", map[string]string{"zone": "c"})
			p := step(t, c) // the moves, not yet reported on
			var moving []string
			for _, tk := range c.Active(s.ID) {
				if tk.Replaces != "" && tk.State == api.TaskAssigned {
					moving = append(moving, tk.NodeID)
				}
			}
			if strings.Join(moving, " ") != "n3 n3" {
				t.Fatalf("moves in flight to %v, want two to n3: %s", moving, simcluster.Summarize(p))
			}
			if !tc.up {
				c.SetNodeStatus("n3", api.NodeDown)
			}
			if n4 := c.Nodes["n4"]; n4 != nil {
				n4.Availability = api.AvailabilityActive
			}
			limit := int(tc.limit)
			if tc.lower > 0 {
				c.UpdateService(s.ID, func(x *api.ServiceSpec) { x.MaxReplicasPerNode = tc.lower })
				limit = int(tc.lower)
			}
			if tc.back {
				p := step(t, c)
				if o := overLimit(c, s.ID, limit); o != "" {
					t.Fatalf("n3 down: %s tasks: %s", o, simcluster.Summarize(p))
				}
				c.Report()
				if got := runningCount(c, s.ID); got < int(tc.replicas) {
					t.Fatalf("n3 down: %d running", got)
				}
				c.SetNodeStatus("n3", api.NodeReady)
			}
			rebalanceRun(t, c, s.ID, int(tc.replicas), 0, limit, tc.over...)
			ids = append(ids, "n3")
			sort.Strings(ids)
			if got := spreadOf(c, s.ID, ids...); got != tc.want {
				t.Fatalf("spread %s, want %s", got, tc.want)
			}
			checkSlots(t, c, s.ID)
		})
	}
}
