package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// BenchmarkEventsDiff10k measures one pass of the events loop over a
// replica of 10,000 tasks: read the state (stateOf) and diff it against the
// previous one with 100 tasks changed.
func BenchmarkEventsDiff10k(b *testing.B) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	tasks := make([]api.Task, 10000)
	for i := range tasks {
		tasks[i] = api.Task{ID: fmt.Sprintf("t%05d", i), Name: fmt.Sprintf("web.%d", i+1), ServiceID: "s1", Service: "web",
			Slot: i + 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskRunning, Image: "bb:1",
			Spec: api.ServiceSpec{Name: "web", Image: "bb:1", Replicas: 10000, Env: []string{"A=1"}}, CreatedAt: evNow}
	}
	svc := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "bb:1", Replicas: 10000, Mode: api.ModeReplicated}}
	for i, cmd := range []command.Command{&command.UpsertNode{Node: api.Node{ID: "n1", Hostname: "h1", Status: api.NodeReady}}, &command.CreateService{Service: svc}, &command.UpsertTasks{Tasks: tasks}} {
		data, err := command.Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		if res := machine.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}); res != nil {
			if r, ok := res.(fsm.Result); ok && r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	if n := len(store.Tasks()); n != 10000 {
		b.Fatalf("store holds %d tasks", n)
	}
	prev := StateOf(store)
	cur := StateOf(store)
	for i := 0; i < 100; i++ {
		t := *cur.tasks[tasks[i*100].ID]
		t.State = api.TaskShutdown
		cur.tasks[t.ID] = &t
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = StateOf(store)
		if evs := Diff(prev, cur, time.Now()); len(evs) != 100 {
			b.Fatalf("%d events", len(evs))
		}
	}
}
