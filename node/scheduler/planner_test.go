package scheduler_test

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testSpec(name string, replicas uint64) api.ServiceSpec {
	s := servicespec.Defaults(api.ServiceSpec{Name: name, Image: "img:1", Replicas: replicas})
	s.RestartPolicy.Delay = time.Second
	s.UpdateConfig.Monitor = time.Second
	s.RollbackConfig.Monitor = time.Second
	return s
}

func cluster(t *testing.T, nodes ...string) *simcluster.Cluster {
	t.Helper()
	c := simcluster.New(t0)
	for _, n := range nodes {
		c.AddNode(n, nil)
	}
	return c
}

func converge(t *testing.T, c *simcluster.Cluster) {
	t.Helper()
	if _, err := c.Converge(200); err != nil {
		t.Fatal(err)
	}
}

func step(t *testing.T, c *simcluster.Cluster) scheduler.Plan {
	t.Helper()
	p, err := c.Step()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkSlots(t *testing.T, c *simcluster.Cluster, id string) {
	t.Helper()
	if err := c.CheckSlots(id); err != nil {
		t.Fatal(err)
	}
}

func TestSpreadSixReplicasOnThreeNodes(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 6))
	p := step(t, c)
	if len(p.Create) != 6 {
		t.Fatalf("created %d tasks, want 6", len(p.Create))
	}
	for i, tk := range p.Create {
		if tk.State != api.TaskAssigned || tk.DesiredState != api.TaskRunning || tk.Slot != i+1 ||
			tk.Name != "web."+string(rune('1'+i)) || tk.SpecVersion != s.Version || tk.Image != "img:1" {
			t.Fatalf("task %d = %+v", i, tk)
		}
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n1": 2, "n2": 2, "n3": 2}) {
		t.Fatalf("spread = %v", got)
	}
}

func TestSpreadAcrossServices(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	a := c.CreateService(testSpec("a", 2))
	b := c.CreateService(testSpec("b", 1))
	converge(t, c)
	// a takes n1, n2; b goes to the emptiest node, n3.
	if got := c.RunningPerNode(b.ID); got["n3"] != 1 {
		t.Fatalf("b placed on %v, want n3", got)
	}
	checkSlots(t, c, a.ID)
}

func TestScaleUpAndDown(t *testing.T) {
	c := cluster(t, "n1", "n2")
	s := c.CreateService(testSpec("web", 3))
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 5 })
	p := step(t, c)
	if len(p.Create) != 2 || p.Create[0].Slot != 4 || p.Create[1].Slot != 5 || len(p.Update) != 0 {
		t.Fatalf("scale up plan = %s", simcluster.Summarize(p))
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
	if st := c.Services[s.ID].UpdateStatus; st != nil {
		t.Fatalf("scaling started an update: %+v", st)
	}

	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 2 })
	p = step(t, c)
	var slots []int
	for _, tk := range p.Update {
		if tk.DesiredState != api.TaskShutdown {
			t.Fatalf("scale down update %+v", tk)
		}
		slots = append(slots, tk.Slot)
	}
	if !reflect.DeepEqual(slots, []int{5, 4, 3}) || len(p.Create) != 0 {
		t.Fatalf("scale down shut slots %v, want 5 4 3 (plan %s)", slots, simcluster.Summarize(p))
	}
	converge(t, c)
	checkSlots(t, c, s.ID)

	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 0 })
	converge(t, c)
	if got := c.Active(s.ID); len(got) != 0 {
		t.Fatalf("replicas 0 left %d active tasks", len(got))
	}
}

func TestGlobalService(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("agent", 0)
	sp.Mode = api.ModeGlobal
	sp.Constraints = []string{"node.labels.role != edge"}
	s := c.CreateService(sp)
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1}) {
		t.Fatalf("global = %v", got)
	}
	for _, tk := range c.Active(s.ID) {
		if tk.Slot != 0 || tk.Name != "agent."+tk.NodeID {
			t.Fatalf("global task %+v", tk)
		}
	}
	c.AddNode("n3", nil) // late join
	c.AddNode("n4", nil)
	c.Nodes["n4"].Availability = api.AvailabilityPause // paused: no new task
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1, "n3": 1}) {
		t.Fatalf("after join = %v", got)
	}
	c.Nodes["n1"].Availability = api.AvailabilityDrain
	c.Nodes["n2"].Labels = map[string]string{"role": "edge"}
	c.Nodes["n4"].Availability = api.AvailabilityActive
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n3": 1, "n4": 1}) {
		t.Fatalf("after drain/label = %v", got)
	}
	c.Nodes["n3"].Status = api.NodeDown
	p := step(t, c)
	if len(p.Create) != 0 || len(p.Update) != 1 || p.Update[0].State != api.TaskOrphaned {
		t.Fatalf("node down plan: %s", simcluster.Summarize(p))
	}
}

func TestDrainMovesTasks(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 4))
	converge(t, c)
	c.Nodes["n1"].Availability = api.AvailabilityDrain
	c.Nodes["n2"].Availability = api.AvailabilityPause
	p := step(t, c)
	for _, tk := range p.Update {
		if tk.NodeID != "n1" || tk.DesiredState != api.TaskShutdown {
			t.Fatalf("drain touched %+v", tk)
		}
	}
	for _, tk := range p.Create {
		if tk.NodeID != "n3" {
			t.Fatalf("replacement on %s, want n3 (only active node)", tk.NodeID)
		}
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
	got := c.RunningPerNode(s.ID)
	if got["n1"] != 0 || got["n2"] == 0 {
		t.Fatalf("after drain = %v (paused node must keep its tasks)", got)
	}
}

func TestNodeDownReschedules(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 6))
	converge(t, c)
	c.Nodes["n2"].Status = api.NodeDown
	p := step(t, c)
	if len(p.Update) != 2 || len(p.Create) != 2 {
		t.Fatalf("plan: %s", simcluster.Summarize(p))
	}
	lost := map[int]bool{}
	for _, tk := range p.Update {
		if tk.State != api.TaskOrphaned || tk.DesiredState != api.TaskShutdown || tk.NodeID != "n2" {
			t.Fatalf("down node task %+v", tk)
		}
		lost[tk.Slot] = true
	}
	for _, tk := range p.Create {
		if !lost[tk.Slot] || tk.NodeID == "n2" {
			t.Fatalf("replacement %+v", tk)
		}
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
	// The node comes back: nothing moves back, nothing doubles.
	c.Nodes["n2"].Status = api.NodeReady
	converge(t, c)
	checkSlots(t, c, s.ID)
	// A node removed from the cluster: same as down.
	delete(c.Nodes, "n3")
	p = step(t, c)
	for _, tk := range p.Update {
		if tk.State != api.TaskOrphaned || tk.Message != "node removed" {
			t.Fatalf("removed node task %+v", tk)
		}
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
}

func TestRestartPolicies(t *testing.T) {
	cases := []struct {
		name        string
		condition   string
		maxAttempts int
		exits       []int // successive exits of the slot's task
		wantActive  bool  // a replacement is running at the end
		wantEnded   int   // ended tasks of the slot at the end
	}{
		{"any after success", api.RestartAny, 0, []int{0}, true, 1},
		{"any after failure", api.RestartAny, 0, []int{1}, true, 1},
		{"on-failure after success", api.RestartOnFailure, 0, []int{0}, false, 1},
		{"on-failure after failure", api.RestartOnFailure, 0, []int{2}, true, 1},
		{"none after failure", api.RestartNone, 0, []int{1}, false, 1},
		{"max attempts 2 reached", api.RestartOnFailure, 2, []int{1, 1, 1}, false, 3},
		{"max attempts 2 not reached", api.RestartOnFailure, 2, []int{1, 1}, true, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(t, "n1")
			sp := testSpec("job", 1)
			sp.RestartPolicy = api.RestartPolicy{Condition: tc.condition, Delay: 5 * time.Second, MaxAttempts: tc.maxAttempts}
			s := c.CreateService(sp)
			converge(t, c)
			for _, code := range tc.exits {
				act := c.Active(s.ID)
				if len(act) != 1 || act[0].State != api.TaskRunning {
					t.Fatalf("before exit: %+v", act)
				}
				c.Now = c.Now.Add(time.Minute)
				c.Finish(act[0].ID, code)
				ended := c.Now
				p := step(t, c)
				if !p.Empty() {
					t.Fatalf("replacement before the delay: %s", simcluster.Summarize(p))
				}
				restarts := !(tc.condition == api.RestartNone || tc.condition == api.RestartOnFailure && code == 0)
				if restarts && tc.maxAttempts == 0 && !p.NextWake.Equal(ended.Add(5*time.Second)) {
					t.Fatalf("NextWake = %v, want %v", p.NextWake, ended.Add(5*time.Second))
				}
				if !restarts && !p.NextWake.IsZero() {
					t.Fatalf("NextWake = %v without a restart", p.NextWake)
				}
				converge(t, c)
			}
			running := 0
			ended := 0
			for _, tk := range c.Tasks {
				if tk.State == api.TaskRunning && tk.DesiredState == api.TaskRunning {
					running++
				}
				if tk.State == api.TaskComplete || tk.State == api.TaskFailed {
					ended++
				}
			}
			if (running == 1) != tc.wantActive || ended != tc.wantEnded {
				t.Fatalf("running %d ended %d, want active=%v ended=%d", running, ended, tc.wantActive, tc.wantEnded)
			}
		})
	}
}

func TestRestartHistoryTrimmed(t *testing.T) {
	c := cluster(t, "n1")
	s := c.CreateService(testSpec("crash", 1))
	converge(t, c)
	for i := 0; i < 12; i++ {
		act := c.Active(s.ID)
		c.Finish(act[0].ID, 1)
		converge(t, c)
	}
	if n := len(c.Tasks); n != scheduler.DefaultKeepTerminal+1 {
		t.Fatalf("%d tasks kept, want %d", n, scheduler.DefaultKeepTerminal+1)
	}
	checkSlots(t, c, s.ID)
}

func TestUnplaceableExplains(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3", "n4", "n5", "n6")
	c.Nodes["n1"].Status = "unknown"
	c.Nodes["n2"].Status = api.NodeDown
	c.Nodes["n3"].Availability = api.AvailabilityDrain
	for _, n := range []string{"n4", "n5", "n6"} {
		c.Nodes[n].Labels = map[string]string{"zone": "b"}
	}
	sp := testSpec("web", 2)
	sp.Constraints = []string{"node.labels.zone == a"}
	s := c.CreateService(sp)
	p := step(t, c)
	want := "no suitable node (2 nodes not ready, 1 node drained, 3 nodes unmatched constraint node.labels.zone==a)"
	if len(p.Create) != 2 || p.Create[0].State != api.TaskNew || p.Create[0].Message != want || p.Create[0].NodeID != "" {
		t.Fatalf("plan %s\nwant message %q", simcluster.Summarize(p), want)
	}
	// A matching node appears: the pending tasks are placed.
	c.Nodes["n6"].Labels["zone"] = "a"
	p = step(t, c)
	if len(p.Update) != 2 || p.Update[0].State != api.TaskAssigned || p.Update[0].NodeID != "n6" || p.Update[0].Message != "" {
		t.Fatalf("placement plan %s", simcluster.Summarize(p))
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
}

func TestResourceFilter(t *testing.T) {
	c := cluster(t, "n1", "n2")
	for _, n := range c.Nodes {
		n.Resources.MemoryBytes = 1 << 30
	}
	sp := testSpec("big", 3)
	sp.Resources.Reservations.MemoryBytes = 600 << 20
	s := c.CreateService(sp)
	p := step(t, c)
	if p.Create[0].NodeID == p.Create[1].NodeID || p.Create[2].State != api.TaskNew ||
		p.Create[2].Message != "no suitable node (2 nodes with insufficient memory)" {
		t.Fatalf("plan %s", simcluster.Summarize(p))
	}
	c.AddNode("n3", nil) // unlimited
	converge(t, c)
	checkSlots(t, c, s.ID)
}

func TestDeletedServiceTasksGo(t *testing.T) {
	c := cluster(t, "n1", "n2")
	s := c.CreateService(testSpec("web", 3))
	converge(t, c)
	c.DeleteService(s.ID)
	converge(t, c)
	if len(c.Tasks) != 0 {
		t.Fatalf("%d tasks left", len(c.Tasks))
	}
	// Planning without the FSM's help (desired still running) also works.
	s = c.CreateService(testSpec("api", 2))
	converge(t, c)
	delete(c.Services, s.ID)
	c.Nodes["n2"].Status = api.NodeDown
	converge(t, c)
	if len(c.Tasks) != 0 {
		t.Fatalf("%d tasks left", len(c.Tasks))
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3", "n4")
	c.CreateService(testSpec("a", 5))
	c.CreateService(testSpec("b", 3))
	converge(t, c)
	c.Nodes["n2"].Status = api.NodeDown
	c.CreateService(testSpec("c", 4))
	st := c.State()
	ids := func() func() string {
		n := 0
		return func() string { n++; return "id" + string(rune('a'+n)) }
	}
	want := scheduler.NewPlanner(scheduler.Config{NewID: ids()}).Plan(st, c.Now)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5; i++ {
		rng.Shuffle(len(st.Tasks), func(a, b int) { st.Tasks[a], st.Tasks[b] = st.Tasks[b], st.Tasks[a] })
		rng.Shuffle(len(st.Nodes), func(a, b int) { st.Nodes[a], st.Nodes[b] = st.Nodes[b], st.Nodes[a] })
		rng.Shuffle(len(st.Services), func(a, b int) { st.Services[a], st.Services[b] = st.Services[b], st.Services[a] })
		if got := scheduler.NewPlanner(scheduler.Config{NewID: ids()}).Plan(st, c.Now); !reflect.DeepEqual(got, want) {
			t.Fatalf("plan depends on input order:\n%s\n%s", simcluster.Summarize(got), simcluster.Summarize(want))
		}
	}
}

func TestPlanDoesNotModifyState(t *testing.T) {
	c := cluster(t, "n1", "n2")
	c.CreateService(testSpec("a", 4))
	converge(t, c)
	c.Nodes["n1"].Status = api.NodeDown
	st := c.State()
	before := c.State()
	scheduler.NewPlanner(scheduler.Config{NewID: func() string { return "x" }}).Plan(st, c.Now)
	if !reflect.DeepEqual(st, before) {
		t.Fatal("Plan modified its input")
	}
}

func TestPendingMessageStable(t *testing.T) {
	c := cluster(t)
	s := c.CreateService(testSpec("web", 1))
	p := step(t, c)
	if !strings.Contains(p.Create[0].Message, "no nodes") {
		t.Fatalf("message %q", p.Create[0].Message)
	}
	c.AddNode("n1", nil)
	converge(t, c)
	checkSlots(t, c, s.ID)
}

// A node where the service's tasks keep failing (a broken runtime, a disk
// too full for the image: every start fails) is tried last, as swarmkit
// does: after MaxNodeFailures failures there within FailureWindow the
// replacement goes to another node, though the failing node runs the
// fewest tasks; once the failures are older than the window it is back in
// the race.
func TestFailingNodeAvoided(t *testing.T) {
	c := cluster(t, "n1", "n2")
	s := c.CreateService(testSpec("web", 1))
	converge(t, c)
	for i := 0; i < scheduler.MaxNodeFailures; i++ {
		act := c.Active(s.ID)
		if len(act) != 1 || act[0].NodeID != "n1" {
			t.Fatalf("before failure %d: active %+v, want one task on n1", i+1, act)
		}
		c.Now = c.Now.Add(time.Second)
		c.Finish(act[0].ID, 1)
		converge(t, c)
	}
	act := c.Active(s.ID)
	if len(act) != 1 || act[0].NodeID != "n2" || act[0].State != api.TaskRunning {
		t.Fatalf("after %d failures on n1: active %+v, want the replacement running on n2", scheduler.MaxNodeFailures, act)
	}
	// Past the window n1 counts as healthy again: n2's task fails once and
	// its replacement goes to n1 (fewest tasks, then node ID).
	c.Now = c.Now.Add(scheduler.FailureWindow + time.Second)
	c.Finish(act[0].ID, 1)
	converge(t, c)
	if act := c.Active(s.ID); len(act) != 1 || act[0].NodeID != "n1" {
		t.Fatalf("after the window: active %+v, want the replacement on n1", act)
	}
	checkSlots(t, c, s.ID)
}

// TestRebalanceAvoidsFailingNode: rebalancing moves no task to a node where
// the service's tasks keep failing, though it runs the fewest of them
// (before, one start-first move per minute went there and failed).
func TestRebalanceAvoidsFailingNode(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 3))
	converge(t, c)
	for i := 0; i < scheduler.MaxNodeFailures; i++ {
		var on1 *api.Task
		for _, x := range c.Active(s.ID) {
			if x.NodeID == "n1" {
				x := x
				on1 = &x
			}
		}
		if on1 == nil {
			t.Fatalf("before failure %d: no task on n1: %+v", i+1, c.Active(s.ID))
		}
		c.Now = c.Now.Add(time.Second)
		c.Finish(on1.ID, 1)
		converge(t, c)
	}
	// n1 now runs none of the 3 tasks and another node runs 2: a gap of 2,
	// which rebalancing evens out on a healthy node. Give it the time, all
	// within FailureWindow of the first failure.
	for i := 0; i < 4; i++ {
		c.Now = c.Now.Add(time.Minute)
		converge(t, c)
		for _, x := range c.Active(s.ID) {
			if x.NodeID == "n1" {
				t.Fatalf("round %d: task %s (%s) placed on the failing n1", i, x.ID, x.Message)
			}
		}
	}
	if act := c.Active(s.ID); len(act) != 3 {
		t.Fatalf("active %+v, want 3", act)
	}
	checkSlots(t, c, s.ID)
}

// TestUnfitNode: a node that says it cannot persist its state (a full disk)
// takes no new task, keeps the ones it runs, and a task assigned to it
// that it never saw is re-placed after UnfitAssignedGrace.
func TestUnfitNode(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 3))
	converge(t, c)
	if got := c.RunningPerNode(s.ID); got["n3"] != 1 {
		t.Fatalf("before: %v, want one task on n3", got)
	}
	c.Unfit = map[string]string{"n3": "disk full: raft log writes fail"}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 6 })
	converge(t, c)
	if got := c.RunningPerNode(s.ID); got["n3"] != 1 || got["n1"]+got["n2"] != 5 {
		t.Fatalf("scaled to 6 with n3 unfit: %v, want n3 keeping its one task and none new", got)
	}
	checkSlots(t, c, s.ID)

	// Assigned while fit, then its disk fills before it saw the task.
	c.Unfit = nil
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 9 })
	step(t, c)
	var stuck string
	for _, x := range c.Active(s.ID) {
		if x.NodeID == "n3" && x.State == api.TaskAssigned {
			stuck = x.ID
		}
	}
	if stuck == "" {
		t.Fatalf("no task assigned to n3: %+v", c.Active(s.ID))
	}
	c.Unfit = map[string]string{"n3": "disk full: raft log writes fail"}
	start := c.Now
	converge(t, c)
	if x := c.Tasks[stuck]; x.State != api.TaskRejected || !strings.Contains(x.Error, "disk full") {
		t.Fatalf("stuck task: %s %q, want rejected naming the disk", x.State, x.Error)
	}
	if x := c.Tasks[stuck]; x.UpdatedAt.Sub(start) < scheduler.UnfitAssignedGrace {
		t.Fatalf("rejected after %v, before the grace", x.UpdatedAt.Sub(start))
	}
	act := c.Active(s.ID)
	running := 0
	for _, x := range act {
		if x.State == api.TaskRunning {
			running++
		}
	}
	if running != 9 {
		t.Fatalf("running %d of 9: %+v", running, act)
	}
	checkSlots(t, c, s.ID)

	// Space comes back: n3 takes tasks again.
	c.Unfit = nil
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 12 })
	converge(t, c)
	if got := c.RunningPerNode(s.ID); got["n3"] < 2 {
		t.Fatalf("after recovery: %v, want new tasks on n3", got)
	}
}

func TestStuckOnUnfit(t *testing.T) {
	at := t0
	task := func(state, desired string) *api.Task {
		return &api.Task{State: state, DesiredState: desired, UpdatedAt: at}
	}
	g := scheduler.UnfitAssignedGrace
	for _, tc := range []struct {
		name      string
		t         *api.Task
		unfit     string
		now       time.Time
		wantStuck bool
		wantWake  time.Time
	}{
		{"fit node", task(api.TaskAssigned, api.TaskRunning), "", at.Add(time.Hour), false, time.Time{}},
		{"within the grace", task(api.TaskAssigned, api.TaskRunning), "disk full", at.Add(g - time.Second), false, at.Add(g)},
		{"at the grace", task(api.TaskAssigned, api.TaskRunning), "disk full", at.Add(g), true, time.Time{}},
		{"running keeps running", task(api.TaskRunning, api.TaskRunning), "disk full", at.Add(time.Hour), false, time.Time{}},
		{"preparing: the node saw it", task(api.TaskPreparing, api.TaskRunning), "disk full", at.Add(time.Hour), false, time.Time{}},
		{"told to stop", task(api.TaskAssigned, api.TaskShutdown), "disk full", at.Add(time.Hour), false, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stuck, wake := scheduler.StuckOnUnfit(tc.t, tc.unfit, tc.now)
			if stuck != tc.wantStuck || !wake.Equal(tc.wantWake) {
				t.Fatalf("StuckOnUnfit = %v, %v; want %v, %v", stuck, wake, tc.wantStuck, tc.wantWake)
			}
		})
	}
}
