package scheduler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// benchState builds nodes and services (services×replicas tasks wanted),
// with no tasks yet.
func benchState(nodes, services int, replicas uint64) scheduler.State {
	var st scheduler.State
	for i := 0; i < nodes; i++ {
		st.Nodes = append(st.Nodes, api.Node{ID: fmt.Sprintf("node-%04d", i), Hostname: fmt.Sprintf("host%d", i),
			Status: api.NodeReady, Availability: api.AvailabilityActive,
			Labels: map[string]string{"zone": fmt.Sprint(i % 3)}})
	}
	for i := 0; i < services; i++ {
		sp := servicespec.Defaults(api.ServiceSpec{Name: fmt.Sprintf("svc%03d", i), Image: "img:1", Replicas: replicas})
		sp.Constraints = []string{"node.labels.zone!=9"}
		st.Services = append(st.Services, api.Service{ID: fmt.Sprintf("sid-%03d", i), Name: sp.Name, Spec: sp, Version: 10})
	}
	return st
}

func counterIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("t%07d", n) }
}

func BenchmarkPlace100kTasksOn1kNodes(b *testing.B) {
	for _, shape := range []struct {
		services, replicas int
		placed             bool // spread over zone, at most 2 per node
	}{{1, servicespec.MaxReplicas, false}, {100, 1000, false}, {100, 1000, true}} {
		name := fmt.Sprintf("%dx%d", shape.services, shape.replicas)
		if shape.placed {
			name += "-spread-max2"
		}
		b.Run(name, func(b *testing.B) {
			st := benchState(1000, shape.services, uint64(shape.replicas))
			for i := range st.Services {
				if shape.placed {
					st.Services[i].Spec.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
					st.Services[i].Spec.MaxReplicasPerNode = 2
				}
			}
			// One plan places everything: this measures placement, not
			// the creation budget.
			p := scheduler.NewPlanner(scheduler.Config{NewID: counterIDs(), MaxCreate: 1 << 30})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				plan := p.Plan(st, t0)
				if len(plan.Create) != shape.services*shape.replicas {
					b.Fatalf("created %d", len(plan.Create))
				}
			}
		})
	}
}

// placedState returns the state after placing 100k tasks and every node
// reporting them running.
func placedState(tb testing.TB) scheduler.State {
	st := benchState(1000, 100, 1000)
	plan := scheduler.NewPlanner(scheduler.Config{NewID: counterIDs(), MaxCreate: 1 << 30}).Plan(st, t0)
	st.Tasks = plan.Create
	for i := range st.Tasks {
		st.Tasks[i].State = api.TaskRunning
		st.Tasks[i].StartedAt = t0
	}
	if again := scheduler.NewPlanner(scheduler.Config{NewID: counterIDs()}).Plan(st, t0.Add(time.Minute)); !again.Empty() {
		tb.Fatalf("converged state planned %s", simcluster.Summarize(again))
	}
	return st
}

func BenchmarkRescheduleOneNodeFailure(b *testing.B) {
	st := placedState(b)
	st.Nodes[500].Status = api.NodeDown
	p := scheduler.NewPlanner(scheduler.Config{NewID: counterIDs()})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan := p.Plan(st, t0.Add(time.Minute))
		if len(plan.Create) != 100 || len(plan.Update) != 100 {
			b.Fatalf("plan: %d creates, %d updates", len(plan.Create), len(plan.Update))
		}
	}
}

func TestSpreadAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	st := placedState(t)
	per := map[string]int{}
	for _, tk := range st.Tasks {
		per[tk.NodeID]++
	}
	for _, n := range st.Nodes {
		if per[n.ID] != 100 {
			t.Fatalf("node %s has %d tasks, want 100", n.ID, per[n.ID])
		}
	}
}
