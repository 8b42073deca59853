package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// harness drives an FSM through encoded log entries, as Raft would.
type harness struct {
	t     *testing.T
	fsm   *FSM
	store *consensus.Store
	idx   uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	s := consensus.NewStore()
	return &harness{t: t, fsm: New(s), store: s}
}

func (h *harness) apply(cmd command.Command) Result {
	h.t.Helper()
	data, err := command.Encode(cmd)
	if err != nil {
		h.t.Fatalf("encode %T: %v", cmd, err)
	}
	h.idx++
	return h.fsm.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data}).(Result)
}

func (h *harness) must(cmd command.Command) any {
	h.t.Helper()
	r := h.apply(cmd)
	if r.Err != nil {
		h.t.Fatalf("apply %T: %v", cmd, r.Err)
	}
	return r.Value
}

func testCluster() consensus.ClusterState {
	return consensus.ClusterState{
		ClusterID:       "c1",
		CACertPEM:       []byte("cert"),
		CAKeyPEM:        []byte("key"),
		TokenSecretHash: "abc",
		GossipKeys:      [][]byte{bytes.Repeat([]byte{1}, 32)},
		ClusterCIDR:     "10.42.0.0/16",
		VIPCIDR:         "10.43.0.0/16",
		CreatedAt:       t0,
	}
}

func testNode(id, host string) api.Node {
	return api.Node{ID: id, Hostname: host, Addr: "127.0.0.1", Status: api.NodeReady,
		Availability: api.AvailabilityActive, CreatedAt: t0, CertSerial: "serial-" + id}
}

func (h *harness) bootstrap() {
	h.t.Helper()
	h.must(command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "host1")})
}

// withRefs bootstraps h with nodes n1, n2 and services s1, s2, so that
// tasks may reference them (the FSM refuses tasks of unknown services or
// nodes).
func (h *harness) withRefs() *harness {
	h.t.Helper()
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "svc1"}})
	h.must(command.CreateService{Service: api.Service{ID: "s2", Name: "svc2"}})
	return h
}

func TestBootstrap(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	if c := h.store.Cluster(); c == nil || c.ClusterID != "c1" || string(c.CAKeyPEM) != "key" {
		t.Fatalf("cluster = %+v", c)
	}
	n, err := h.store.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	if !n.Voter || n.Subnet != "10.42.0.0/24" || n.Version != 1 {
		t.Fatalf("node = %+v", n)
	}
	if r := h.apply(command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n2", "h")}); !errors.Is(r.Err, consensus.ErrAlreadyBootstrapped) {
		t.Fatalf("second bootstrap: %v", r.Err)
	}
	if h.store.Index() != 2 {
		t.Fatalf("index = %d", h.store.Index())
	}
}

func TestNodeCommands(t *testing.T) {
	cases := []struct {
		name    string
		cmd     command.Command
		wantErr error
		check   func(t *testing.T, n *api.Node)
	}{
		{"drain", command.UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: api.AvailabilityDrain}, Now: t0},
			nil, func(t *testing.T, n *api.Node) {
				if n.Availability != api.AvailabilityDrain || !n.UpdatedAt.Equal(t0) || n.Version != 3 {
					t.Fatalf("node = %+v", n)
				}
			}},
		{"bad availability", command.UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: "sleep"}}, consensus.ErrInvalid, nil},
		{"unknown node", command.UpdateNode{ID: "nx", Update: api.NodeUpdate{Availability: api.AvailabilityPause}}, consensus.ErrNotFound, nil},
		{"labels", command.UpdateNode{ID: "n2", Update: api.NodeUpdate{LabelAdd: map[string]string{"zone": "b", "ssd": "1"}, LabelRm: []string{"old"}}},
			nil, func(t *testing.T, n *api.Node) {
				if !reflect.DeepEqual(n.Labels, map[string]string{"zone": "b", "ssd": "1"}) {
					t.Fatalf("labels = %v", n.Labels)
				}
			}},
		{"label rm", command.UpdateNode{ID: "n2", Update: api.NodeUpdate{LabelRm: []string{"old"}}},
			nil, func(t *testing.T, n *api.Node) {
				if len(n.Labels) != 0 {
					t.Fatalf("labels = %v", n.Labels)
				}
			}},
		{"status down", command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: "n2", Status: api.NodeDown, At: t0.Add(time.Minute)}, {ID: "gone", Status: api.NodeDown}}},
			nil, func(t *testing.T, n *api.Node) {
				if n.Status != api.NodeDown || !n.StatusChangedAt.Equal(t0.Add(time.Minute)) {
					t.Fatalf("node = %+v", n)
				}
			}},
		{"status unchanged keeps time", command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: "n2", Status: api.NodeReady, At: t0.Add(time.Hour)}}},
			nil, func(t *testing.T, n *api.Node) {
				if !n.StatusChangedAt.IsZero() || n.Version != 2 {
					t.Fatalf("node = %+v", n)
				}
			}},
		{"bad status", command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: "n2", Status: "meh"}}}, consensus.ErrInvalid, nil},
		{"voter", command.SetNodeVoter{ID: "n2", Voter: true}, nil, func(t *testing.T, n *api.Node) {
			if !n.Voter {
				t.Fatal("not voter")
			}
		}},
		{"voter at a time", command.SetNodeVoter{ID: "n2", Voter: true, Now: t0.Add(time.Minute)}, nil, func(t *testing.T, n *api.Node) {
			if !n.Voter || !n.UpdatedAt.Equal(t0.Add(time.Minute)) {
				t.Fatalf("node = %+v", n)
			}
		}},
		{"voter unknown", command.SetNodeVoter{ID: "nx", Voter: true}, consensus.ErrNotFound, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.bootstrap()
			n2 := testNode("n2", "host2")
			n2.Labels = map[string]string{"old": "x"}
			h.must(command.UpsertNode{Node: n2})
			r := h.apply(tc.cmd)
			if !errors.Is(r.Err, tc.wantErr) || (tc.wantErr == nil) != (r.Err == nil) {
				t.Fatalf("err = %v, want %v", r.Err, tc.wantErr)
			}
			if tc.check != nil {
				n, err := h.store.Node("n2")
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, n)
			}
		})
	}
}

func TestUpsertNodeSubnets(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.UpsertNode{Node: testNode("n3", "host3")})
	// Re-join of n2 without a subnet keeps its subnet.
	h.must(command.UpsertNode{Node: testNode("n2", "host2b")})
	seen := map[string]string{}
	for _, n := range h.store.Nodes() {
		if n.Subnet == "" {
			t.Fatalf("node %s has no subnet", n.ID)
		}
		if other, dup := seen[n.Subnet]; dup {
			t.Fatalf("subnet %s given to %s and %s", n.Subnet, other, n.ID)
		}
		seen[n.Subnet] = n.ID
	}
	n2, _ := h.store.Node("n2")
	if n2.Subnet != "10.42.1.0/24" || n2.Hostname != "host2b" || n2.Version != 4 {
		t.Fatalf("n2 = %+v", n2)
	}
}

func TestRemoveNode(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web"}})
	h.must(command.UpsertTasks{Tasks: []api.Task{
		{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n2", DesiredState: api.TaskRunning, State: api.TaskRunning},
		{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskShutdown, State: api.TaskComplete},
		{ID: "t3", ServiceID: "s1", Slot: 3, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskRunning},
	}})
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:aa", Nodes: []string{"n1", "n2"}}})
	if got := h.store.Cluster().LastRemovalIndex; got != 0 {
		t.Fatalf("last removal index before any removal = %d", got)
	}
	h.must(command.RemoveNode{ID: "n2", Now: t0})
	if _, err := h.store.Node("n2"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatalf("node still there: %v", err)
	}
	if got := h.store.Cluster().LastRemovalIndex; got != h.idx {
		t.Fatalf("last removal index = %d, want the removal's entry %d", got, h.idx)
	}
	if !h.store.IsRevoked("serial-n2") || h.store.IsRevoked("serial-n1") {
		t.Fatalf("revoked = %v", h.store.Cluster().Revoked)
	}
	want := map[string][2]string{
		"t1": {api.TaskShutdown, api.TaskOrphaned},
		"t2": {api.TaskShutdown, api.TaskComplete},
		"t3": {api.TaskRunning, api.TaskRunning},
	}
	for id, w := range want {
		tk, err := h.store.Task(id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.DesiredState != w[0] || tk.State != w[1] {
			t.Fatalf("task %s desired=%s state=%s, want %v", id, tk.DesiredState, tk.State, w)
		}
	}
	img, _ := h.store.Image("sha256:aa")
	if !reflect.DeepEqual(img.Nodes, []string{"n1"}) {
		t.Fatalf("image nodes = %v", img.Nodes)
	}
	if r := h.apply(command.RemoveNode{ID: "n2"}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("second remove: %v", r.Err)
	}
}

func TestClusterCommands(t *testing.T) {
	h := newHarness(t)
	if r := h.apply(command.RotateToken{SecretHash: "x"}); !errors.Is(r.Err, consensus.ErrNotBootstrapped) {
		t.Fatalf("rotate before bootstrap: %v", r.Err)
	}
	h.bootstrap()
	h.must(command.RotateToken{SecretHash: "def"})
	k1, k2 := bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 16)
	h.must(command.SetGossipKeys{Keys: [][]byte{k1, k2}})
	if r := h.apply(command.SetGossipKeys{Keys: [][]byte{{1, 2}}}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("short key: %v", r.Err)
	}
	if r := h.apply(command.SetGossipKeys{}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("empty keyring: %v", r.Err)
	}
	h.must(command.RevokeCert{Serial: "s9"})
	h.must(command.RevokeCert{Serial: "s9"})
	h.must(command.SetVoterTarget{Target: 3})
	c := h.store.Cluster()
	if c.TokenSecretHash != "def" || !bytes.Equal(c.GossipKeys[0], k1) || len(c.GossipKeys) != 2 ||
		!reflect.DeepEqual(c.Revoked, []string{"s9"}) || c.VoterTarget != 3 {
		t.Fatalf("cluster = %+v", c)
	}
}

func TestServiceCommands(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	v := h.must(command.CreateService{Service: api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web", Replicas: 2}, CreatedAt: t0}})
	s1 := v.(*api.Service)
	if s1.Name != "web" || s1.Version != 2 || s1.VIP != "10.43.0.2" {
		t.Fatalf("created = %+v", s1)
	}
	s2 := h.must(command.CreateService{Service: api.Service{ID: "s2", Name: "db"}}).(*api.Service)
	if s2.VIP != "10.43.0.3" {
		t.Fatalf("second VIP = %s", s2.VIP)
	}
	refusals := []struct {
		name string
		cmd  command.Command
		want error
	}{
		{"duplicate name", command.CreateService{Service: api.Service{ID: "s3", Name: "web"}}, consensus.ErrNameTaken},
		{"duplicate id", command.CreateService{Service: api.Service{ID: "s1", Name: "other"}}, consensus.ErrExists},
		{"no name", command.CreateService{Service: api.Service{ID: "s4"}}, consensus.ErrInvalid},
		{"stale version", command.UpdateService{Service: api.Service{ID: "s1", Name: "web"}, ExpectVersion: 1}, consensus.ErrVersionMismatch},
		{"rename onto taken", command.UpdateService{Service: api.Service{ID: "s1", Name: "db"}}, consensus.ErrNameTaken},
		{"update unknown", command.UpdateService{Service: api.Service{ID: "nx", Name: "x"}}, consensus.ErrNotFound},
		{"delete unknown", command.DeleteService{ID: "nx"}, consensus.ErrNotFound},
	}
	for _, tc := range refusals {
		if r := h.apply(tc.cmd); !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, r.Err, tc.want)
		}
	}
	before := h.store.Index()
	up := h.must(command.UpdateService{Service: api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web", Replicas: 5}}, ExpectVersion: 2}).(*api.Service)
	if up.Version != before+1 || up.VIP != "10.43.0.2" || !up.CreatedAt.Equal(t0) || up.Spec.Replicas != 5 {
		t.Fatalf("updated = %+v", up)
	}
	// Renaming frees the old name.
	h.must(command.UpdateService{Service: api.Service{ID: "s1", Name: "www"}})
	if _, err := h.store.ServiceByName("web"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	h.must(command.CreateService{Service: api.Service{ID: "s5", Name: "web"}})

	h.must(command.UpsertTasks{Tasks: []api.Task{
		{ID: "t1", ServiceID: "s2", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskRunning},
		{ID: "t2", ServiceID: "s2", Slot: 2, DesiredState: api.TaskRunning, State: api.TaskNew},
	}})
	h.must(command.DeleteService{ID: "s2", Now: t0})
	if _, err := h.store.Service("s2"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatal("service not deleted")
	}
	for _, tk := range h.store.TasksByService("s2") {
		if tk.DesiredState != api.TaskShutdown {
			t.Fatalf("task %s desired %s", tk.ID, tk.DesiredState)
		}
	}
	if tk, _ := h.store.Task("t2"); tk.State != api.TaskShutdown {
		t.Fatalf("unassigned task state %s", tk.State)
	}
	if tk, _ := h.store.Task("t1"); tk.State != api.TaskRunning {
		t.Fatalf("assigned task state %s", tk.State)
	}
	// The deleted service's VIP is free again.
	s6 := h.must(command.CreateService{Service: api.Service{ID: "s6", Name: "x"}}).(*api.Service)
	if s6.VIP == "" || s6.VIP == "10.43.0.2" {
		t.Fatalf("s6 VIP = %s", s6.VIP)
	}
}

func TestTaskStatusForwardOnly(t *testing.T) {
	cases := []struct {
		name      string
		stored    string
		node      string
		report    api.TaskStatus
		wantState string
		applied   int
	}{
		{"assigned to preparing", api.TaskAssigned, "n1", api.TaskStatus{State: api.TaskPreparing}, api.TaskPreparing, 1},
		{"starting to running", api.TaskStarting, "n1", api.TaskStatus{State: api.TaskRunning, IP: "10.42.0.5"}, api.TaskRunning, 1},
		{"running to failed", api.TaskRunning, "n1", api.TaskStatus{State: api.TaskFailed, ExitCode: 3}, api.TaskFailed, 1},
		{"running health update", api.TaskRunning, "n1", api.TaskStatus{State: api.TaskRunning, Health: api.HealthHealthy}, api.TaskRunning, 1},
		{"running back to starting", api.TaskRunning, "n1", api.TaskStatus{State: api.TaskStarting}, api.TaskRunning, 0},
		{"complete to failed", api.TaskComplete, "n1", api.TaskStatus{State: api.TaskFailed}, api.TaskComplete, 0},
		{"wrong node", api.TaskAssigned, "n2", api.TaskStatus{State: api.TaskRunning}, api.TaskAssigned, 0},
		{"unknown state", api.TaskAssigned, "n1", api.TaskStatus{State: "dancing"}, api.TaskAssigned, 0},
		{"unknown task", api.TaskAssigned, "n1", api.TaskStatus{TaskID: "nx", State: api.TaskRunning}, api.TaskAssigned, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t).withRefs()
			h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", State: tc.stored, DesiredState: api.TaskRunning}}})
			st := tc.report
			if st.TaskID == "" {
				st.TaskID = "t1"
			}
			st.Timestamp = t0
			got := h.must(command.TaskStatus{NodeID: tc.node, Statuses: []api.TaskStatus{st}})
			if got != tc.applied {
				t.Fatalf("applied = %v, want %d", got, tc.applied)
			}
			tk, _ := h.store.Task("t1")
			if tk.State != tc.wantState {
				t.Fatalf("state = %s, want %s", tk.State, tc.wantState)
			}
			if tc.applied == 1 {
				if tk.ExitCode != st.ExitCode || tk.Health != st.Health || !tk.UpdatedAt.Equal(t0) {
					t.Fatalf("task = %+v", tk)
				}
				if st.State == api.TaskRunning && (!tk.StartedAt.Equal(t0) || (st.IP != "" && tk.IP != st.IP)) {
					t.Fatalf("task = %+v", tk)
				}
			}
		})
	}
}

func TestUpsertTasksKeepsObservedState(t *testing.T) {
	h := newHarness(t).withRefs()
	task := api.Task{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned}
	h.must(command.UpsertTasks{Tasks: []api.Task{task}})
	h.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, IP: "10.42.0.9", Message: "started"}}})
	// The scheduler proposes a stale copy with a new desired state.
	stale := task
	stale.DesiredState = api.TaskShutdown
	h.must(command.UpsertTasks{Tasks: []api.Task{stale}})
	tk, _ := h.store.Task("t1")
	if tk.DesiredState != api.TaskShutdown || tk.State != api.TaskRunning || tk.IP != "10.42.0.9" || tk.Message != "started" {
		t.Fatalf("task = %+v", tk)
	}
	// A strictly forward observed state from the writer is taken.
	fwd := stale
	fwd.State = api.TaskRejected
	h.must(command.UpsertTasks{Tasks: []api.Task{fwd}})
	if tk, _ := h.store.Task("t1"); tk.State != api.TaskRejected {
		t.Fatalf("state = %s", tk.State)
	}
	if r := h.apply(command.UpsertTasks{Tasks: []api.Task{{ID: ""}}}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("empty id: %v", r.Err)
	}
	if r := h.apply(command.UpsertTasks{Tasks: []api.Task{{ID: "x", State: "weird"}}}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("bad state: %v", r.Err)
	}
}

// The scheduler's reason for stopping a running task survives its own
// stale-copy protection and the node's report of the stop, which carries no
// message: `service ps` after a drain showed no reason at all.
func TestStopReasonKept(t *testing.T) {
	h := newHarness(t).withRefs()
	task := api.Task{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned}
	h.must(command.UpsertTasks{Tasks: []api.Task{task}})
	h.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning}}})
	stop := task
	stop.DesiredState, stop.Message = api.TaskShutdown, "node drained"
	h.must(command.UpsertTasks{Tasks: []api.Task{stop}})
	if tk, _ := h.store.Task("t1"); tk.Message != "node drained" || tk.State != api.TaskRunning {
		t.Fatalf("after the stop: task = %+v", tk)
	}
	h.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskShutdown}}})
	if tk, _ := h.store.Task("t1"); tk.Message != "node drained" || tk.State != api.TaskShutdown {
		t.Fatalf("after the node's report: task = %+v", tk)
	}
	// A stale copy that changes nothing of the desired state does not
	// overwrite a node's message.
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned}}})
	h.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t2", State: api.TaskRunning, Message: "started"}}})
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned, Message: "old"}}})
	if tk, _ := h.store.Task("t2"); tk.Message != "started" {
		t.Fatalf("stale copy: task = %+v", tk)
	}
}

func TestTrimTasks(t *testing.T) {
	h := newHarness(t).withRefs()
	var tasks []api.Task
	// Slot 1: 8 terminal tasks and one running; slot 2: 3 terminal.
	for i := 0; i < 8; i++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprintf("a%d", i), ServiceID: "s1", Slot: 1, NodeID: "n1",
			State: api.TaskFailed, DesiredState: api.TaskShutdown, CreatedAt: t0.Add(time.Duration(8-i) * time.Second)})
	}
	tasks = append(tasks, api.Task{ID: "a-run", ServiceID: "s1", Slot: 1, NodeID: "n2", State: api.TaskRunning,
		DesiredState: api.TaskRunning, CreatedAt: t0})
	for i := 0; i < 3; i++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprintf("b%d", i), ServiceID: "s1", Slot: 2, NodeID: "n1",
			State: api.TaskComplete, CreatedAt: t0})
	}
	// Global service: 7 terminal tasks on n1, 2 on n2.
	for i := 0; i < 7; i++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprintf("g1-%d", i), ServiceID: "s2", NodeID: "n1",
			State: api.TaskShutdown, CreatedAt: t0.Add(time.Duration(i) * time.Second)})
	}
	for i := 0; i < 2; i++ {
		tasks = append(tasks, api.Task{ID: fmt.Sprintf("g2-%d", i), ServiceID: "s2", NodeID: "n2",
			State: api.TaskShutdown, CreatedAt: t0})
	}
	h.must(command.UpsertTasks{Tasks: tasks})
	ids := func(list []*api.Task) map[string]bool {
		m := map[string]bool{}
		for _, t := range list {
			m[t.ID] = true
		}
		return m
	}
	got := ids(h.store.Tasks())
	// a0..a2 have the newest CreatedAt (8-i seconds); the oldest are a5, a6, a7.
	for _, gone := range []string{"a5", "a6", "a7", "g1-0", "g1-1"} {
		if got[gone] {
			t.Errorf("%s should have been trimmed", gone)
		}
	}
	for _, kept := range []string{"a0", "a4", "a-run", "b0", "b2", "g1-2", "g1-6", "g2-0", "g2-1"} {
		if !got[kept] {
			t.Errorf("%s should have been kept", kept)
		}
	}
	if len(got) != 6+3+5+2 {
		t.Fatalf("kept %d tasks: %v", len(got), got)
	}
	// Status reports that end tasks trim too.
	h2 := newHarness(t).withRefs()
	var run []api.Task
	var reports []api.TaskStatus
	for i := 0; i < 7; i++ {
		id := fmt.Sprintf("r%d", i)
		run = append(run, api.Task{ID: id, ServiceID: "s1", Slot: 1, NodeID: "n1", State: api.TaskRunning, CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		reports = append(reports, api.TaskStatus{TaskID: id, State: api.TaskFailed})
	}
	h2.must(command.UpsertTasks{Tasks: run})
	h2.must(command.TaskStatus{NodeID: "n1", Statuses: reports})
	if n := len(h2.store.Tasks()); n != MaxTerminalTasks {
		t.Fatalf("after reports %d tasks", n)
	}
	if _, err := h2.store.Task("r0"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatal("oldest task kept")
	}
	h2.must(command.TrimTasks{})
	h2.must(command.DeleteTasks{IDs: []string{"r6", "nx"}})
	if n := len(h2.store.Tasks()); n != MaxTerminalTasks-1 {
		t.Fatalf("after delete %d tasks", n)
	}
}

func TestImageCommands(t *testing.T) {
	h := newHarness(t)
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"web:latest"}, Nodes: []string{"n1"}}})
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"web:1"}, Nodes: []string{"n2"}}})
	img, _ := h.store.Image("sha256:aa")
	if !reflect.DeepEqual(img.Tags, []string{"web:1", "web:latest"}) || !reflect.DeepEqual(img.Nodes, []string{"n1", "n2"}) {
		t.Fatalf("merged image = %+v", img)
	}
	// The tag moves to the new image.
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:bb", Tags: []string{"web:latest"}}})
	img, _ = h.store.Image("sha256:aa")
	if !reflect.DeepEqual(img.Tags, []string{"web:1"}) {
		t.Fatalf("old image tags = %v", img.Tags)
	}
	if got, err := h.store.ResolveImage("web"); err != nil || got.ID != "sha256:bb" {
		t.Fatalf("resolve web = %v, %v", got, err)
	}
	if got, err := h.store.ResolveImage("aa"); err != nil || got.ID != "sha256:aa" {
		t.Fatalf("resolve prefix = %v, %v", got, err)
	}
	h.must(command.SetImageNode{ImageID: "sha256:bb", NodeID: "n3", Present: true})
	h.must(command.SetImageNode{ImageID: "sha256:aa", NodeID: "n1", Present: false})
	h.must(command.SetImageNode{ImageID: "sha256:zz", NodeID: "n1", Present: false})
	if r := h.apply(command.SetImageNode{ImageID: "sha256:zz", NodeID: "n1", Present: true}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("unknown image: %v", r.Err)
	}
	if img, _ := h.store.Image("sha256:bb"); !reflect.DeepEqual(img.Nodes, []string{"n3"}) {
		t.Fatalf("bb nodes = %v", img.Nodes)
	}
	if img, _ := h.store.Image("sha256:aa"); !reflect.DeepEqual(img.Nodes, []string{"n2"}) {
		t.Fatalf("aa nodes = %v", img.Nodes)
	}
	h.must(command.DeleteImage{ID: "sha256:aa"})
	if r := h.apply(command.DeleteImage{ID: "sha256:aa"}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("delete twice: %v", r.Err)
	}
	if len(h.store.Images()) != 1 {
		t.Fatalf("images = %v", h.store.Images())
	}
}

func TestBatch(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	r := h.apply(command.Batch{Commands: []command.Command{
		command.CreateService{Service: api.Service{ID: "s1", Name: "web"}},
		command.CreateService{Service: api.Service{ID: "s2", Name: "web"}}, // refused
		command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1}}},
	}})
	if !errors.Is(r.Err, consensus.ErrNameTaken) {
		t.Fatalf("batch err = %v", r.Err)
	}
	results := r.Value.([]Result)
	if len(results) != 3 || results[0].Err != nil || !errors.Is(results[1].Err, consensus.ErrNameTaken) || results[2].Err != nil {
		t.Fatalf("results = %+v", results)
	}
	if _, err := h.store.Task("t1"); err != nil {
		t.Fatal("later command of the batch not applied")
	}
	if s, _ := h.store.Service("s1"); s.Version != h.idx {
		t.Fatalf("version %d, want %d", s.Version, h.idx)
	}
	if _, err := command.Encode(command.Batch{Commands: []command.Command{command.Batch{}}}); err == nil {
		t.Fatal("nested batch encoded")
	}
	// A *Batch handed straight to the FSM behaves like a Batch.
	r = h.fsm.ApplyCommand(h.idx+1, &command.Batch{Commands: []command.Command{&command.RotateToken{SecretHash: "p"}}})
	if r.Err != nil || h.store.Cluster().TokenSecretHash != "p" {
		t.Fatalf("pointer batch: %v", r.Err)
	}
}

func TestApplyPanicsOnGarbage(t *testing.T) {
	h := newHarness(t)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	h.fsm.Apply(&raft.Log{Index: 1, Data: []byte{0xff, 1, '{', '}'}})
}

func TestReadsReturnCopies(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Env: []string{"A=1"}, Labels: map[string]string{"a": "b"}}}})
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Spec: api.ServiceSpec{Command: []string{"sh"}}}}})
	n, _ := h.store.Node("n1")
	n.Labels = map[string]string{"x": "y"}
	n.Hostname = "changed"
	s, _ := h.store.Service("s1")
	s.Spec.Env[0] = "B=2"
	s.Spec.Labels["a"] = "c"
	tk := h.store.Tasks()[0]
	tk.Spec.Command[0] = "bash"
	c := h.store.Cluster()
	c.GossipKeys[0][0] = 99
	c.CAKeyPEM[0] = 'X'
	if n2, _ := h.store.Node("n1"); n2.Hostname != "host1" || n2.Labels != nil {
		t.Fatalf("node mutated: %+v", n2)
	}
	if s2, _ := h.store.Service("s1"); s2.Spec.Env[0] != "A=1" || s2.Spec.Labels["a"] != "b" {
		t.Fatalf("service mutated: %+v", s2.Spec)
	}
	if t2, _ := h.store.Task("t1"); t2.Spec.Command[0] != "sh" {
		t.Fatal("task mutated")
	}
	if c2 := h.store.Cluster(); c2.GossipKeys[0][0] != 1 || c2.CAKeyPEM[0] != 'k' {
		t.Fatal("cluster mutated")
	}
}

func TestResolve(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("abc123", "alpha")})
	h.must(command.UpsertNode{Node: testNode("abd456", "beta")})
	h.must(command.UpsertNode{Node: testNode("zzz", "abc123x")})
	// A hostname that reads as another node's short ID.
	h.must(command.UpsertNode{Node: testNode("qqq", "abd4")})
	h.must(command.CreateService{Service: api.Service{ID: "sv1aaa", Name: "web"}})
	h.must(command.CreateService{Service: api.Service{ID: "sv2bbb", Name: "sv1"}})
	nodeCases := []struct {
		ref    string
		wantID string
		err    error
	}{
		{"abc123", "abc123", nil},
		{"beta", "abd456", nil},
		{"abd", "abd456", nil},
		{"ab", "", consensus.ErrAmbiguous},
		{"nope", "", consensus.ErrNotFound},
		{"", "", consensus.ErrNotFound},
		{"abc123x", "zzz", nil},
		// Neither the hostname nor the ID prefix wins: the admin may have
		// meant either node.
		{"abd4", "", consensus.ErrAmbiguous},
		{"qqq", "qqq", nil},
	}
	for _, tc := range nodeCases {
		n, err := h.store.ResolveNode(tc.ref)
		if !errors.Is(err, tc.err) || (tc.err == nil && (err != nil || n.ID != tc.wantID)) {
			t.Errorf("ResolveNode(%q) = %v, %v; want %s, %v", tc.ref, n, err, tc.wantID, tc.err)
		}
	}
	svcCases := []struct {
		ref    string
		wantID string
		err    error
	}{
		{"sv1aaa", "sv1aaa", nil},
		{"web", "sv1aaa", nil},
		{"sv1", "sv2bbb", nil}, // exact name beats ID prefix
		{"sv2", "sv2bbb", nil},
		{"sv", "", consensus.ErrAmbiguous},
		{"db", "", consensus.ErrNotFound},
	}
	for _, tc := range svcCases {
		s, err := h.store.ResolveService(tc.ref)
		if !errors.Is(err, tc.err) || (tc.err == nil && (err != nil || s.ID != tc.wantID)) {
			t.Errorf("ResolveService(%q) = %v, %v; want %s, %v", tc.ref, s, err, tc.wantID, tc.err)
		}
	}
	h.must(command.UpsertNode{Node: testNode("dup", "alpha")})
	if _, err := h.store.NodeByHostname("alpha"); !errors.Is(err, consensus.ErrAmbiguous) {
		t.Fatalf("duplicate hostname: %v", err)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	h := newHarness(t)
	ch, cancel := h.store.Subscribe()
	defer cancel()
	h.bootstrap()
	h.must(command.RotateToken{SecretHash: "x"})
	h.apply(command.RotateToken{}) // refused, still an applied entry
	select {
	case idx := <-ch:
		if idx != 3 {
			t.Fatalf("got index %d, want 3", idx)
		}
	default:
		t.Fatal("no notification")
	}
	select {
	case idx := <-ch:
		t.Fatalf("extra notification %d", idx)
	default:
	}
	cancel()
	cancel()
	h.must(command.RotateToken{SecretHash: "y"})
	select {
	case idx := <-ch:
		t.Fatalf("notification after cancel %d", idx)
	default:
	}
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Close() error  { return nil }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }

func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Env: []string{"A=1"}}}})
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n2", State: api.TaskRunning, CreatedAt: t0}}})
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"web:latest"}, Config: &api.ImageConfig{Cmd: []string{"sh"}}}})
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot must not leak into it.
	h.must(command.DeleteTasks{IDs: []string{"t1"}})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	other := newHarness(t)
	other.must(command.UpsertNode{Node: testNode("stale", "stale")})
	ch, cancel := other.store.Subscribe()
	defer cancel()
	if err := other.fsm.Restore(readCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got != 5 {
		t.Fatalf("restored index notification %d", got)
	}
	if _, err := other.store.Node("stale"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatal("restore did not replace the store")
	}
	if _, err := other.store.Task("t1"); err != nil {
		t.Fatal("task missing after restore")
	}
	if s, err := other.store.ServiceByName("web"); err != nil || s.Spec.Env[0] != "A=1" {
		t.Fatalf("service after restore: %v %v", s, err)
	}
	if len(other.store.TasksByNode("n2")) != 1 || len(other.store.TasksByService("s1")) != 1 {
		t.Fatal("indexes not rebuilt")
	}
	// Round trip: a snapshot of the restored store is byte-identical.
	var again bytes.Buffer
	if err := consensus.WriteSnapshot(other.store, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), sink.Bytes()) {
		t.Fatalf("snapshot differs after round trip:\n%s\n%s", sink.Bytes(), again.Bytes())
	}
	if err := other.fsm.Restore(readCloser{bytes.NewReader([]byte("{garbage"))}); err == nil {
		t.Fatal("garbage restored")
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestEveryCommandApplies: every type the codec decodes reaches an applier
// in apply's switch, and has a sample among FuzzFSMLog's seeds.
func TestEveryCommandApplies(t *testing.T) {
	sampled := map[command.Type]bool{}
	for _, c := range sampleCommands() {
		sampled[c.Type()] = true
	}
	for ty := range 256 {
		cmd, err := command.Decode([]byte{byte(ty), command.Version, '{', '}'})
		if err != nil {
			continue
		}
		if !sampled[cmd.Type()] {
			t.Errorf("command type %d (%T) has no sample in sampleCommands", ty, cmd)
		}
		if cmd.Type() == command.TypeBatch {
			continue // ApplyCommand unpacks a batch before apply
		}
		w := consensus.NewStore().BeginWrite(1)
		if _, err := apply(w, cmd); err != nil && strings.Contains(err.Error(), "no applier") {
			t.Error(err)
		}
		w.Abort()
	}
}

// sampleCommands has one value of every command type, the seeds of
// FuzzFSMLog (the codec's tests have their own, in consensus/fsm/command).
func sampleCommands() []command.Command {
	return []command.Command{
		command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "h1")},
		command.UpsertNode{Node: testNode("n2", "h2")},
		command.UpdateOwnNode{Node: testNode("n2", "h2")},
		command.UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: "drain", LabelAdd: map[string]string{"a": "b"}, LabelRm: []string{"c"}}, Now: t0},
		command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: "n2", Status: api.NodeDown, At: t0}}},
		command.SetNodeVoter{ID: "n2", Voter: true},
		command.RemoveNode{ID: "n2", Now: t0},
		command.RotateToken{SecretHash: "abc"},
		command.SetGossipKeys{Keys: [][]byte{bytes.Repeat([]byte{7}, 32)}},
		command.RevokeCert{Serial: "123"},
		command.SetVoterTarget{Target: 5},
		command.SetClusterEpoch{Epoch: 2},
		command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Replicas: 3, Healthcheck: &api.HealthConfig{Test: []string{"CMD", "true"}}}}},
		command.UpdateService{Service: api.Service{ID: "s1", Name: "web"}, ExpectVersion: 7},
		command.DeleteService{ID: "s1", Now: t0},
		command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, CreatedAt: t0}}},
		command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, Timestamp: t0}}},
		command.DeleteTasks{IDs: []string{"t1"}},
		command.TrimTasks{},
		command.UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"x:1"}, Size: 10}},
		command.SetImageNode{ImageID: "sha256:aa", NodeID: "n1", Present: true},
		command.DeleteImage{ID: "sha256:aa"},
		command.Batch{Commands: []command.Command{command.RotateToken{SecretHash: "x"}, command.DeleteTasks{IDs: []string{"a"}}}},
		command.SealClusterKeys{KEKID: "k1", CAKeySealed: []byte("sealed"), TokenSecretSealed: []byte("s"), CAFingerprint: "fp"},
		command.RotateCA{CACertPEM: []byte("ca2"), CAFingerprint: "fp2", CAKeySealed: []byte("sealed2"), CACrossPEM: []byte("x"), ExpectFingerprint: "fp"},
		command.FinishCARotation{CAFingerprint: "fp2"},
		command.SetNodeCert{ID: "n1", Serial: "s2", CAFingerprint: "fp2", Revoke: []string{"s1"}},
		command.RecordCertExpiry{Serial: "s2", NotAfter: t0},
		command.TrimRevoked{ExpiredBefore: t0},
		command.StageNodeCert{ID: "n1", Serial: "s3", CAFingerprint: "fp2"},
		command.ConfirmNodeCert{ID: "n1", Serial: "s3"},
		command.CreateSecret{Secret: consensus.Secret{ID: "sec1", Name: "db_pass", CreatedAt: t0, Size: 3, KEKID: "k1", Sealed: []byte("sealed")}},
		command.DeleteSecret{ID: "sec1"},
		command.CreateConfig{Config: consensus.ConfigObject{ID: "cfg1", Name: "app.conf", CreatedAt: t0, Data: []byte("x=1")}},
		command.DeleteConfig{ID: "cfg1"},
		command.CreateNetwork{Network: api.Network{ID: "nw1", Name: "front", Subnet: "10.50.0.0/16", VNI: 4300, Internal: true, CreatedAt: t0}},
		command.DeleteNetwork{ID: "nw1"},
		command.ClaimNetworkShare{Network: "nw1", NodeID: "n1"},
		command.SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nw1": {"onback"}}},
	}
}

// stateOf is the whole store without its index, to compare before and
// after a refused command.
func stateOf(t *testing.T, s *consensus.Store) string {
	t.Helper()
	var buf bytes.Buffer
	if err := consensus.WriteSnapshot(s, &buf); err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(buf.Bytes(), &data); err != nil {
		t.Fatal(err)
	}
	delete(data, "index")
	out, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// invariantsHarness: nodes n1, n2; services web (8080/tcp, 53/udp) and db
// (5432/tcp); web's task t1 running on n1; deleted service gone (s9) with
// its task t9 on n2, shut down.
func invariantsHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web",
		Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}}}})
	h.must(command.CreateService{Service: api.Service{ID: "s2", Name: "db", Spec: api.ServiceSpec{Name: "db",
		Ports: []api.PortConfig{{Published: 5432, Target: 5432, Protocol: "tcp"}}}}})
	h.must(command.CreateService{Service: api.Service{ID: "s9", Name: "gone"}})
	h.must(command.UpsertTasks{Tasks: []api.Task{
		{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskRunning},
		{ID: "t9", ServiceID: "s9", Slot: 1, NodeID: "n2", DesiredState: api.TaskRunning, State: api.TaskRunning},
	}})
	h.must(command.DeleteService{ID: "s9", Now: t0})
	return h
}

// TestFSMRefusesBrokenInvariants: every command that would break an
// invariant of the state is refused by the state machine itself (not only
// by the API, which reads a replica that a concurrent write may not have
// reached), with a business error, and leaves the state as it was.
func TestFSMRefusesBrokenInvariants(t *testing.T) {
	web := func(mod func(*api.Service)) api.Service {
		s := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web",
			Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}}}
		mod(&s)
		return s
	}
	db := func(mod func(*api.Service)) api.Service {
		s := api.Service{ID: "s2", Name: "db", Spec: api.ServiceSpec{Name: "db",
			Ports: []api.PortConfig{{Published: 5432, Target: 5432, Protocol: "tcp"}}}}
		mod(&s)
		return s
	}
	newSvc := func(name string, ports ...api.PortConfig) command.CreateService {
		return command.CreateService{Service: api.Service{ID: "s3", Name: name, Spec: api.ServiceSpec{Name: name, Ports: ports}}}
	}
	p := func(published int, proto string) api.PortConfig {
		return api.PortConfig{Published: published, Target: 80, Protocol: proto}
	}
	cases := []struct {
		name string
		cmd  command.Command
		want error
		msg  string // substring of the error
	}{
		// Published ports: protocol + port once in the cluster.
		{"create on a taken port", newSvc("api", p(8080, "tcp")), consensus.ErrInUse, "published port 8080/tcp is taken by service web"},
		{"create on a taken port, protocol defaulted", newSvc("api", p(8080, "")), consensus.ErrInUse, "8080/tcp is taken by service web"},
		{"create on a taken udp port", newSvc("api", p(1000, "tcp"), p(53, "udp")), consensus.ErrInUse, "53/udp is taken by service web"},
		{"update onto a taken port", command.UpdateService{Service: db(func(s *api.Service) {
			s.Spec.Ports = append(s.Spec.Ports, p(8080, "tcp"))
		})}, consensus.ErrInUse, "update service db: published port 8080/tcp is taken by service web"},
		{"port listed twice", newSvc("api", p(9000, "tcp"), p(9000, "")), consensus.ErrInvalid, "9000/tcp listed twice"},
		{"port negative", newSvc("api", p(-1, "tcp")), consensus.ErrInvalid, "out of range"}, // 0 asks for one: TestFSMAutoPorts
		{"target too big", newSvc("api", api.PortConfig{Published: 9000, Target: 70000}), consensus.ErrInvalid, "out of range"},
		{"bad protocol", newSvc("api", p(9000, "sctp")), consensus.ErrInvalid, `protocol "sctp"`},

		// Names: DNS labels, unique regardless of case.
		{"same name", newSvc("web"), consensus.ErrNameTaken, "a service named web exists"},
		{"name differing in case", newSvc("WEB"), consensus.ErrNameTaken, "differs from service web only in case"},
		{"rename differing in case", command.UpdateService{Service: db(func(s *api.Service) { s.Name = "Web"; s.Spec.Name = "Web" })},
			consensus.ErrNameTaken, "rename service db to Web"},
		{"dotted name", newSvc("a.b"), consensus.ErrInvalid, `character '.' not allowed`},
		{"name with space", newSvc("my web"), consensus.ErrInvalid, `character ' ' not allowed`},
		{"long name", newSvc(strings.Repeat("a", 64)), consensus.ErrInvalid, "longer than 63"},
		{"leading dash", newSvc("-api"), consensus.ErrInvalid, "must start with a letter or digit"},
		{"trailing dash", newSvc("api-"), consensus.ErrInvalid, "must end with a letter or digit"},
		{"rename to a non-label", command.UpdateService{Service: db(func(s *api.Service) { s.Name = "d.b" })}, consensus.ErrInvalid, "d.b"},

		// VIPs: one service each.
		{"create with a taken VIP", command.CreateService{Service: api.Service{ID: "s3", Name: "api", VIP: "10.43.0.2"}}, consensus.ErrInUse, "VIP 10.43.0.2 is taken by service web"},
		{"update onto a taken VIP", command.UpdateService{Service: db(func(s *api.Service) { s.VIP = "10.43.0.2" })}, consensus.ErrInUse, "VIP 10.43.0.2 is taken by service web"},
		{"VIP not IPv4", command.CreateService{Service: api.Service{ID: "s3", Name: "api", VIP: "fd00::1"}}, consensus.ErrInvalid, "not an IPv4 address"},

		// Tasks: they reference a service and a node that exist.
		{"task of an unknown service", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "nx", Slot: 1, DesiredState: api.TaskRunning}}}, consensus.ErrNotFound, "service nx"},
		{"task of a deleted service", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s9", Slot: 2, NodeID: "n1", DesiredState: api.TaskRunning}}}, consensus.ErrNotFound, "service s9"},
		{"task without a service", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", Slot: 1}}}, consensus.ErrInvalid, "no service ID"},
		{"task on an unknown node", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "nx", DesiredState: api.TaskRunning}}}, consensus.ErrNotFound, "node nx"},
		{"task moved to an unknown node", command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "nx", DesiredState: api.TaskRunning}}}, consensus.ErrNotFound, "node nx"},
		{"task of a deleted service revived", command.UpsertTasks{Tasks: []api.Task{{ID: "t9", ServiceID: "s9", Slot: 1, NodeID: "n2", DesiredState: api.TaskRunning}}}, consensus.ErrNotFound, "service s9"},
		{"one bad task refuses the command", command.UpsertTasks{Tasks: []api.Task{
			{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskRunning},
			{ID: "t3", ServiceID: "s1", Slot: 3, NodeID: "nx", DesiredState: api.TaskRunning},
		}}, consensus.ErrNotFound, "upsert task t3: node nx"},

		// Node subnets: one node each.
		{"node on a taken subnet", command.UpsertNode{Node: func() api.Node { n := testNode("n3", "host3"); n.Subnet = "10.42.0.0/24"; return n }()},
			consensus.ErrInUse, "overlaps 10.42.0.0/24 of node n1"},
		{"node subnet not a prefix", command.UpsertNode{Node: func() api.Node { n := testNode("n3", "host3"); n.Subnet = "nonsense"; return n }()},
			consensus.ErrInvalid, "not an IPv4 prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := invariantsHarness(t)
			before := stateOf(t, h.store)
			r := h.apply(tc.cmd)
			if !errors.Is(r.Err, tc.want) || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", r.Err, tc.want, tc.msg)
			}
			if after := stateOf(t, h.store); after != before {
				t.Fatalf("refused command changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// What stays allowed next to those refusals.
	allowed := []struct {
		name string
		cmd  command.Command
	}{
		{"same port, other protocol", newSvc("api", p(8080, "udp"))},
		{"free port", newSvc("api", p(8081, "tcp"))},
		{"a stack's name", newSvc("shop_web-2")},
		{"update keeping its own ports", command.UpdateService{Service: web(func(s *api.Service) { s.Spec.Replicas = 3 })}},
		{"update moving its own port to udp", command.UpdateService{Service: web(func(s *api.Service) { s.Spec.Ports[0].Protocol = "udp"; s.Spec.Ports[1].Protocol = "tcp" })}},
		{"rename to a free name", command.UpdateService{Service: db(func(s *api.Service) { s.Name = "postgres" })}},
		{"rename changing only case of its own name", command.UpdateService{Service: db(func(s *api.Service) { s.Name = "DB" })}},
		{"deleted service's task shut down", command.UpsertTasks{Tasks: []api.Task{{ID: "t9", ServiceID: "s9", Slot: 1, NodeID: "n2", DesiredState: api.TaskShutdown}}}},
		{"new task placed", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskRunning, State: api.TaskAssigned}}}},
		{"pending task", command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, DesiredState: api.TaskRunning, State: api.TaskNew}}}},
	}
	for _, tc := range allowed {
		t.Run("allowed "+tc.name, func(t *testing.T) {
			h := invariantsHarness(t)
			if r := h.apply(tc.cmd); r.Err != nil {
				t.Fatalf("refused: %v", r.Err)
			}
		})
	}
}

// TestFSMTasksOfRemovedNode: a task on a node that was removed may still be
// rewritten (orphan marking) but not set to run there again.
func TestFSMTasksOfRemovedNode(t *testing.T) {
	h := invariantsHarness(t)
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskRunning, State: api.TaskRunning}}})
	h.must(command.RemoveNode{ID: "n2", Now: t0})
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskShutdown, State: api.TaskOrphaned}}})
	r := h.apply(command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskRunning}}})
	if !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("task set to run on a removed node: %v", r.Err)
	}
}

// TestFSMConcurrentCreatesOnePort is issue 14's race at the state machine:
// two creates that both passed the API's check against a replica that had
// neither reach the log in some order; the second is refused.
func TestFSMConcurrentCreatesOnePort(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	port := []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}
	r := h.apply(command.Batch{Commands: []command.Command{
		command.CreateService{Service: api.Service{ID: "a", Name: "web-a", Spec: api.ServiceSpec{Name: "web-a", Ports: port}}},
		command.CreateService{Service: api.Service{ID: "b", Name: "web-b", Spec: api.ServiceSpec{Name: "web-b", Ports: port}}},
	}})
	res := r.Value.([]Result)
	if res[0].Err != nil || !errors.Is(res[1].Err, consensus.ErrInUse) {
		t.Fatalf("results = %+v", res)
	}
	if len(h.store.Services()) != 1 {
		t.Fatalf("services = %d", len(h.store.Services()))
	}
}

// TestFSMUpdatesDespiteOldConflict: a conflict already in the state (from a
// log written before these checks) does not block updates that do not add
// to it, so the scheduler can keep working on both services.
func TestFSMUpdatesDespiteOldConflict(t *testing.T) {
	port := []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}
	// A snapshot document (consensus.WriteSnapshot) of layout version 1.
	data := struct {
		Version  int            `json:"version"`
		Index    uint64         `json:"index"`
		Services []*api.Service `json:"services"`
	}{Version: 1, Index: 10, Services: []*api.Service{
		{ID: "a", Name: "web", VIP: "10.43.0.2", Spec: api.ServiceSpec{Name: "web", Ports: port}, Version: 3},
		{ID: "b", Name: "WEB", VIP: "10.43.0.2", Spec: api.ServiceSpec{Name: "WEB", Ports: port}, Version: 4},
	}}
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.fsm.Restore(readCloser{bytes.NewReader(raw)}); err != nil {
		t.Fatal(err)
	}
	h.idx = 10
	h.must(command.UpdateService{Service: api.Service{ID: "b", Name: "WEB", Spec: api.ServiceSpec{Name: "WEB", Replicas: 2, Ports: port}}, ExpectVersion: 4})
	// Renaming out of the clash is a way out.
	h.must(command.UpdateService{Service: api.Service{ID: "b", Name: "web2", Spec: api.ServiceSpec{Name: "web2", Ports: port}}})
}

// TestUpdateOwnNodeKeepsWhatOthersSet: a node's report about itself
// changes only the fields it owns, on the record as it is when the entry
// applies: an admin's drain, labels or role committed after the node read
// its copy stay, and a removed node is not brought back.
func TestUpdateOwnNodeKeepsWhatOthersSet(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "h2")})
	stale, err := h.store.Node("n2")
	if err != nil {
		t.Fatal(err)
	}
	h.must(command.UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: api.AvailabilityDrain, LabelAdd: map[string]string{"zone": "b"}, Role: api.RoleWorker}})
	report := *stale
	report.WireGuardKey, report.WireGuardKeyEpoch = "a2V5", 9
	report.Resources = api.Resources{NanoCPUs: 4e9}
	report.Hostname, report.Addr, report.ClusterPort = "other", "10.9.9.9", 443 // not its to change
	h.must(command.UpdateOwnNode{Node: report})
	got, err := h.store.Node("n2")
	if err != nil {
		t.Fatal(err)
	}
	if got.Availability != api.AvailabilityDrain || got.Labels["zone"] != "b" || got.Role != api.RoleWorker {
		t.Fatalf("the admin's update was undone: %+v", got)
	}
	if got.WireGuardKey != "a2V5" || got.WireGuardKeyEpoch != 9 || got.Resources.NanoCPUs != 4e9 {
		t.Fatalf("the node's own fields were not applied: %+v", got)
	}
	if got.Hostname != "h2" || got.Addr != stale.Addr || got.ClusterPort != stale.ClusterPort {
		t.Fatalf("fields the node does not own changed: %+v", got)
	}
	h.must(command.RemoveNode{ID: "n2"})
	if r := h.apply(command.UpdateOwnNode{Node: report}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("report of a removed node: %v, want ErrNotFound", r.Err)
	}
	if _, err := h.store.Node("n2"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatalf("removed node is back: %v", err)
	}
}
