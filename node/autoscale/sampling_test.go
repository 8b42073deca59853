package autoscale

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/cgstats"
)

// fakeReplica is a Replica whose Subscribe channel the test drives.
type fakeReplica struct {
	mu       sync.Mutex
	services []*api.Service
	tasks    map[string][]*api.Task // by node ID
	ch       chan uint64
}

func (f *fakeReplica) Subscribe() (<-chan uint64, func()) { return f.ch, func() {} }

func (f *fakeReplica) Services() []*api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.services
}

func (f *fakeReplica) TasksByNode(id string) []*api.Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tasks[id]
}

// set replaces the replica's services and tasks.
func (f *fakeReplica) set(services []*api.Service, tasks map[string][]*api.Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services, f.tasks = services, tasks
}

// fakeContainers is a Containers with fixed counters; it counts Stats calls.
type fakeContainers struct {
	mu    sync.Mutex
	list  []api.Container
	stats map[string]cgstats.Stats // by container ID; missing: an error
	calls int
}

func (f *fakeContainers) List() []api.Container { return f.list }

func (f *fakeContainers) Stats(id string) (cgstats.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	st, ok := f.stats[id]
	if !ok {
		return cgstats.Stats{}, errors.New("no cgroup")
	}
	return st, nil
}

func (f *fakeContainers) statsCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func sampledTasks(s *Sampler) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for id, tp := range s.tasks {
		out[id] = tp.containerID
	}
	return out
}

// TestSample: only running containers of autoscaled tasks assigned to this
// node are read; every other task is forgotten, and a node with no
// autoscaled service reads nothing and says so.
func TestSample(t *testing.T) {
	auto := &api.Service{ID: "svc-auto", Spec: api.ServiceSpec{Autoscale: &api.AutoscaleConfig{}}}
	plain := &api.Service{ID: "svc-plain"}
	replica := &fakeReplica{
		services: []*api.Service{auto, plain},
		tasks: map[string][]*api.Task{"n1": {
			{ID: "t-run", ServiceID: "svc-auto"},
			{ID: "t-exited", ServiceID: "svc-auto"},
			{ID: "t-nostats", ServiceID: "svc-auto"},
			{ID: "t-plain", ServiceID: "svc-plain"},
		}},
	}
	rt := &fakeContainers{
		list: []api.Container{
			{ID: "c-run", TaskID: "t-run", State: api.ContainerRunning},
			{ID: "c-exited", TaskID: "t-exited", State: api.ContainerExited},
			{ID: "c-nostats", TaskID: "t-nostats", State: api.ContainerRunning},
			{ID: "c-plain", TaskID: "t-plain", State: api.ContainerRunning},
			{ID: "c-other", TaskID: "t-elsewhere", State: api.ContainerRunning},
			{ID: "c-bare", State: api.ContainerRunning},
		},
		stats: map[string]cgstats.Stats{
			"c-run": {CPUNanos: 5, MemoryBytes: 7}, "c-exited": {}, "c-plain": {}, "c-other": {}, "c-bare": {},
		},
	}
	var s Sampler
	s.Record("t-gone", "c-gone", Point{At: time.Unix(1, 0)})
	at := time.Unix(100, 0)
	if !SampleOnce(&s, "n1", replica, rt, func() time.Time { return at }) {
		t.Fatal("Sample with an autoscaled service reported none")
	}
	if got, want := sampledTasks(&s), map[string]string{"t-run": "c-run"}; len(got) != 1 || got["t-run"] != want["t-run"] {
		t.Fatalf("sampled %v, want %v", got, want)
	}
	if p := s.tasks["t-run"].points; len(p) != 1 || p[0] != (Point{At: at, CPUNanos: 5, Memory: 7}) {
		t.Fatalf("t-run points %+v", p)
	}
	if n := rt.statsCalls(); n != 2 { // c-run and c-nostats
		t.Fatalf("Stats called %d times, want 2 (running autoscaled tasks here only)", n)
	}

	// No service autoscaled any more: nothing read, everything forgotten.
	replica.set([]*api.Service{plain}, replica.tasks)
	if SampleOnce(&s, "n1", replica, rt, time.Now) {
		t.Fatal("Sample without an autoscaled service reported one")
	}
	if got := sampledTasks(&s); len(got) != 0 {
		t.Fatalf("sampled %v after autoscaling ended, want none", got)
	}

	// No runtime: nothing read, nothing kept.
	replica.set([]*api.Service{auto}, replica.tasks)
	s.Record("t-run", "c-run", Point{At: at})
	if SampleOnce(&s, "n1", replica, nil, time.Now) {
		t.Fatal("Sample without a runtime reported an autoscaled service")
	}
	if got := sampledTasks(&s); len(got) != 0 {
		t.Fatalf("sampled %v without a runtime, want none", got)
	}
}

// TestSampleLoop: the loop samples at its start and on a state change,
// and returns when its context ends.
func TestSampleLoop(t *testing.T) {
	replica := &fakeReplica{ch: make(chan uint64, 1)}
	rt := &fakeContainers{
		list:  []api.Container{{ID: "c1", TaskID: "t1", State: api.ContainerRunning}},
		stats: map[string]cgstats.Stats{"c1": {CPUNanos: 1}},
	}
	var s Sampler
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); SampleLoop(ctx, &s, "n1", replica, rt) }()

	// Idle (no autoscaled service): the loop waits for the state.
	replica.set([]*api.Service{{ID: "s1", Spec: api.ServiceSpec{Autoscale: &api.AutoscaleConfig{}}}},
		map[string][]*api.Task{"n1": {{ID: "t1", ServiceID: "s1"}}})
	replica.ch <- 1
	deadline := time.Now().Add(20 * time.Second)
	for rt.statsCalls() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no sample after a state change made a service autoscaled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("SampleLoop did not return after its context ended")
	}
}
