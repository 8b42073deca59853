package events

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime"
)

type chanRuntime struct{ ch chan runtime.Event }

func (r chanRuntime) Subscribe() <-chan runtime.Event  { return r.ch }
func (r chanRuntime) Unsubscribe(<-chan runtime.Event) {}

type samples struct {
	mu sync.Mutex
	v  []float64
}

func (s *samples) Observe(x float64) { s.mu.Lock(); s.v = append(s.v, x); s.mu.Unlock() }

// next returns the next event of sub, or fails after a generous
// deadline.
func next(t *testing.T, sub *Sub) api.Event {
	t.Helper()
	select {
	case ev := <-sub.Events():
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event")
		return api.Event{}
	}
}

// TestLoop: outside any agent, the loop takes the replica it is in as the
// baseline, publishes what changes after, and names a task's container in
// its container events; a cluster that stops is let go.
func TestLoop(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	if res := machine.ApplyCommand(1, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "s1"},
	}); res.Err != nil {
		t.Fatal(res.Err)
	}
	hub := NewHub(time.Now)
	_, sub, cancelSub := hub.Subscribe(time.Time{})
	defer cancelSub()
	rt := chanRuntime{ch: make(chan runtime.Event)}
	starts := &samples{}
	var mu sync.Mutex
	current, done := store, make(chan struct{})
	l := NewLoop(LoopConfig{NodeID: "n1", Hub: hub, Runtime: rt, ContainerStart: starts,
		Cluster: func() (*consensus.Store, <-chan struct{}) {
			mu.Lock()
			defer mu.Unlock()
			return current, done
		}})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); l.Run(ctx) }()
	// The loop has taken its baseline once it receives from the runtime
	// (the unbuffered send returns only inside Run's select, after the
	// first attach): a write before that would be part of the baseline.
	rt.ch <- runtime.Event{ContainerID: "c0", State: api.ContainerCreated, Time: time.Now()}
	if ev := next(t, sub); ev.Type != api.EventContainer || ev.ID != "c0" {
		t.Fatalf("first event %+v, want the container event that shows the loop runs", ev)
	}

	// The bootstrap is the baseline: the first event is the service.
	spec := api.ServiceSpec{Name: "web", Image: "busybox"}
	if res := machine.ApplyCommand(2, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: spec}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if ev := next(t, sub); ev.Type != api.EventService || ev.Action != "created" || ev.Name != "web" {
		t.Fatalf("first event %+v, want the service created", ev)
	}
	now := time.Now().UTC()
	if res := machine.ApplyCommand(3, command.UpsertTasks{Tasks: []api.Task{{ID: "t1", Name: "web.1", ServiceID: "s1", Service: "web",
		Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned, Spec: spec, CreatedAt: now, UpdatedAt: now}}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	for ev := next(t, sub); ev.Type != api.EventTask; ev = next(t, sub) {
	}

	t0 := time.Now()
	rt.ch <- runtime.Event{ContainerID: "c1", TaskID: "t1", State: api.ContainerCreated, Time: t0}
	rt.ch <- runtime.Event{ContainerID: "c1", TaskID: "t1", State: api.ContainerRunning, Time: t0.Add(time.Second)}
	var acts []string
	for len(acts) < 2 {
		ev := next(t, sub)
		if ev.Type != api.EventContainer {
			continue
		}
		if ev.NodeID != "n1" || ev.Attributes["task"] != "web.1" || ev.Attributes["service"] != "web" {
			t.Fatalf("container event %+v does not name its node, task and service", ev)
		}
		acts = append(acts, ev.Action)
	}
	if acts[0] != ActionCreate || acts[1] != ActionStart {
		t.Fatalf("container actions %v", acts)
	}
	starts.mu.Lock()
	if len(starts.v) != 1 || starts.v[0] != 1 {
		t.Fatalf("container start observed %v, want [1]", starts.v)
	}
	starts.mu.Unlock()

	// `service rm` deletes the task before the node removes its
	// container: the die and destroy events still name the task and
	// service (the destroy event used to carry neither).
	if res := machine.ApplyCommand(4, command.DeleteTasks{IDs: []string{"t1"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	for ev := next(t, sub); ev.Type != api.EventTask; ev = next(t, sub) {
	}
	rt.ch <- runtime.Event{ContainerID: "c1", TaskID: "t1", State: api.ContainerExited, ExitCode: 143, Time: t0.Add(2 * time.Second)}
	rt.ch <- runtime.Event{ContainerID: "c1", TaskID: "t1", State: runtime.EventRemoved, Time: t0.Add(3 * time.Second)}
	acts = nil
	for len(acts) < 2 {
		ev := next(t, sub)
		if ev.Type != api.EventContainer {
			continue
		}
		if ev.Attributes["task"] != "web.1" || ev.Attributes["service"] != "web" || ev.Attributes["task_id"] != "t1" {
			t.Fatalf("%s event of a deleted task's container %+v does not name its task and service", ev.Action, ev)
		}
		acts = append(acts, ev.Action)
	}
	if acts[0] != ActionDie || acts[1] != ActionDestroy {
		t.Fatalf("container actions %v", acts)
	}

	// The cluster stops and the node is in none: the loop lets it go
	// (its container events no longer name tasks).
	mu.Lock()
	current = nil
	close(done)
	mu.Unlock()
	deadline := time.After(30 * time.Second)
	for i := 0; ; i++ {
		rt.ch <- runtime.Event{ContainerID: "c1", TaskID: "t1", State: api.ContainerRunning, Health: []string{"healthy", "unhealthy"}[i%2], Time: time.Now()}
		ev := next(t, sub)
		if ev.Type == api.EventContainer && ev.Attributes["task"] == "" {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the loop kept the stopped cluster")
		default:
		}
	}
	cancel()
	<-stopped
}

// TestLoopRestartReplay: after a restart the store replays this node's own
// log up to ReplayIndex; those states are baseline, so a service created
// and removed long ago makes no event, and the first event is the first
// write after the replay. Before, the replay was published as new events.
func TestLoopRestartReplay(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	apply := func(i uint64, c command.Command) {
		t.Helper()
		if res := machine.ApplyCommand(i, c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	// The restored snapshot.
	apply(1, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "s1"},
	})
	hub := NewHub(time.Now)
	_, sub, cancelSub := hub.Subscribe(time.Time{})
	defer cancelSub()
	rt := chanRuntime{ch: make(chan runtime.Event)}
	// replayed is closed once the loop has diffed a state past the replay.
	replayed := make(chan struct{})
	var once sync.Once
	l := NewLoop(LoopConfig{NodeID: "n1", Hub: hub, Runtime: rt, ContainerStart: &samples{},
		Cluster: func() (*consensus.Store, <-chan struct{}) { return store, nil },
		ReplayIndex: func(s *consensus.Store) uint64 {
			if s.Index() >= 4 {
				once.Do(func() { close(replayed) })
			}
			return 4
		}})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); l.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	rt.ch <- runtime.Event{ContainerID: "c0", State: api.ContainerCreated, Time: time.Now()}
	if ev := next(t, sub); ev.Type != api.EventContainer {
		t.Fatalf("first event %+v, want the container event that shows the loop runs", ev)
	}
	// The replay of the log: history.
	spec := func(name string) api.ServiceSpec { return api.ServiceSpec{Name: name, Image: "busybox"} }
	apply(2, command.CreateService{Service: api.Service{ID: "s-old", Name: "old", Spec: spec("old")}})
	apply(3, command.DeleteService{ID: "s-old"})
	apply(4, command.CreateService{Service: api.Service{ID: "s-kept", Name: "kept", Spec: spec("kept")}})
	select {
	case <-replayed:
	case <-time.After(30 * time.Second):
		t.Fatal("the loop never read the end of the replay")
	}
	// News. The diff that read the end of the replay may have read it
	// just before the last replayed entry landed; then the next diff is
	// dropped too, so news is written until some arrives.
	for i := uint64(5); ; i++ {
		name := fmt.Sprintf("new%d", i)
		apply(i, command.CreateService{Service: api.Service{ID: "s-" + name, Name: name, Spec: spec(name)}})
		select {
		case ev := <-sub.Events():
			for ev.Type != api.EventService {
				ev = next(t, sub)
			}
			if !strings.HasPrefix(ev.Name, "new") || ev.Action != ActionCreated {
				t.Fatalf("first service event %s %s, want a created new… (the replay is not news)", ev.Action, ev.Name)
			}
			return
		case <-time.After(2 * time.Second):
		}
		if i > 8 {
			t.Fatal("no event for the writes after the replay")
		}
	}
}
