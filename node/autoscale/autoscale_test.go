package autoscale

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestRollingUsage(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var pts []Point
	// 0.2 cores: 200ms of CPU per second, memory 10 then 30.
	for s := 0; s <= 15; s++ {
		mem := uint64(10)
		if s >= 10 {
			mem = 30
		}
		pts = AddPoint(pts, Point{At: at(s), CPUNanos: uint64(s) * 200e6, Memory: mem}, 10*time.Second)
	}
	if pts[0].At != at(5) || len(pts) != 11 {
		t.Fatalf("window keeps %d points from %v, want 11 from %v", len(pts), pts[0].At, at(5))
	}
	cores, mem, ok := Rolling(pts)
	if !ok || math.Abs(cores-0.2) > 1e-9 || mem != (5*10+6*30)/11 {
		t.Fatalf("rolling usage %g cores %d bytes ok=%v", cores, mem, ok)
	}
	// A restart: the counter goes back, the series starts over.
	pts = AddPoint(pts, Point{At: at(16), CPUNanos: 5, Memory: 1}, 10*time.Second)
	if len(pts) != 1 {
		t.Fatalf("after a counter reset %d points, want 1", len(pts))
	}
	if _, _, ok := Rolling(pts); ok {
		t.Fatal("one point gave a rolling usage")
	}
	if _, _, ok := Rolling(nil); ok {
		t.Fatal("no points gave a rolling usage")
	}
}

func TestUsageSampler(t *testing.T) {
	var s Sampler
	t0 := time.Now()
	s.Record("t1", "c1", Point{At: t0, CPUNanos: 0})
	s.Record("t1", "c1", Point{At: t0.Add(time.Second), CPUNanos: 1e9})
	s.Record("t2", "c2", Point{At: t0, CPUNanos: 0})
	if rep := s.Report(); len(rep.Tasks) != 1 || rep.Tasks[0].TaskID != "t1" || math.Abs(rep.Tasks[0].CPUCores-1) > 1e-9 {
		t.Fatalf("report %+v, want t1 at one core", rep)
	}
	// A new container for the task starts a new series.
	s.Record("t1", "c9", Point{At: t0.Add(2 * time.Second), CPUNanos: 2e9})
	if rep := s.Report(); len(rep.Tasks) != 0 {
		t.Fatalf("report %+v after a container change, want none", rep)
	}
	s.KeepOnly(map[string]bool{"t2": true})
	if _, ok := s.tasks["t1"]; ok {
		t.Fatal("keepOnly kept t1")
	}
}

func TestServiceSample(t *testing.T) {
	now := time.Now()
	task := func(id string, nanoCPUs, mem int64) *api.Task {
		tk := &api.Task{ID: id}
		tk.Spec.Resources.Limits = api.Resources{NanoCPUs: nanoCPUs, MemoryBytes: mem}
		return tk
	}
	svc := &api.Service{Spec: api.ServiceSpec{Replicas: 3}}
	tests := []struct {
		name     string
		tasks    []*api.Task
		usage    map[string]TaskUsage
		ok       bool
		cpu, mem float64
		n        int
	}{
		{"limit 0.2, at the limit", []*api.Task{task("a", 2e8, 0)}, map[string]TaskUsage{"a": {CPUCores: 0.2}}, true, 100, 0, 1},
		{"no limit: share of one core", []*api.Task{task("a", 0, 0)}, map[string]TaskUsage{"a": {CPUCores: 0.5}}, true, 50, 0, 1},
		{"average over reporting tasks", []*api.Task{task("a", 1e9, 100), task("b", 1e9, 100), task("c", 1e9, 100)},
			map[string]TaskUsage{"a": {CPUCores: 1, MemoryBytes: 50}, "b": {CPUCores: 0, MemoryBytes: 100}}, true, 50, 75, 2},
		{"nobody reported", []*api.Task{task("a", 0, 0)}, map[string]TaskUsage{"x": {CPUCores: 1}}, false, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := ServiceSample(svc, tc.tasks, tc.usage, now)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if math.Abs(s.CPUPercent-tc.cpu) > 1e-9 || math.Abs(s.MemoryPercent-tc.mem) > 1e-9 || s.Tasks != tc.n || s.Replicas != 3 || !s.At.Equal(now) {
				t.Fatalf("sample %+v, want cpu %g mem %g tasks %d", s, tc.cpu, tc.mem, tc.n)
			}
		})
	}
}

// TestOwn: the leader believes a node's usage report only for the tasks the
// state puts on that node.
func TestOwn(t *testing.T) {
	owner := map[string]string{"t1": "n1", "t2": "n2", "t3": "n1"}
	rep := Report{Tasks: []TaskUsage{
		{TaskID: "t1", CPUCores: 1},
		{TaskID: "t2", CPUCores: 9}, // n2's task: n1 may not speak for it
		{TaskID: "t3", CPUCores: 3},
		{TaskID: "t9", CPUCores: 9}, // no such running task
	}}
	for _, tc := range []struct {
		node string
		want []string
	}{
		{"n1", []string{"t1", "t3"}},
		{"n2", []string{"t2"}},
		{"n3", nil},
		{"", nil},
	} {
		var got []string
		for _, u := range Own(tc.node, rep, owner) {
			got = append(got, u.TaskID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Own(%q) = %v, want %v", tc.node, got, tc.want)
		}
	}
}
