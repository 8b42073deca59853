package node

// The agent's side of events (node/events holds the pure diff, the history,
// the filter and the HTTP stream of GET /v1/events): the loop that diffs
// the replica as it advances and turns runtime events into container
// events.

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/runtime"
)

// eventsLoop derives events until ctx ends: cluster events from the
// replica of whichever cluster this node is in (it changes on init, join,
// leave and re-join), container events from the runtime. It looks for a
// cluster twice a second only while it has none: an attached cluster's end
// (cluster.done) is what sends it looking again, so an idle member does not
// wake for it (issue 10).
func (a *Agent) eventsLoop(ctx context.Context) {
	hub := a.obs.hub()
	rtCh := a.rt.Subscribe()
	defer a.rt.Unsubscribe(rtCh)
	containers := map[string]*runtime.Event{}

	var (
		cl       *cluster
		storeCh  <-chan uint64
		unsub    = func() {}
		prev     events.State
		baseline bool // prev is a real state (the store had applied something)
		// gate is running for diffInterval after a diff; dirty records
		// that the store advanced meanwhile.
		gate  <-chan time.Time
		dirty bool
		// ended is an attached cluster seen stopping while it was still
		// the agent's: the loop looks for its successor by the tick.
		ended *cluster
	)
	defer func() { unsub() }()
	attach := func() {
		cur, _ := a.clusterOrErr()
		if cur == cl {
			return
		}
		unsub()
		cl, storeCh, unsub, baseline, dirty = cur, nil, func() {}, false, false
		if cl != nil {
			storeCh, unsub = cl.store.Subscribe()
			if cl.store.Index() > 0 {
				prev, baseline = events.StateOf(cl.store), true
			}
		}
	}
	diff := func() {
		t0 := time.Now()
		defer func() { gate = time.After(max(events.DiffInterval, events.DiffPause*time.Since(t0))) }()
		cur := events.StateOf(cl.store)
		// The first state a store reaches (a restored snapshot, or the
		// first entries of a new member) is the baseline, not a burst of
		// "created" for everything that already existed.
		if baseline {
			hub.Publish(events.Diff(prev, cur, time.Now())...)
		}
		prev, baseline = cur, true
	}
	attach()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var tickC <-chan time.Time
		var clDone <-chan struct{}
		if cl == nil || cl == ended {
			tickC = tick.C
		} else {
			clDone = cl.done
		}
		select {
		case <-ctx.Done():
			return
		case <-tickC:
			attach()
		case <-clDone:
			ended = cl
			attach()
		case <-storeCh:
			if gate != nil {
				dirty = true
				continue
			}
			diff()
		case <-gate:
			gate = nil
			if dirty && cl != nil && storeCh != nil {
				diff()
			}
			dirty = false
		case ev, ok := <-rtCh:
			if !ok {
				rtCh = nil
				continue
			}
			last := containers[ev.ContainerID]
			acts := events.ContainerActions(last, ev)
			if ev.State == runtime.EventRemoved {
				delete(containers, ev.ContainerID)
			} else {
				e := ev
				containers[ev.ContainerID] = &e
			}
			if last != nil && last.State == api.ContainerCreated && slices.Contains(acts, events.ActionStart) {
				a.obs.m().ContainerStart.Observe(ev.Time.Sub(last.Time).Seconds())
			}
			hub.Publish(a.containerEvents(cl, ev, acts)...)
		}
	}
}

// containerEvents turns runtime actions into events, naming the task and
// service of a task's container from the replica.
func (a *Agent) containerEvents(cl *cluster, ev runtime.Event, acts []string) []api.Event {
	out := make([]api.Event, 0, len(acts))
	for _, act := range acts {
		attrs := map[string]string{"state": ev.State}
		if ev.TaskID != "" {
			attrs["task_id"] = ev.TaskID
			if cl != nil {
				if t, err := cl.store.Task(ev.TaskID); err == nil {
					attrs["task"] = t.Name
					attrs["service"] = t.Service
				}
			}
		}
		switch act {
		case events.ActionDie:
			attrs["exit_code"] = strconv.Itoa(ev.ExitCode)
			if ev.Error != "" {
				attrs["error"] = ev.Error
			}
		case events.ActionHealthStatus:
			attrs["health"] = ev.Health
		}
		out = append(out, api.Event{Time: ev.Time.UTC(), Type: api.EventContainer, Action: act,
			ID: ev.ContainerID, Name: ev.Name, NodeID: a.id.NodeID, Attributes: attrs})
	}
	return out
}
