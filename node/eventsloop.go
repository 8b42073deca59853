package node

// The agent's side of events (node/events holds the pure diff, the history
// and the filter): the loop that diffs the replica as it advances and turns
// runtime events into container events, and the HTTP stream of
// GET /v1/events.

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
)

// handleEvents streams GET /v1/events as JSON lines: the history from
// ?since, then live events until ?until or until the client leaves.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	parseTime := func(key string) (time.Time, error) {
		v := q.Get(key)
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, httpapi.BadRequest("invalid %s %q: want an RFC 3339 time", key, v)
		}
		return t, nil
	}
	since, err := parseTime("since")
	if err != nil {
		return nil, err
	}
	until, err := parseTime("until")
	if err != nil {
		return nil, err
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return nil, httpapi.BadRequest("--until %s is before --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	filter, err := events.ParseFilter(q)
	if err != nil {
		return nil, httpapi.BadRequest("%v", err)
	}
	hist, sub, cancel := a.obs.hub().Subscribe(since)
	defer cancel()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	enc := json.NewEncoder(w)
	past := func(ev api.Event) bool { return !until.IsZero() && ev.Time.After(until) }
	for _, ev := range hist {
		if past(ev) {
			return httpapi.Streamed, nil
		}
		if filter.Match(ev) {
			if err := enc.Encode(ev); err != nil {
				return httpapi.Streamed, nil
			}
		}
	}
	flush()
	var untilC <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return httpapi.Streamed, nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		untilC = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return httpapi.Streamed, nil
		case <-untilC:
			return httpapi.Streamed, nil
		case ev, ok := <-sub.Events():
			if !ok {
				a.log.Warn("event stream fell behind and was ended", "behind", events.SubBuffer)
				return httpapi.Streamed, nil
			}
			if past(ev) {
				return httpapi.Streamed, nil
			}
			if !filter.Match(ev) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return httpapi.Streamed, nil
			}
			flush()
		}
	}
}

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

// cgroupParent is the cgroup the runtime puts this agent's containers
// under (startRuntime sets runtime.Config.CgroupParent the same way).
func (a *Agent) cgroupParent() string { return "/shoal-" + shortID(a.id.NodeID) }
