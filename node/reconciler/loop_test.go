package reconciler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// fakeRuntime runs containers in memory: RunContainer makes one running.
type fakeRuntime struct {
	mu         sync.Mutex
	containers map[string]api.Container
	specs      []runtime.Spec
	events     chan runtime.Event
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{containers: map[string]api.Container{}, events: make(chan runtime.Event)}
}

func (f *fakeRuntime) Subscribe() <-chan runtime.Event     { return f.events }
func (f *fakeRuntime) Unsubscribe(ch <-chan runtime.Event) {}

func (f *fakeRuntime) List() []api.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.Container, 0, len(f.containers))
	for _, c := range f.containers {
		out = append(out, c)
	}
	return out
}

func (f *fakeRuntime) RunContainer(ctx context.Context, spec runtime.Spec) (api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	c := api.Container{ID: "c-" + spec.TaskID, Name: spec.Name, State: api.ContainerRunning, TaskID: spec.TaskID, IP: "10.42.0.2"}
	f.containers[c.ID] = c
	return c, nil
}

func (f *fakeRuntime) Stop(ctx context.Context, id string, grace time.Duration) (api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return api.Container{}, errors.New("no such container")
	}
	c.State = api.ContainerExited
	f.containers[id] = c
	return c, nil
}

func (f *fakeRuntime) Remove(ctx context.Context, id string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	return nil
}

// leaderRaft is a replica that is the leader and caught up.
type leaderRaft struct{}

func (leaderRaft) Synced() bool           { return true }
func (leaderRaft) IsLeader() bool         { return true }
func (leaderRaft) LastContact() time.Time { return time.Now() }

// noMembers is gossip without load balancers to wait for.
type noMembers struct{}

func (noMembers) LBSubscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
func (noMembers) LBIndexes(string) map[string]uint64     { return nil }
func (noMembers) SetDrainWait(uint64)                    {}

// upNetwork is an overlay that is up and gave every container an address
// on network "netb".
type upNetwork struct{}

func (upNetwork) Ready() bool                  { return true }
func (upNetwork) IPs(string) map[string]string { return map[string]string{"netb": "10.60.0.2"} }

// replica is a store advanced through the FSM, as Raft would.
type replica struct {
	mu    sync.Mutex
	fsm   *fsm.FSM
	store *consensus.Store
	idx   uint64
}

func (r *replica) apply(t *testing.T, cmd command.Command) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idx++
	return r.fsm.ApplyCommand(r.idx, cmd).Err
}

func newReplica(t *testing.T) *replica {
	t.Helper()
	s := consensus.NewStore()
	r := &replica{fsm: fsm.New(s), store: s}
	if err := r.apply(t, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "s1"},
	}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return r
}

// TestRunStartsAndReports: the reconciler, outside any agent, starts the
// container of a task assigned to its node, on the task's networks, and
// reports it running with its addresses through Write; the report reaches
// the replica and the loop settles. Run returns once its context ends.
func TestRunStartsAndReports(t *testing.T) {
	rep := newReplica(t)
	now := time.Now().UTC()
	task := api.Task{ID: "t1", Name: "web.1", ServiceID: "s1", Service: "web", Slot: 1, NodeID: "n1",
		DesiredState: api.TaskRunning, State: api.TaskAssigned, Image: "busybox",
		Spec: api.ServiceSpec{Name: "web", Image: "busybox", ReadOnly: true,
			CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"CAP_NET_RAW"},
			Sysctls: map[string]string{"net.core.somaxconn": "1024"},
			Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}}, StopSignal: "SIGQUIT",
			Hostname: "app-host", ExtraHosts: []string{"db:10.0.0.5"}}, CreatedAt: now, UpdatedAt: now}
	if err := rep.apply(t, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: task.Spec}}); err != nil {
		t.Fatalf("create the service: %v", err)
	}
	if err := rep.apply(t, command.UpsertTasks{Tasks: []api.Task{task}}); err != nil {
		t.Fatalf("assign the task: %v", err)
	}
	rt := newFakeRuntime()
	var (
		mu      sync.Mutex
		reports []api.TaskStatus
	)
	r := New(Config{
		NodeID: "n1", Store: rep.store, Raft: leaderRaft{}, Members: noMembers{}, Runtime: rt, Network: upNetwork{},
		Write: func(ctx context.Context, cmd command.Command) error {
			ts, ok := cmd.(*command.TaskStatus)
			if !ok {
				t.Errorf("wrote %T, want only status reports", cmd)
				return nil
			}
			mu.Lock()
			reports = append(reports, ts.Statuses...)
			mu.Unlock()
			return rep.apply(t, *ts)
		},
		EnsureImage:  func(context.Context, *api.Task) error { return nil },
		PrepareFiles: func(context.Context, *api.Task) ([]ocispec.FileMount, error) { return nil, nil },
		GCTaskFiles:  func(map[string]bool) {},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	changed, unsub := rep.store.Subscribe()
	defer unsub()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()

	deadline := time.After(30 * time.Second)
	for {
		got, err := rep.store.Task("t1")
		if err == nil && got.State == api.TaskRunning {
			if got.ContainerID != "c-t1" || got.IP != "10.42.0.2" || got.IPs["netb"] != "10.60.0.2" {
				t.Fatalf("running task: container %q ip %q ips %v", got.ContainerID, got.IP, got.IPs)
			}
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("task never reported running: %+v", got)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}

	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.specs) != 1 || rt.specs[0].TaskID != "t1" || rt.specs[0].Hostname != "app-host" {
		t.Fatalf("containers started: %+v", rt.specs)
	}
	// The service's container options reach the container's spec.
	if got := rt.specs[0]; !got.ReadOnly || !slices.Equal(got.CapAdd, []string{"CAP_NET_ADMIN"}) || !slices.Equal(got.CapDrop, []string{"CAP_NET_RAW"}) ||
		got.Sysctls["net.core.somaxconn"] != "1024" || len(got.Ulimits) != 1 || got.StopSignal != "SIGQUIT" ||
		!slices.Equal(got.ExtraHosts, []string{"db:10.0.0.5"}) {
		t.Errorf("container options not passed on: %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	var states []string
	for _, st := range reports {
		states = append(states, st.State)
	}
	if len(states) == 0 || states[len(states)-1] != api.TaskRunning {
		t.Fatalf("reports %v, want the last one running", states)
	}
}
