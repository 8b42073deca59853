package scheduler_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// tasksOn lists the IDs of a service's active tasks on a node, sorted.
func tasksOn(c *simcluster.Cluster, svc, node string) []string {
	var ids []string
	for _, t := range c.Active(svc) {
		if t.NodeID == node {
			ids = append(ids, t.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// runningCount is `service ls`'s running column: desired and observed
// running.
func runningCount(c *simcluster.Cluster, svc string) int {
	n := 0
	for _, k := range c.RunningPerNode(svc) {
		n += k
	}
	return n
}

// spreadOf returns the running tasks per node as "n1=2 n2=2 ...".
func spreadOf(c *simcluster.Cluster, svc string, nodes ...string) string {
	per := c.RunningPerNode(svc)
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s=%d", n, per[n]))
	}
	return strings.Join(parts, " ")
}

// blip takes node down for d (stepping and reporting on the way, as the
// leader and the other nodes would) and brings it back.
func blip(t *testing.T, c *simcluster.Cluster, node string, d time.Duration) {
	t.Helper()
	c.SetNodeStatus(node, api.NodeDown)
	step(t, c)
	c.Report()
	step(t, c)
	c.Report()
	c.Now = c.Now.Add(d)
	step(t, c)
	c.SetNodeStatus(node, api.NodeReady)
}

func TestBlipKeepsOriginals(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 6))
	converge(t, c)
	before := tasksOn(c, s.ID, "n2")
	if len(before) != 2 {
		t.Fatalf("spread before: %s", spreadOf(c, s.ID, "n1", "n2", "n3"))
	}

	c.SetNodeStatus("n2", api.NodeDown)
	p := step(t, c)
	// Availability first: replacements for n2's slots start at once, and
	// n2's tasks are left as they are (no orphaning, no shutdown order).
	if len(p.Create) != 2 {
		t.Fatalf("node down: want 2 replacements, got %s", simcluster.Summarize(p))
	}
	for _, u := range p.Update {
		if u.NodeID == "n2" {
			t.Fatalf("node down: task %s of n2 changed within the grace period: %s", u.ID, simcluster.Summarize(p))
		}
	}
	if p.NextWake != t0.Add(servicespec.DefaultDisconnectGrace) && !p.NextWake.Before(t0.Add(servicespec.DefaultDisconnectGrace+time.Second)) {
		t.Fatalf("next wake %v, want the end of the grace period", p.NextWake)
	}
	c.Report()
	if p := step(t, c); !p.Empty() {
		t.Fatalf("replacements running: want nothing more, got %s", simcluster.Summarize(p))
	}
	if got := runningCount(c, s.ID); got != 8 {
		t.Fatalf("while n2 is down: %d tasks recorded running (6 + 2 away), want 8", got)
	}

	c.Now = c.Now.Add(3 * time.Second)
	c.SetNodeStatus("n2", api.NodeReady)
	p = step(t, c)
	if len(p.Create) != 0 || len(p.Update) != 2 {
		t.Fatalf("node back: want the 2 replacements stopped, got %s", simcluster.Summarize(p))
	}
	for _, u := range p.Update {
		if u.NodeID == "n2" || u.DesiredState != api.TaskShutdown {
			t.Fatalf("node back: want only replacements stopped, got %s", simcluster.Summarize(p))
		}
	}
	converge(t, c)
	if after := tasksOn(c, s.ID, "n2"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("n2 runs %v after the blip, want its original tasks %v", after, before)
	}
	checkSlots(t, c, s.ID)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != "n1=2 n2=2 n3=2" {
		t.Fatalf("spread after the blip: %s", got)
	}
}

// A returning node whose original task is not ready (its health check
// failing, say) does not win over a ready replacement.
func TestBlipReadyReplacementWins(t *testing.T) {
	c := cluster(t, "n1", "n2")
	s := c.CreateService(testSpec("web", 2))
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")[0]
	blip(t, c, "n2", 3*time.Second)
	c.Tasks[orig].Health = api.HealthUnhealthy
	step(t, c)
	if c.Tasks[orig].DesiredState != api.TaskShutdown {
		t.Fatalf("unhealthy original kept over a ready replacement")
	}
}

func TestBlipPastGraceWritesOff(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 4)
	sp.DisconnectGrace = 10 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")
	c.SetNodeStatus("n2", api.NodeDown)
	p := step(t, c)
	if want := t0.Add(10 * time.Second); !p.NextWake.Equal(c.Now.Add(10 * time.Second)) {
		t.Fatalf("next wake %v, want %v", p.NextWake, want)
	}
	c.Report()
	c.Now = c.Now.Add(10 * time.Second)
	step(t, c)
	for _, id := range orig {
		if tk := c.Tasks[id]; tk.State != api.TaskOrphaned || tk.DesiredState != api.TaskShutdown {
			t.Fatalf("past the grace period task %s is %s/%s, want orphaned/shutdown", id, tk.State, tk.DesiredState)
		}
	}
	c.SetNodeStatus("n2", api.NodeReady)
	converge(t, c)
	checkSlots(t, c, s.ID)
	for _, id := range orig {
		if c.Tasks[id] != nil && c.Tasks[id].DesiredState == api.TaskRunning {
			t.Fatalf("written-off task %s revived", id)
		}
	}
	// The returning node is empty: rebalancing evens the spread out.
	if got := spreadOf(c, s.ID, "n1", "n2"); got != "n1=2 n2=2" {
		t.Fatalf("spread after the node came back empty: %s", got)
	}
}

func TestAtMostOnceNotReplacedWithinGrace(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("db", 2)
	sp.AtMostOnce = true
	sp.DisconnectGrace = 20 * time.Second
	sp.StopGracePeriod = 5 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")
	down := c.Now
	c.SetNodeStatus("n2", api.NodeDown)
	p := step(t, c)
	if !p.Empty() {
		t.Fatalf("at-most-once: node down must change nothing yet, got %s", simcluster.Summarize(p))
	}
	// Written off after the grace plus the stop grace: the node's own
	// fence (at the grace period without a leader) has stopped it by then.
	if want := down.Add(25 * time.Second); !p.NextWake.Equal(want) {
		t.Fatalf("next wake %v, want %v", p.NextWake, want)
	}
	c.Now = down.Add(25*time.Second - time.Millisecond)
	if p := step(t, c); !p.Empty() {
		t.Fatalf("at-most-once: replaced before the grace ended: %s", simcluster.Summarize(p))
	}
	c.Now = down.Add(25 * time.Second)
	p = step(t, c)
	if len(p.Create) != 1 || c.Tasks[orig[0]].DesiredState != api.TaskShutdown {
		t.Fatalf("at-most-once past the grace: want the task written off and replaced, got %s", simcluster.Summarize(p))
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
}

func TestAtMostOnceBackWithinGrace(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("db", 2)
	sp.AtMostOnce = true
	s := c.CreateService(sp)
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")
	blip(t, c, "n2", 5*time.Second)
	converge(t, c)
	if got := tasksOn(c, s.ID, "n2"); fmt.Sprint(got) != fmt.Sprint(orig) {
		t.Fatalf("n2 runs %v, want %v", got, orig)
	}
	if len(c.Tasks) != 2 {
		t.Fatalf("at-most-once blip created tasks: %d tasks", len(c.Tasks))
	}
}

// A global service's task on a node that blips is kept too.
func TestBlipGlobalKept(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("agent", 0)
	sp.Mode = api.ModeGlobal
	s := c.CreateService(sp)
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")
	blip(t, c, "n2", 3*time.Second)
	converge(t, c)
	if got := tasksOn(c, s.ID, "n2"); fmt.Sprint(got) != fmt.Sprint(orig) || len(c.Tasks) != 2 {
		t.Fatalf("global task after a blip: %v (want %v), %d tasks", got, orig, len(c.Tasks))
	}
}

func TestRebalanceOnJoin(t *testing.T) {
	for _, tc := range []struct {
		name        string
		parallelism int
		noRebalance bool
		atMostOnce  bool
		maxMoving   int // most moves in flight at once
		want        string
	}{
		{"one at a time", 1, false, false, 1, "n1=2 n2=2 n3=2"},
		{"all at once", 0, false, false, 2, "n1=2 n2=2 n3=2"},
		{"opted out", 1, true, false, 0, "n1=3 n2=3 n3=0"},
		// A move is start-first: it would run a slot twice.
		{"at-most-once never moves", 1, false, true, 0, "n1=3 n2=3 n3=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("web", 6)
			sp.UpdateConfig.Parallelism = tc.parallelism
			sp.NoRebalance = tc.noRebalance
			sp.AtMostOnce = tc.atMostOnce
			s := c.CreateService(sp)
			converge(t, c)
			c.AddNode("n3", nil)
			maxMoving := 0
			for i := 0; i < 50; i++ {
				p := step(t, c)
				moving := 0
				for _, tk := range c.Tasks {
					if tk.Replaces != "" && tk.DesiredState == api.TaskRunning && !taskReady(tk) {
						moving++
					}
				}
				maxMoving = max(maxMoving, moving)
				if got := runningCount(c, s.ID); got < 6 {
					t.Fatalf("step %d: %d running, below the 6 replicas", i, got)
				}
				if c.Report() == 0 && p.Empty() {
					break
				}
			}
			if got := spreadOf(c, s.ID, "n1", "n2", "n3"); got != tc.want {
				t.Fatalf("spread %s, want %s", got, tc.want)
			}
			if maxMoving != tc.maxMoving {
				t.Fatalf("%d moves in flight at most, want %d", maxMoving, tc.maxMoving)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// Moves wait Delay after the last move started, like update batches.
func TestRebalanceDelay(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 4)
	sp.UpdateConfig.Delay = 10 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	c.AddNode("n3", nil)
	c.AddNode("n4", nil)
	p := step(t, c)
	if len(p.Create) != 1 {
		t.Fatalf("first move: %s", simcluster.Summarize(p))
	}
	c.Report()
	step(t, c) // the old task stops
	c.Report()
	p = step(t, c)
	if len(p.Create) != 0 || !p.NextWake.Equal(c.Now.Add(10*time.Second)) {
		t.Fatalf("second move before the delay: %s (wake %v)", simcluster.Summarize(p), p.NextWake)
	}
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3", "n4"); got != "n1=1 n2=1 n3=1 n4=1" {
		t.Fatalf("spread %s", got)
	}
}

// A move that fails is stopped, the old task stays, and the service makes
// no other move for a while.
func TestRebalanceFailedMove(t *testing.T) {
	c := cluster(t, "n1")
	sp := testSpec("web", 2)
	s := c.CreateService(sp)
	converge(t, c)
	c.AddNode("n2", nil)
	p := step(t, c)
	if len(p.Create) != 1 || p.Create[0].Replaces == "" {
		t.Fatalf("move: %s", simcluster.Summarize(p))
	}
	x, y := p.Create[0].ID, p.Create[0].Replaces
	c.Tasks[x].State, c.Tasks[x].UpdatedAt = api.TaskRejected, c.Now
	p = step(t, c)
	if c.Tasks[x].DesiredState != api.TaskShutdown || c.Tasks[y].DesiredState != api.TaskRunning || len(p.Create) != 0 {
		t.Fatalf("failed move: %s", simcluster.Summarize(p))
	}
	if !p.NextWake.Equal(c.Now.Add(scheduler.RebalanceBackoff)) {
		t.Fatalf("next wake %v, want the backoff's end", p.NextWake)
	}
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2"); got != "n1=1 n2=1" {
		t.Fatalf("spread after the backoff: %s", got)
	}
}

// An at-most-once slot that was scaled away and back, or whose task was told
// to stop by anything else, gets a new task only once the old one has
// stopped: until the node reports it, it may still run.
func TestAtMostOnceWaitsForStoppingTask(t *testing.T) {
	for _, atMostOnce := range []bool{false, true} {
		t.Run(fmt.Sprintf("at-most-once=%v", atMostOnce), func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("db", 2)
			sp.AtMostOnce = atMostOnce
			s := c.CreateService(sp)
			converge(t, c)
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 1 })
			step(t, c)
			var stopping *api.Task
			for _, tk := range c.Tasks {
				if tk.DesiredState == api.TaskShutdown && tk.State == api.TaskRunning {
					stopping = tk
				}
			}
			if stopping == nil {
				t.Fatal("scale to 1 told no running task to stop")
			}
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 2 })
			p := step(t, c)
			created := false
			for _, tk := range p.Create {
				created = created || tk.Slot == stopping.Slot
			}
			if created == atMostOnce {
				t.Fatalf("slot %d while its old task still runs: created %v, want %v (%s)", stopping.Slot, created, !atMostOnce, simcluster.Summarize(p))
			}
			c.Report() // the old task stops
			converge(t, c)
			if got := runningCount(c, s.ID); got != 2 {
				t.Fatalf("%d running after the old task stopped, want 2", got)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// taskReady is the planner's notion of a task that serves its slot: running
// and, with a health check, healthy.
func taskReady(t *api.Task) bool {
	return t.State == api.TaskRunning && t.Health != api.HealthStarting && t.Health != api.HealthUnhealthy
}

// TestAtMostOnceAfterLeaderChange: a leader whose clock is ahead of the
// one that marked the node down takes over while the node's at-most-once
// task is within its grace. The node fences the task by its own silence
// (grace after it last heard a leader, which is before the down mark), so
// the new leader may replace the task only grace plus stop grace after it
// took over, whatever the down mark's clock says. Before, it replaced the
// task at once when its clock was ahead by the grace plus the stop grace:
// two tasks of the slot ran for up to that long.
func TestAtMostOnceAfterLeaderChange(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("db", 2)
	sp.AtMostOnce = true
	sp.DisconnectGrace = 20 * time.Second
	sp.StopGracePeriod = 5 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	orig := tasksOn(c, s.ID, "n2")
	c.SetNodeStatus("n2", api.NodeDown)
	if p := step(t, c); !p.Empty() {
		t.Fatalf("at-most-once: node down must change nothing yet, got %s", simcluster.Summarize(p))
	}
	// One second later the leader changes; the new one's clock is 30 s
	// ahead of the old one's.
	ids := 0
	c.Planner = scheduler.NewPlanner(scheduler.Config{NewID: func() string { ids++; return fmt.Sprintf("late-%06d", ids) }})
	takeover := c.Now.Add(31 * time.Second)
	c.Now = takeover
	p := step(t, c)
	if !p.Empty() {
		t.Fatalf("the new leader replaced the at-most-once task at once: %s", simcluster.Summarize(p))
	}
	if want := takeover.Add(25 * time.Second); !p.NextWake.Equal(want) {
		t.Fatalf("next wake %v, want %v (grace plus stop grace after the takeover)", p.NextWake, want)
	}
	c.Now = takeover.Add(25 * time.Second)
	p = step(t, c)
	if len(p.Create) != 1 || c.Tasks[orig[0]].DesiredState != api.TaskShutdown {
		t.Fatalf("past the grace after the takeover: want the task written off and replaced, got %s", simcluster.Summarize(p))
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
}

// TestAtMostOnceRemovedNodeWaitsForFence: `node rm --force` of a live node
// orphans its at-most-once task at once, but the node stops it only when it
// hears of the removal (tens of milliseconds later) or, cut off, when its
// fence does (the grace after it last heard a leader). The slot gets no
// new task before grace plus stop grace after the removal; before, the
// replacement was planned in the removal's own pass. A service without
// at-most-once is replaced at once, as before.
func TestAtMostOnceRemovedNodeWaitsForFence(t *testing.T) {
	for _, atMostOnce := range []bool{false, true} {
		t.Run(fmt.Sprintf("at-most-once=%v", atMostOnce), func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("db", 2)
			sp.AtMostOnce = atMostOnce
			sp.DisconnectGrace = 20 * time.Second
			sp.StopGracePeriod = 5 * time.Second
			s := c.CreateService(sp)
			converge(t, c)
			orig := tasksOn(c, s.ID, "n2")
			removed := c.Now
			c.RemoveNode("n2")
			p := step(t, c)
			if !atMostOnce {
				if len(p.Create) != 1 {
					t.Fatalf("removed node's task not replaced at once: %s", simcluster.Summarize(p))
				}
				converge(t, c)
				checkSlots(t, c, s.ID)
				return
			}
			if len(p.Create) != 0 {
				t.Fatalf("at-most-once: replaced in the removal's pass, while the removed node may still run it: %s", simcluster.Summarize(p))
			}
			if want := removed.Add(25 * time.Second); !p.NextWake.Equal(want) {
				t.Fatalf("next wake %v, want %v (grace plus stop grace after the removal)", p.NextWake, want)
			}
			c.Now = removed.Add(25*time.Second - time.Millisecond)
			if p := step(t, c); len(p.Create) != 0 {
				t.Fatalf("at-most-once: replaced before the fence: %s", simcluster.Summarize(p))
			}
			// A new leader whose clock is ahead counts from its own sight.
			ids := 0
			c.Planner = scheduler.NewPlanner(scheduler.Config{NewID: func() string { ids++; return fmt.Sprintf("late-%06d", ids) }})
			takeover := c.Now.Add(30 * time.Second)
			c.Now = takeover
			if p := step(t, c); len(p.Create) != 0 {
				t.Fatalf("the new leader replaced the removed node's task at once: %s", simcluster.Summarize(p))
			}
			c.Now = takeover.Add(25 * time.Second)
			p = step(t, c)
			if len(p.Create) != 1 {
				t.Fatalf("past the fence: want the slot filled, got %s", simcluster.Summarize(p))
			}
			if tk := c.Tasks[orig[0]]; tk.State != api.TaskOrphaned {
				t.Fatalf("removed node's task %s: %s", tk.ID, tk.State)
			}
			converge(t, c)
			if got := runningCount(c, s.ID); got != 2 {
				t.Fatalf("%d running, want 2", got)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

// TestAtMostOnceDrainThenRemove: the way to move an at-most-once task off a
// node that will leave without the fence's wait (leave and node rm say so):
// drain it, and the slot is filled once the node reports the task stopped;
// the removal that follows holds nothing back.
func TestAtMostOnceDrainThenRemove(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("db", 2)
	sp.AtMostOnce = true
	sp.DisconnectGrace = 20 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	c.Nodes["n2"].Availability = api.AvailabilityDrain
	p := step(t, c)
	if len(p.Create) != 0 {
		t.Fatalf("drain: replaced while the task still runs: %s", simcluster.Summarize(p))
	}
	c.Report() // n2 stops it and says so
	converge(t, c)
	if got := runningCount(c, s.ID); got != 2 || len(tasksOn(c, s.ID, "n2")) != 0 {
		t.Fatalf("after the drain: %d running, on n2 %v; want 2, none", got, tasksOn(c, s.ID, "n2"))
	}
	c.RemoveNode("n2")
	if p := step(t, c); !p.Empty() || !p.NextWake.IsZero() {
		t.Fatalf("removal after the drain: %s, wake %v; want nothing to do", simcluster.Summarize(p), p.NextWake)
	}
	checkSlots(t, c, s.ID)
}

// TestAtMostOnceFenceWaitStopGrace: the wait before an at-most-once task of
// a removed node is replaced is the disconnect grace plus the task's stop
// grace: the default (10 s) where the spec says 0, none for
// `--stop-grace-period 0` (api.ExplicitZero: the fence kills at once).
func TestAtMostOnceFenceWaitStopGrace(t *testing.T) {
	for _, tt := range []struct {
		name  string
		grace time.Duration
		wait  time.Duration
	}{
		{"default", 0, 30 * time.Second},
		{"explicit zero", api.ExplicitZero, 20 * time.Second},
		{"5s", 5 * time.Second, 25 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("db", 2)
			sp.AtMostOnce = true
			sp.DisconnectGrace = 20 * time.Second
			sp.StopGracePeriod = tt.grace
			c.CreateService(sp)
			converge(t, c)
			removed := c.Now
			c.RemoveNode("n2")
			if p := step(t, c); len(p.Create) != 0 || !p.NextWake.Equal(removed.Add(tt.wait)) {
				t.Fatalf("plan %s, next wake %v; want none yet, a wake at %v", simcluster.Summarize(p), p.NextWake, removed.Add(tt.wait))
			}
		})
	}
}
