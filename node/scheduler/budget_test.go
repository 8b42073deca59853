package scheduler_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// budgetCluster is cluster() with a planner that creates at most max tasks
// per plan.
func budgetCluster(t *testing.T, max int, nodes ...string) *simcluster.Cluster {
	t.Helper()
	c := cluster(t, nodes...)
	ids := 0
	c.Planner = scheduler.NewPlanner(scheduler.Config{MaxCreate: max, NewID: func() string {
		ids++
		return fmt.Sprintf("task-%06d", ids)
	}})
	return c
}

func TestPlanCreationBudget(t *testing.T) {
	c := budgetCluster(t, 10, "n1", "n2", "n3")
	s := c.CreateService(testSpec("web", 35))
	other := c.CreateService(testSpec("zz", 2)) // served after web (ID order)
	for i, want := range []int{10, 10, 10, 7} {
		p := step(t, c)
		if len(p.Create) != want {
			t.Fatalf("plan %d created %d tasks, want %d (budget 10)", i+1, len(p.Create), want)
		}
		if more := i < 3; p.More != more {
			t.Fatalf("plan %d: More = %v, want %v", i+1, p.More, more)
		}
	}
	converge(t, c)
	checkSlots(t, c, s.ID)
	checkSlots(t, c, other.ID)

	// A rolling update of every slot at once still goes through the
	// budget, and ends with every slot on the new spec.
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) {
		sp.Image = "img:2"
		sp.UpdateConfig.Parallelism = 0
	})
	converge(t, c)
	checkSlots(t, c, s.ID)
	for _, tk := range c.Active(s.ID) {
		if tk.Image != "img:2" {
			t.Fatalf("task %s still runs %s after the update", tk.Name, tk.Image)
		}
	}
	if st := c.Services[s.ID].UpdateStatus; st == nil || st.State != api.UpdateCompleted {
		t.Fatalf("update status %+v, want completed", st)
	}
}

// TestPlanBoundedForHugeStoredReplicas: a replica count the API refuses can
// still sit in an older log. One plan over it must cost the leader a
// bounded amount of memory, and scaling back must work.
func TestPlanBoundedForHugeStoredReplicas(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 1)
	sp.Replicas = 2_000_000 // bypasses servicespec.Validate, as an old log entry would
	s := c.CreateService(sp)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := c.Plan()
	runtime.ReadMemStats(&after)
	if len(p.Create) != scheduler.DefaultMaxCreate || !p.More {
		t.Fatalf("plan created %d tasks (More %v), want %d and More", len(p.Create), p.More, scheduler.DefaultMaxCreate)
	}
	const limit = 64 << 20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
		t.Fatalf("one plan allocated %d MiB, want at most %d MiB", alloc>>20, limit>>20)
	}
	c.Apply(p)
	c.Report()

	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Replicas = 1 })
	converge(t, c)
	checkSlots(t, c, s.ID)
	if n := len(c.Active(s.ID)); n != 1 {
		t.Fatalf("%d active tasks after scaling back to 1", n)
	}
}

// BenchmarkPlanHugeReplicas: one plan over a service whose stored replica
// count is far above MaxReplicas (B/op is the leader's cost per round).
func BenchmarkPlanHugeReplicas(b *testing.B) {
	st := benchState(100, 1, 2_000_000)
	p := scheduler.NewPlanner(scheduler.Config{NewID: counterIDs()})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if plan := p.Plan(st, t0); len(plan.Create) != scheduler.DefaultMaxCreate {
			b.Fatalf("created %d", len(plan.Create))
		}
	}
}

// TestRebalanceCreationBudget: rebalancing moves are created under the
// plan's budget too, and a plan that leaves moves for later says More.
func TestRebalanceCreationBudget(t *testing.T) {
	c := budgetCluster(t, 2, "n1", "n2")
	sp := testSpec("web", 12)
	sp.UpdateConfig.Parallelism = 0
	s := c.CreateService(sp)
	converge(t, c)
	c.AddNode("n3", nil)
	c.AddNode("n4", nil)
	p := step(t, c)
	if len(p.Create) != 2 || !p.More {
		t.Fatalf("first plan of 6 moves, budget 2: %d created, More %v", len(p.Create), p.More)
	}
	converge(t, c)
	if got := spreadOf(c, s.ID, "n1", "n2", "n3", "n4"); got != "n1=3 n2=3 n3=3 n4=3" {
		t.Fatalf("spread %s", got)
	}
	checkSlots(t, c, s.ID)
}
