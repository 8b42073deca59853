package scheduler_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// Max replicas per node and placement preferences, driven through the
// planner (the pure parts are table-tested in node/scheduler/placement).

// pending lists the messages of a service's tasks meant to run that no
// node has taken.
func pending(c *simcluster.Cluster, svc string) []string {
	var out []string
	for _, t := range c.Active(svc) {
		if t.State == api.TaskNew {
			out = append(out, t.Message)
		}
	}
	return out
}

// activeIDs lists the IDs of a service's running tasks meant to run.
func activeIDs(c *simcluster.Cluster, svc string) []string {
	var ids []string
	for _, t := range c.Active(svc) {
		if t.State == api.TaskRunning {
			ids = append(ids, t.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// overLimit names a node holding more than max live tasks of the service
// meant to run (placed, not ended), or "".
func overLimit(c *simcluster.Cluster, svc string, max int) string {
	per := map[string]int{}
	for _, t := range c.Active(svc) {
		if t.NodeID != "" && t.State != api.TaskNew && !api.TaskTerminal(t.State) {
			per[t.NodeID]++
		}
	}
	for n, k := range per {
		if k > max {
			return fmt.Sprintf("%s has %d", n, k)
		}
	}
	return ""
}

// convergeWithin is Converge checking after every plan that no node holds
// more than max tasks of the service.
func convergeWithin(t *testing.T, c *simcluster.Cluster, svc string, max int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		p := step(t, c)
		if o := overLimit(c, svc, max); o != "" {
			t.Fatalf("step %d: %s tasks, limit %d: %s", i, o, max, simcluster.Summarize(p))
		}
		moved := c.Report()
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				return
			}
			c.Now = p.NextWake
		}
	}
	t.Fatal("no convergence")
}

func TestMaxReplicasPerNode(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 4)
	sp.MaxReplicasPerNode = 1
	s := c.CreateService(sp)
	convergeWithin(t, c, s.ID, 1)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=1 n2=1 n3=1" {
		t.Fatalf("spread %s", got)
	}
	want := "no suitable node (3 nodes at max replicas per node (1))"
	if p := pending(c, s.ID); len(p) != 1 || p[0] != want {
		t.Fatalf("pending %q, want one %q", p, want)
	}

	// Scaling down to what fits leaves nothing pending (the pending task
	// is the one of the highest slot) and stops nothing that runs.
	before := activeIDs(c, s.ID)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 3 })
	convergeWithin(t, c, s.ID, 1)
	if p := pending(c, s.ID); len(p) != 0 {
		t.Fatalf("pending after scaling to 3: %q", p)
	}
	if got := activeIDs(c, s.ID); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Fatalf("tasks changed: %v, were %v", got, before)
	}
	checkSlots(t, c, s.ID)

	// Raising the limit lets a pending task place, and restarts nothing.
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 5 })
	convergeWithin(t, c, s.ID, 1)
	if p := pending(c, s.ID); len(p) != 2 {
		t.Fatalf("pending at 5 replicas, limit 1: %q", p)
	}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.MaxReplicasPerNode = 2 })
	convergeWithin(t, c, s.ID, 2)
	if p := pending(c, s.ID); len(p) != 0 {
		t.Fatalf("pending at limit 2: %q", p)
	}
	got := activeIDs(c, s.ID)
	for _, id := range before {
		if !strings.Contains(strings.Join(got, " "), id) {
			t.Fatalf("task %s was replaced by raising the limit: %v", id, got)
		}
	}
	checkSlots(t, c, s.ID)
}

// TestMaxReplicasPerNodeLowered: lowering the limit restarts nothing;
// rebalancing moves tasks where there is room but never fills a node
// beyond the limit, and the excess without room keeps running.
func TestMaxReplicasPerNodeLowered(t *testing.T) {
	c := cluster(t, "n1")
	s := c.CreateService(testSpec("web", 6))
	converge(t, c)
	c.AddNode("n2", nil)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.MaxReplicasPerNode = 2 })
	for i := 0; i < 300; i++ {
		p := step(t, c)
		if n := len(tasksOn(c, s.ID, "n2")); n > 2 {
			t.Fatalf("step %d: n2 has %d tasks, limit 2: %s", i, n, simcluster.Summarize(p))
		}
		moved := c.Report()
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				break
			}
			c.Now = p.NextWake
		}
	}
	if got := spreadOf(c, s.ID, "n1", "n2"); got != "n1=4 n2=2" {
		t.Fatalf("spread %s", got)
	}
	checkSlots(t, c, s.ID)
}

// TestMaxReplicasPerNodeStartFirst: a start-first update never puts a new
// task beside the old one on a node at its limit. Where the limit leaves
// no room the slot is updated stop-first, so the update completes; where
// there is room it stays start-first (the running count never drops).
func TestMaxReplicasPerNodeStartFirst(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    []string
		minAlive int
	}{
		{"no room: stop-first", []string{"n1", "n2", "n3"}, 2},
		{"room on one node: start-first", []string{"n1", "n2", "n3", "n4"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(t, tc.nodes...)
			sp := testSpec("web", 3)
			sp.MaxReplicasPerNode = 1
			sp.UpdateConfig.Order = api.OrderStartFirst
			sp.UpdateConfig.Parallelism = 1
			s := c.CreateService(sp)
			convergeWithin(t, c, s.ID, 1)
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
			for i := 0; i < 300; i++ {
				p := step(t, c)
				if o := overLimit(c, s.ID, 1); o != "" {
					t.Fatalf("step %d: %s tasks: %s", i, o, simcluster.Summarize(p))
				}
				moved := c.Report()
				if n := runningCount(c, s.ID); n < tc.minAlive {
					t.Fatalf("step %d: %d running, want at least %d", i, n, tc.minAlive)
				}
				if p.Empty() && moved == 0 {
					if p.NextWake.IsZero() {
						break
					}
					c.Now = p.NextWake
				}
			}
			if st := c.Services[s.ID].UpdateStatus; st == nil || st.State != api.UpdateCompleted {
				t.Fatalf("update status %+v", st)
			}
			for _, task := range c.Active(s.ID) {
				if task.Image != "img:2" || task.State != api.TaskRunning {
					t.Fatalf("task %s: %s %s", task.Name, task.Image, task.State)
				}
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// TestPlacementPreferenceSpread: the tasks are spread over the label's
// values first (2 in zone a, 2 in zone b: b's one node gets 2), nodes
// without the label being one more group, and rebalancing does not undo
// the spread.
func TestPlacementPreferenceSpread(t *testing.T) {
	c := simcluster.New(t0)
	c.AddNode("n1", map[string]string{"zone": "a"})
	c.AddNode("n2", map[string]string{"zone": "a"})
	c.AddNode("n3", map[string]string{"zone": "b"})
	sp := testSpec("web", 4)
	sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
	s := c.CreateService(sp)
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=1 n2=1 n3=2" {
		t.Fatalf("spread %s", got)
	}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 6 })
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=2 n2=1 n3=3" && got != "n1=1 n2=2 n3=3" {
		t.Fatalf("spread at 6: %s", got)
	}
	// A node without the label is a group of its own: it gets a third.
	c.AddNode("n4", nil)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 9 })
	converge(t, c)
	per := c.RunningPerNode(s.ID)
	if a, b, none := per["n1"]+per["n2"], per["n3"], per["n4"]; a != 3 || b != 3 || none != 3 {
		t.Fatalf("zones a=%d b=%d none=%d, want 3 each", a, b, none)
	}
	checkSlots(t, c, s.ID)
}

// TestPlacementPreferenceChangeRolls: adding a preference re-spreads the
// running tasks through a rolling update (it is material, as Swarm rolls
// any placement change).
func TestPlacementPreferenceChangeRolls(t *testing.T) {
	c := simcluster.New(t0)
	c.AddNode("n1", map[string]string{"zone": "a"})
	c.AddNode("n2", map[string]string{"zone": "a"})
	c.AddNode("n3", map[string]string{"zone": "b"})
	s := c.CreateService(testSpec("web", 6))
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=2 n2=2 n3=2" {
		t.Fatalf("spread %s", got)
	}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) {
		sp.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
	})
	converge(t, c)
	per := c.RunningPerNode(s.ID)
	if a, b := per["n1"]+per["n2"], per["n3"]; a != 3 || b != 3 {
		t.Fatalf("after adding the preference: zone a %d, zone b %d", a, b)
	}
	checkSlots(t, c, s.ID)
}
