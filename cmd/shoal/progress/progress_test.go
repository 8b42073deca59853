package progress

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

func TestAssess(t *testing.T) {
	v1 := api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 3, Image: "nginx:1"}
	v2 := v1
	v2.Image = "nginx:2"
	svc := func(spec api.ServiceSpec, us *api.UpdateStatus) api.Service {
		return api.Service{ID: "s1", Name: "web", Spec: spec, Version: 9, UpdateStatus: us}
	}
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	task := func(slot int, spec api.ServiceSpec, desired, state string, age int) api.Task {
		return api.Task{
			ID: fmt.Sprintf("t%d-%s-%d", slot, state, age), Name: fmt.Sprintf("web.%d", slot), Slot: slot, NodeID: "n1",
			DesiredState: desired, State: state, Spec: spec, Image: spec.Image,
			CreatedAt: t0.Add(-time.Duration(age) * time.Minute), UpdatedAt: t0.Add(-time.Duration(age) * time.Minute),
		}
	}
	running := func(spec api.ServiceSpec, slots ...int) []api.Task {
		var ts []api.Task
		for _, s := range slots {
			ts = append(ts, task(s, spec, "running", "running", 1))
		}
		return ts
	}
	scaled := v1
	scaled.Replicas = 5
	noRestart := api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 1, Image: "nginx:1", RestartPolicy: api.RestartPolicy{Condition: api.RestartNone}}
	onFailure := noRestart
	onFailure.RestartPolicy.Condition = api.RestartOnFailure
	global := api.ServiceSpec{Name: "agent", Mode: "global", Image: "busybox"}
	gtask := func(node, state string) api.Task {
		return api.Task{ID: "g-" + node, Name: "agent." + node, NodeID: node, Node: node, DesiredState: "running", State: state, Spec: global}
	}
	nodes := []api.Node{
		{ID: "n1", Status: "ready", Availability: "active"},
		{ID: "n2", Status: "ready", Availability: "active"},
		{ID: "n3", Status: "down", Availability: "active"},
		{ID: "n4", Status: "ready", Availability: "drain"},
	}

	tests := []struct {
		name        string
		op          string
		svc         api.Service
		tasks       []api.Task
		nodes       []api.Node
		ignore      map[string]bool
		wantDone    bool
		wantRunning int
		wantDesired int
		wantErr     string
	}{
		{name: "converged", op: OpCreate, svc: svc(v1, nil), tasks: running(v1, 1, 2, 3), wantDone: true, wantRunning: 3, wantDesired: 3},
		{name: "one starting", op: OpCreate, svc: svc(v1, nil),
			tasks:       append(running(v1, 1, 2), task(3, v1, "running", "starting", 0)),
			wantRunning: 2, wantDesired: 3},
		{name: "no tasks yet", op: OpCreate, svc: svc(v1, nil), wantDesired: 3},
		{name: "update not started", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdateUpdating}),
			tasks: running(v1, 1, 2, 3), wantRunning: 0, wantDesired: 3},
		{name: "update half way", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdateUpdating}),
			tasks:       append(append(running(v2, 1, 2), task(1, v1, "shutdown", "shutdown", 5), task(2, v1, "shutdown", "running", 5)), running(v1, 3)...),
			wantRunning: 2, wantDesired: 3},
		{name: "update done, old tasks still stopping", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdateCompleted}),
			tasks:    append(running(v2, 1, 2, 3), task(3, v1, "shutdown", "running", 5)),
			wantDone: true, wantRunning: 3, wantDesired: 3},
		{name: "update paused", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdatePaused, Message: "task web.1 failed"}),
			tasks: running(v1, 1, 2, 3), wantErr: "update of web paused: task web.1 failed"},
		{name: "update rolling back: waited for", op: OpUpdate, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackStarted, Message: "too many failures"}),
			tasks: append(running(v1, 2, 3), task(1, v2, "running", "failed", 0)), wantRunning: 2, wantDesired: 3},
		{name: "update rolling back, all back: monitoring", op: OpUpdate, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackStarted, Message: "too many failures"}),
			tasks: running(v1, 1, 2, 3), wantRunning: 3, wantDesired: 3},
		{name: "update rolled back", op: OpUpdate, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackCompleted, Message: "too many failures"}),
			tasks: running(v1, 1, 2, 3), wantErr: "update of web failed and was rolled back: too many failures"},
		{name: "update's rollback paused", op: OpUpdate, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackPaused, Message: "task web.2 failed"}),
			tasks: running(v1, 1, 2, 3), wantErr: "update of web failed and its rollback paused: task web.2 failed"},
		{name: "rollback completes", op: OpRollback, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackCompleted}),
			tasks: running(v1, 1, 2, 3), wantDone: true, wantRunning: 3, wantDesired: 3},
		{name: "rollback paused", op: OpRollback, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackPaused}),
			tasks: running(v1, 1, 2, 3), wantErr: "rollback of web paused"},
		{name: "all updated, still monitoring", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdateUpdating}),
			tasks: running(v2, 1, 2, 3), wantRunning: 3, wantDesired: 3},
		{name: "all updated, monitor over", op: OpUpdate, svc: svc(v2, &api.UpdateStatus{State: api.UpdateCompleted}),
			tasks: running(v2, 1, 2, 3), wantDone: true, wantRunning: 3, wantDesired: 3},
		{name: "rollback monitoring", op: OpRollback, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackStarted}),
			tasks: running(v1, 1, 2, 3), wantRunning: 3, wantDesired: 3},
		{name: "rollback completed", op: OpRollback, svc: svc(v1, &api.UpdateStatus{State: api.UpdateRollbackCompleted}),
			tasks: running(v1, 1, 2, 3), wantDone: true, wantRunning: 3, wantDesired: 3},
		{name: "stale paused status ignored by scale", op: OpScale, svc: svc(scaled, &api.UpdateStatus{State: api.UpdatePaused}),
			tasks: running(v1, 1, 2, 3, 4, 5), wantDone: true, wantRunning: 5, wantDesired: 5},
		{name: "scale down", op: OpScale, svc: svc(api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 1, Image: "nginx:1"}, nil),
			tasks:    append(running(v1, 1), task(2, v1, "shutdown", "running", 1), task(3, v1, "shutdown", "shutdown", 1)),
			wantDone: true, wantRunning: 1, wantDesired: 1},
		{name: "keeps failing", op: OpCreate, svc: svc(api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 1, Image: "nginx:1"}, nil),
			tasks: func() []api.Task {
				ts := []api.Task{task(1, v1, "running", "starting", 0)}
				for i := 1; i <= 3; i++ {
					f := task(1, v1, "shutdown", "failed", i)
					f.Error = "exec format error"
					ts = append(ts, f)
				}
				return ts
			}(),
			wantErr: "keep failing (3 failures): web.1: exec format error"},
		{name: "old failures ignored", op: OpCreate, svc: svc(api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 1, Image: "nginx:1"}, nil),
			tasks: []api.Task{task(1, v1, "running", "running", 0), task(1, v1, "shutdown", "failed", 1),
				task(1, v1, "shutdown", "failed", 2), task(1, v1, "shutdown", "failed", 3)},
			ignore:   map[string]bool{"t1-failed-1": true, "t1-failed-2": true, "t1-failed-3": true},
			wantDone: true, wantRunning: 1, wantDesired: 1},
		{name: "restart none: a failed task ends the wait", op: OpCreate, svc: svc(noRestart, nil),
			tasks: func() []api.Task {
				f := task(1, noRestart, "running", "failed", 0)
				f.Error = "task: non-zero exit (3)"
				return []api.Task{f}
			}(),
			wantErr: "web: task web.1 ended (failed: task: non-zero exit (3)) and --restart-condition none does not start it again"},
		{name: "restart on-failure: a clean exit ends the wait", op: OpCreate, svc: svc(onFailure, nil),
			tasks:   []api.Task{task(1, onFailure, "running", "complete", 0)},
			wantErr: "task web.1 ended (complete) and --restart-condition on-failure does not start it again"},
		{name: "restart on-failure: a failure is restarted", op: OpCreate, svc: svc(onFailure, nil),
			tasks: []api.Task{task(1, onFailure, "running", "failed", 0)}, wantDesired: 1},
		{name: "restart none: an end before the wait is not this one's", op: OpScale, svc: svc(noRestart, nil),
			tasks:  []api.Task{task(1, noRestart, "running", "failed", 3)},
			ignore: map[string]bool{"t1-failed-3": true}, wantDesired: 1},
		{name: "global converged", op: OpCreate, svc: api.Service{Name: "agent", Spec: global},
			tasks: []api.Task{gtask("n1", "running"), gtask("n2", "running")}, nodes: nodes,
			wantDone: true, wantRunning: 2, wantDesired: 2},
		{name: "global starting", op: OpCreate, svc: api.Service{Name: "agent", Spec: global},
			tasks: []api.Task{gtask("n1", "running"), gtask("n2", "preparing")}, nodes: nodes,
			wantRunning: 1, wantDesired: 2},
		{name: "global before scheduling", op: OpCreate, svc: api.Service{Name: "agent", Spec: global}, nodes: nodes,
			wantRunning: 0, wantDesired: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Assess(tt.op, tt.svc, tt.tasks, tt.nodes, tt.ignore)
			if tt.wantErr != "" {
				if got.Err == nil || !strings.Contains(got.Err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", got.Err, tt.wantErr)
				}
				return
			}
			if got.Err != nil {
				t.Fatalf("unexpected err %v", got.Err)
			}
			if got.Done != tt.wantDone || got.Running != tt.wantRunning || got.Desired != tt.wantDesired {
				t.Fatalf("done=%v running=%d desired=%d, want %v %d %d (slots %v)",
					got.Done, got.Running, got.Desired, tt.wantDone, tt.wantRunning, tt.wantDesired, got.Slots)
			}
		})
	}
}

func TestAssessSlots(t *testing.T) {
	spec := api.ServiceSpec{Name: "web", Mode: "replicated", Replicas: 10, Image: "x"}
	old := spec
	old.Image = "old"
	t0 := time.Now()
	var tasks []api.Task
	for slot := 1; slot <= 10; slot++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprint(slot), Name: fmt.Sprintf("web.%d", slot), Slot: slot, DesiredState: "running", State: "running", Spec: spec, CreatedAt: t0})
	}
	tasks[1].State, tasks[1].Error = "failed", "boom"
	tasks[2].Spec = old
	// An older shut-down task in slot 1 must not speak for the slot.
	tasks = append(tasks, api.Task{ID: "old1", Name: "web.1", Slot: 1, DesiredState: "shutdown", State: "shutdown", Spec: old, CreatedAt: t0.Add(time.Second)})
	got := Assess(OpUpdate, api.Service{Name: "web", Spec: spec}, tasks, nil, nil)
	var lines []string
	for _, s := range got.Slots {
		lines = append(lines, s.Name+": "+s.Text)
	}
	want := "web.1: running|web.2: failed: boom|web.3: running (previous version)|web.4: running|web.5: running|" +
		"web.6: running|web.7: running|web.8: running|web.9: running|web.10: running"
	if strings.Join(lines, "|") != want {
		t.Fatalf("slots:\n%s\nwant:\n%s", strings.Join(lines, "|"), want)
	}
}

// TestAssessImmaterialUpdate: an update that changes nothing material
// (labels, ports, policies, the endpoint mode, the placement limit) leaves
// the tasks on their old spec version, and the wait ends at once; before,
// `service update --label-add` waited for replacements that never came,
// until its timeout. A material change still waits for them.
func TestAssessImmaterialUpdate(t *testing.T) {
	a := specflags.DefaultSpec()
	a.Name, a.Image, a.Replicas = "web", "x", 2
	old := []api.Task{
		{ID: "t1", Name: "web.1", Slot: 1, NodeID: "n1", DesiredState: "running", State: "running", Spec: a, SpecVersion: 1},
		{ID: "t2", Name: "web.2", Slot: 2, NodeID: "n2", DesiredState: "running", State: "running", Spec: a, SpecVersion: 1},
	}
	for name, c := range map[string]struct {
		change   func(*api.ServiceSpec)
		wantDone bool
	}{
		"labels":       {func(s *api.ServiceSpec) { s.Labels = map[string]string{"a": "b"} }, true},
		"ports":        {func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 80, Target: 80, Protocol: "tcp"}} }, true},
		"policies":     {func(s *api.ServiceSpec) { s.UpdateConfig.Parallelism = 7; s.RestartPolicy.Delay = time.Hour }, true},
		"endpoint":     {func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR }, true},
		"max per node": {func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 1 }, true},
		"image":        {func(s *api.ServiceSpec) { s.Image = "y" }, false},
		"env":          {func(s *api.ServiceSpec) { s.Env = []string{"A=1"} }, false},
		"force":        {func(s *api.ServiceSpec) { s.ForceUpdate++ }, false},
		"read only":    {func(s *api.ServiceSpec) { s.ReadOnly = true }, false},
		"spread": {func(s *api.ServiceSpec) {
			s.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
		}, false},
	} {
		b := a
		c.change(&b)
		svc := api.Service{ID: "s1", Name: "web", Spec: b, Version: 2}
		got := Assess(OpUpdate, svc, old, nil, nil)
		if got.Done != c.wantDone || got.Err != nil {
			t.Errorf("%s: done %v (err %v), want done %v", name, got.Done, got.Err, c.wantDone)
		}
	}
}

// TestAssessPendingReason: a task no node can take says why in its slot
// line, as service ps does; before, the wait showed "mx.4: new" and
// nothing more while it waited.
func TestAssessPendingReason(t *testing.T) {
	a := specflags.DefaultSpec()
	a.Name, a.Image, a.Replicas = "mx", "x", 1
	why := "no suitable node (3 nodes at max replicas per node (1))"
	tasks := []api.Task{{ID: "t1", Name: "mx.1", Slot: 1, DesiredState: "running", State: api.TaskNew, Message: why, Spec: a, SpecVersion: 1}}
	got := Assess(OpCreate, api.Service{ID: "s1", Name: "mx", Spec: a, Version: 1}, tasks, nil, nil)
	if len(got.Slots) != 1 || got.Slots[0].Text != "new: "+why {
		t.Fatalf("slot lines %+v, want mx.1 new: %s", got.Slots, why)
	}
}

// TestAssessScaledDown: after a scale down, a task of a slot above the
// replicas that is still stopping (or was still pending) says it was
// scaled down; before, `service scale mx=3` printed "mx.4: new: no
// suitable node ..." and "mx.5: running" next to "converged, 3/3 running".
func TestAssessScaledDown(t *testing.T) {
	a := specflags.DefaultSpec()
	a.Name, a.Image, a.Replicas = "mx", "x", 3
	why := "no suitable node (3 nodes at max replicas per node (1))"
	var tasks []api.Task
	for slot := 1; slot <= 3; slot++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprint(slot), Name: fmt.Sprintf("mx.%d", slot), Slot: slot, DesiredState: "running", State: "running", Spec: a, SpecVersion: 1})
	}
	tasks = append(tasks,
		api.Task{ID: "4", Name: "mx.4", Slot: 4, DesiredState: "shutdown", State: api.TaskNew, Message: why, Spec: a, SpecVersion: 1},
		api.Task{ID: "5", Name: "mx.5", Slot: 5, DesiredState: "shutdown", State: "running", Spec: a, SpecVersion: 1},
		api.Task{ID: "6", Name: "mx.6", Slot: 6, DesiredState: "shutdown", State: "shutdown", Spec: a, SpecVersion: 1},
	)
	got := Assess(OpScale, api.Service{ID: "s1", Name: "mx", Spec: a, Version: 1}, tasks, nil, nil)
	var lines []string
	for _, s := range got.Slots {
		lines = append(lines, s.Name+": "+s.Text)
	}
	want := "mx.1: running|mx.2: running|mx.3: running|mx.4: new (scaled down)|mx.5: running (scaled down)"
	if strings.Join(lines, "|") != want || !got.Done {
		t.Fatalf("slots:\n%s\nwant:\n%s (done %v)", strings.Join(lines, "|"), want, got.Done)
	}
}

// TestAssessOverLimit: after --replicas-max-per-node is lowered below what
// nodes run (the excess keeps running while no node has room), the wait's
// verdict says so; before, it said "converged, 5/5 running" and nothing
// else, over a limit of 1 with two tasks on two nodes.
func TestAssessOverLimit(t *testing.T) {
	a := specflags.DefaultSpec()
	a.Name, a.Image, a.Replicas = "mx", "x", 5
	var tasks []api.Task
	for slot, node := range []string{"n1", "n2", "n3", "n1", "n2"} {
		tasks = append(tasks, api.Task{ID: fmt.Sprint(slot), Name: fmt.Sprintf("mx.%d", slot+1), Slot: slot + 1, NodeID: node,
			DesiredState: "running", State: "running", Spec: a, SpecVersion: 1})
	}
	for _, c := range []struct {
		limit uint64
		want  string
	}{
		{0, ""},
		{2, ""},
		{1, "mx: 2 nodes run more tasks than max replicas per node (1): the excess keeps running until another node has room for it"},
	} {
		spec := a
		spec.MaxReplicasPerNode = c.limit
		got := Assess(OpUpdate, api.Service{ID: "s1", Name: "mx", Spec: spec, Version: 1}, tasks, nil, nil)
		if !got.Done || got.Note != c.want {
			t.Errorf("limit %d: done %v note %q, want done and %q", c.limit, got.Done, got.Note, c.want)
		}
	}
}
