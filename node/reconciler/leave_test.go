package reconciler

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// removingRuntime records, for each container removed, whether the drain
// was still running (its context not done), and ends the drain when
// endDrainOn is removed.
type removingRuntime struct {
	mu         sync.Mutex
	list       []api.Container
	inDrain    map[string]bool
	endDrainOn string
	endDrain   context.CancelFunc
}

func (r *removingRuntime) List() []api.Container { return r.list }

func (r *removingRuntime) Remove(ctx context.Context, id string, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inDrain[id] = ctx.Err() == nil
	if id == r.endDrainOn {
		r.endDrain()
	}
	return nil
}

// After leaving (or removal), an at-most-once task's container goes at
// once, before the drain the others wait (the cluster already runs its
// replacement); the others go after it; `shoal run` containers stay.
func TestRemoveTasksAtMostOnceFirst(t *testing.T) {
	atOnce := AtMostOnceTasks([]*api.Task{
		{ID: "t-job", ServiceID: "s-job", Spec: api.ServiceSpec{Name: "job"}},
		{ID: "t-web", ServiceID: "s-web", Spec: api.ServiceSpec{Name: "web", AtMostOnce: true}},
	}, map[string]api.ServiceSpec{
		// The service's spec wins over the task's: job became at most
		// once, web no longer is.
		"s-job": {Name: "job", AtMostOnce: true},
		"s-web": {Name: "web"},
	})
	if len(atOnce) != 1 || !atOnce["t-job"] {
		t.Fatalf("AtMostOnceTasks = %v, want t-job only", atOnce)
	}
	// The drain is an hour: only the at-most-once container's removal
	// (which ends it, through the context) or the watchdog ends it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(10*time.Second, cancel)
	defer watchdog.Stop()
	rt := &removingRuntime{inDrain: map[string]bool{}, endDrainOn: "c-job", endDrain: cancel, list: []api.Container{
		{ID: "c-job", TaskID: "t-job"},
		{ID: "c-web", TaskID: "t-web"},
		{ID: "c-run"}, // shoal run
	}}
	RemoveTasks(ctx, rt, time.Hour, atOnce, slog.New(slog.DiscardHandler))
	want := map[string]bool{"c-job": true, "c-web": false}
	if !maps.Equal(rt.inDrain, want) {
		t.Fatalf("removed (true: before the drain ended) %v, want %v; the shoal run container stays", rt.inDrain, want)
	}
}
