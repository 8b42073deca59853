package events

// The loop that feeds the Hub: it diffs the replica as it advances and
// turns runtime events into container events. The agent (node) wires it to
// whichever cluster it is in.

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/runtime"
)

// Runtime is the part of *runtime.Runtime the loop reads: its container
// events.
type Runtime interface {
	Subscribe() <-chan runtime.Event
	Unsubscribe(ch <-chan runtime.Event)
}

// Observer takes one sample (a prometheus.Histogram is one).
type Observer interface{ Observe(float64) }

// LoopConfig is what a Loop needs; every field is required.
type LoopConfig struct {
	NodeID  string
	Hub     *Hub
	Runtime Runtime
	// Cluster returns the replica of the cluster this node is in (nil
	// when in none) and a channel closed once that cluster instance stops.
	Cluster func() (*consensus.Store, <-chan struct{})
	// ReplayIndex returns, for a replica Cluster returned, the index up to
	// which it replays this node's own log after a restart (0: none). The
	// states up to it are baseline, not events: before, an agent's restart
	// published its whole replayed log again as new events (tasks of
	// services long removed "running", "failed", "removed"), all stamped
	// with the restart's time, so `events --since 10m` showed them.
	ReplayIndex func(*consensus.Store) uint64
	// ContainerStart observes the seconds from a container's creation to
	// its start.
	ContainerStart Observer
}

// Loop derives events into the Hub. Make it with NewLoop, run it once.
type Loop struct {
	cfg LoopConfig
}

// NewLoop returns the events loop of cfg.
func NewLoop(cfg LoopConfig) *Loop { return &Loop{cfg: cfg} }

// Run derives events until ctx ends: cluster events from the
// replica of whichever cluster this node is in (it changes on init, join,
// leave and re-join), container events from the runtime. It looks for a
// cluster twice a second only while it has none: an attached cluster's end
// (the channel Cluster returns) is what sends it looking again, so an idle member does not
// wake for it (issue 10).
func (l *Loop) Run(ctx context.Context) {
	hub := l.cfg.Hub
	rtCh := l.cfg.Runtime.Subscribe()
	defer l.cfg.Runtime.Unsubscribe(rtCh)
	containers := map[string]*runtime.Event{}
	// names: the task and service each live container's events named,
	// for when its task is gone from the replica (containerEvents).
	names := map[string]taskNames{}

	var (
		cl       *consensus.Store // the attached cluster's replica
		clDoneCh <-chan struct{}
		storeCh  <-chan uint64
		unsub    = func() {}
		prev     State
		baseline bool // prev is a real state (the store had applied something)
		// gate is running for diffInterval after a diff; dirty records
		// that the store advanced meanwhile.
		gate  <-chan time.Time
		dirty bool
		// ended is an attached cluster seen stopping while it was still
		// the agent's: the loop looks for its successor by the tick.
		ended *consensus.Store
	)
	defer func() { unsub() }()
	attach := func() {
		cur, done := l.cfg.Cluster()
		if cur == cl {
			return
		}
		unsub()
		cl, clDoneCh, storeCh, unsub, baseline, dirty = cur, done, nil, func() {}, false, false
		if cl != nil {
			storeCh, unsub = cl.Subscribe()
			if cl.Index() > 0 {
				prev, baseline = StateOf(cl), true
			}
		}
	}
	diff := func() {
		t0 := time.Now()
		defer func() { gate = time.After(max(DiffInterval, DiffPause*time.Since(t0))) }()
		cur := StateOf(cl)
		// The first state a store reaches (a restored snapshot, or the
		// first entries of a new member) is the baseline, not a burst of
		// "created" for everything that already existed; so is every
		// state of the replay of this node's own log after a restart.
		// A diff that starts inside the replay covers history too (diffs
		// are paced, so one may span the replay's end and the first new
		// writes): it is dropped as well, losing at most the news of one
		// DiffInterval after a restart rather than publishing the replay.
		replaying := l.cfg.ReplayIndex != nil && prev.index < l.cfg.ReplayIndex(cl)
		if baseline && !replaying {
			hub.Publish(Diff(prev, cur, time.Now())...)
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
			clDone = clDoneCh
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
			acts := ContainerActions(last, ev)
			if ev.State == runtime.EventRemoved {
				delete(containers, ev.ContainerID)
			} else {
				e := ev
				containers[ev.ContainerID] = &e
			}
			if last != nil && last.State == api.ContainerCreated && slices.Contains(acts, ActionStart) {
				l.cfg.ContainerStart.Observe(ev.Time.Sub(last.Time).Seconds())
			}
			evs, tn := l.containerEvents(cl, ev, acts, names[ev.ContainerID])
			if ev.State == runtime.EventRemoved {
				delete(names, ev.ContainerID)
			} else if tn.task != "" {
				names[ev.ContainerID] = tn
			}
			hub.Publish(evs...)
		}
	}
}

// taskNames is what a task's container events say of it.
type taskNames struct{ task, service string }

// containerEvents turns runtime actions into events, naming the task and
// service of a task's container from the replica, else from known (what
// this container's earlier events named), and returns the names used.
// The fallback is for a container removed after its task: `service rm`
// and the trim of old tasks delete the task first, so the destroy event
// (and a late die) lost its service and task attributes. With no cluster
// at all (cl nil: the node left) nothing is named.
func (l *Loop) containerEvents(cl *consensus.Store, ev runtime.Event, acts []string, known taskNames) ([]api.Event, taskNames) {
	out := make([]api.Event, 0, len(acts))
	var tn taskNames
	if ev.TaskID != "" && cl != nil {
		if t, err := cl.Task(ev.TaskID); err == nil {
			tn = taskNames{task: t.Name, service: t.Service}
		} else {
			tn = known
		}
	}
	for _, act := range acts {
		attrs := map[string]string{"state": ev.State}
		if ev.TaskID != "" {
			attrs["task_id"] = ev.TaskID
			if tn.task != "" {
				attrs["task"] = tn.task
				attrs["service"] = tn.service
			}
		}
		switch act {
		case ActionDie:
			attrs["exit_code"] = strconv.Itoa(ev.ExitCode)
			if ev.Error != "" {
				attrs["error"] = ev.Error
			}
		case ActionHealthStatus:
			attrs["health"] = ev.Health
		}
		out = append(out, api.Event{Time: ev.Time.UTC(), Type: api.EventContainer, Action: act,
			ID: ev.ContainerID, Name: ev.Name, NodeID: l.cfg.NodeID, Attributes: attrs})
	}
	return out, tn
}
