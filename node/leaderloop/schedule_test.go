package leaderloop

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/scheduler"
)

func TestPlanEntriesBounded(t *testing.T) {
	var p scheduler.Plan
	p.ServiceUpdates = []api.Service{{ID: "s1", Version: 3}, {ID: "s2", Version: 4}}
	for i := 0; i < 2500; i++ {
		p.Create = append(p.Create, api.Task{ID: fmt.Sprintf("c%d", i)})
	}
	for i := 0; i < 300; i++ {
		p.Update = append(p.Update, api.Task{ID: fmt.Sprintf("u%d", i)})
	}
	for i := 0; i < 25000; i++ {
		p.Delete = append(p.Delete, fmt.Sprintf("d%d", i))
	}
	var order []string // service IDs, task IDs and deleted IDs in write order
	for i, e := range PlanEntries(p) {
		cmds := []command.Command{e}
		if b, ok := e.(*command.Batch); ok {
			cmds = b.Commands
		}
		tasks, deletes := 0, 0
		for _, c := range cmds {
			switch c := c.(type) {
			case *command.UpdateService:
				if c.ExpectVersion != c.Service.Version {
					t.Errorf("service %s written expecting version %d, read %d", c.Service.ID, c.ExpectVersion, c.Service.Version)
				}
				order = append(order, c.Service.ID)
			case *command.UpsertTasks:
				tasks += len(c.Tasks)
				for _, tk := range c.Tasks {
					order = append(order, tk.ID)
				}
			case *command.DeleteTasks:
				deletes += len(c.IDs)
				order = append(order, c.IDs...)
			default:
				t.Fatalf("entry %d holds %T", i, c)
			}
		}
		if tasks > maxTasksPerEntry || deletes > maxDeletesPerEntry {
			t.Errorf("entry %d holds %d tasks and %d deletions", i, tasks, deletes)
		}
	}
	var want []string
	for _, s := range p.ServiceUpdates {
		want = append(want, s.ID)
	}
	for _, tk := range p.Upserts() {
		want = append(want, tk.ID)
	}
	want = append(want, p.Delete...)
	if len(order) != len(want) {
		t.Fatalf("entries carry %d items, plan has %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("item %d is %s, want %s: the plan's order is lost", i, order[i], want[i])
		}
	}
	if got := PlanEntries(scheduler.Plan{}); len(got) != 0 {
		t.Errorf("empty plan gives %d entries", len(got))
	}
}

// TestSchedulerStateIsOneView: while entries are applied, every state the
// scheduler reads is one the log produced. Each round adds a node, a
// service and a task on both; a table-by-table read that saw the nodes or
// services before a round and the tasks after it would show a task whose
// node or service is missing.
func TestSchedulerStateIsOneView(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	if res := machine.ApplyCommand(1, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	}); res.Err != nil {
		t.Fatal(res.Err)
	}
	const rounds = 200
	done := make(chan error, 1)
	go func() {
		idx := uint64(1)
		apply := func(cmd command.Command) error {
			idx++
			if res := machine.ApplyCommand(idx, cmd); res.Err != nil {
				return fmt.Errorf("apply %T: %w", cmd, res.Err)
			}
			return nil
		}
		for i := 0; i < rounds; i++ {
			n, s := fmt.Sprintf("n%d", i), fmt.Sprintf("s%d", i)
			for _, cmd := range []command.Command{
				command.UpsertNode{Node: api.Node{ID: n, Hostname: n, Addr: "127.0.0.1", ClusterPort: 1, Status: api.NodeReady, CertSerial: n}},
				command.CreateService{Service: api.Service{ID: s, Name: fmt.Sprintf("svc%d", i)}},
				command.UpsertTasks{Tasks: []api.Task{{ID: "t" + s, ServiceID: s, Slot: 1, NodeID: n,
					State: api.TaskAssigned, DesiredState: api.TaskRunning}}},
			} {
				if err := apply(cmd); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if st := SchedulerState(store); len(st.Tasks) != rounds {
				t.Fatalf("final state has %d tasks, want %d", len(st.Tasks), rounds)
			}
			t.Logf("%d reads while %d rounds were applied", reads, rounds)
			return
		default:
		}
		st := SchedulerState(store)
		reads++
		nodes, services := map[string]bool{}, map[string]bool{}
		for _, n := range st.Nodes {
			nodes[n.ID] = true
		}
		for _, s := range st.Services {
			services[s.ID] = true
		}
		for _, tk := range st.Tasks {
			if !nodes[tk.NodeID] || !services[tk.ServiceID] {
				t.Fatalf("read %d: task %s of service %s on node %s, but the same read has node %v, service %v",
					reads, tk.ID, tk.ServiceID, tk.NodeID, nodes[tk.NodeID], services[tk.ServiceID])
			}
		}
	}
}

func TestDebounce(t *testing.T) {
	for _, c := range []struct {
		name    string
		changed bool
		want    time.Duration
	}{
		{"state change: let the burst land", true, 10 * time.Millisecond},
		{"resync or planned wake: no burst follows a timer", false, 0},
	} {
		if got := Debounce(c.changed); got != c.want {
			t.Errorf("%s: Debounce(%v) = %s, want %s", c.name, c.changed, got, c.want)
		}
	}
}
