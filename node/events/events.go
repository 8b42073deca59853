// Package events derives what changed in the cluster and on this node, as
// `shoal events` streams it, and keeps the bounded history and the fan-out
// to streams (Hub). The agent (node) runs the loop that feeds it and serves
// the HTTP stream; everything here is pure or owns only its own lock.
package events

// Events: what changed in the cluster and on this node, as `shoal events`
// streams it.
//
// Why diff snapshots instead of hooking the FSM: the FSM is a pure function
// of the log and must not grow side effects, and every node already holds
// a replica that advances through the same committed entries. So each node
// derives the same cluster events by itself — it compares the state before
// and after the store's index advanced (Diff, pure and table-tested)
// — and any node can answer `shoal events`. The store's Subscribe coalesces:
// under load a burst of entries is one diff, so a task that went through
// preparing and starting between two looks shows only its newest state.
// Times come from the records (the leader's clock, put in the commands)
// where a record says when; removals carry no record and take the local
// clock; the hub never stamps an event before the one it streamed last
// (Hub.Publish), so the stream stays in time order across the two clocks.
//
// Container events are local: they come from this node's runtime
// (runtime.Subscribe) and describe containers of this node only.
//
// The history is a bounded ring (MaxEvents, MaxEventAge) so `--since`
// works after the fact. It lives in memory: a restarted agent starts with
// an empty history, from the state it recovered.

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/runtime"
)

// Bounds of the event history.
const (
	MaxEvents   = 10000
	MaxEventAge = time.Hour
	// SubBuffer is how many events a slow stream may fall behind before it
	// is ended (the client sees the stream end and may resume with --since).
	SubBuffer = 4096
	// DiffInterval is the least time between two diffs of the replica: a
	// diff reads the whole state, so a burst of entries (a big scale, a
	// flood of task reports) costs one read per interval, not per entry.
	// On a big state the pause grows to DiffPause times the diff's own
	// duration, so the loop keeps to a fifth of a core (BenchmarkEventsDiff10k:
	// ~25 ms of CPU per diff at 10,000 tasks).
	DiffInterval = 100 * time.Millisecond
	DiffPause    = 4
)

// Event actions. Task events use the task's new state as their action.
const (
	ActionJoined       = "joined"
	ActionReady        = "ready"
	ActionDown         = "down"
	ActionUpdated      = "updated"
	ActionPromoted     = "promoted"
	ActionDemoted      = "demoted"
	ActionRemoved      = "removed"
	ActionCreated      = "created"
	ActionScaled       = "scaled"
	ActionUpdateStatus = "update_status"
	ActionDesiredState = "desired_state"
	ActionHealthStatus = "health_status"
	// Container actions, as Docker names them.
	ActionCreate  = "create"
	ActionStart   = "start"
	ActionDie     = "die"
	ActionOOM     = "oom"
	ActionDestroy = "destroy"
)

// State is the part of the replicated state events are derived from,
// keyed by ID.
type State struct {
	nodes    map[string]*api.Node
	services map[string]*api.Service
	tasks    map[string]*api.Task
	// index is the store's index the state was read at.
	index uint64
}

// StateOf reads s at one point in time (one Store.Snapshot()).
func StateOf(s *consensus.Store) State {
	snap := s.Snapshot()
	st := State{nodes: map[string]*api.Node{}, services: map[string]*api.Service{}, tasks: map[string]*api.Task{}, index: snap.Index()}
	for _, n := range snap.Nodes() {
		st.nodes[n.ID] = n
	}
	for _, sv := range snap.Services() {
		st.services[sv.ID] = sv
	}
	for _, t := range snap.Tasks() {
		st.tasks[t.ID] = t
	}
	return st
}

// Diff returns the events that lead from old to cur, in a stable
// order: nodes that appeared or changed, services created or changed, task
// changes, then removed services and removed nodes (so a service's removal
// follows the shutdown of its tasks). now stamps the events that no record
// dates. It is pure.
func Diff(old, cur State, now time.Time) []api.Event {
	var out []api.Event
	at := func(ts ...time.Time) time.Time {
		for _, t := range ts {
			if !t.IsZero() {
				return t.UTC()
			}
		}
		return now.UTC()
	}
	hostname := func(id string) string {
		if n := cur.nodes[id]; n != nil {
			return n.Hostname
		}
		if n := old.nodes[id]; n != nil {
			return n.Hostname
		}
		return ""
	}
	nodeEv := func(n *api.Node, action string, t time.Time, attrs map[string]string) api.Event {
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["addr"] = n.Addr
		return api.Event{Time: t, Type: api.EventNode, Action: action, ID: n.ID, Name: n.Hostname, NodeID: n.ID, Attributes: attrs}
	}
	for _, id := range sortedKeys(cur.nodes) {
		n, was := cur.nodes[id], old.nodes[id]
		if was == nil {
			out = append(out, nodeEv(n, ActionJoined, at(n.CreatedAt, n.UpdatedAt), map[string]string{"status": n.Status}))
			continue
		}
		if n.Status != was.Status {
			action := n.Status
			if action != api.NodeReady && action != api.NodeDown {
				action = ActionUpdated
			}
			out = append(out, nodeEv(n, action, at(n.StatusChangedAt, n.UpdatedAt),
				map[string]string{"status": n.Status, "previous_status": was.Status}))
		}
		if n.Voter != was.Voter {
			action := ActionPromoted
			if !n.Voter {
				action = ActionDemoted
			}
			out = append(out, nodeEv(n, action, at(n.UpdatedAt), map[string]string{"voter": strconv.FormatBool(n.Voter)}))
		}
		// A role change (`node update --role`, promote, demote) is an update
		// too, as docker's node update event: before, it made no event at
		// all (the voter change autopilot may make of it is its own).
		role, wasRole := nodeRole(n), nodeRole(was)
		if n.Availability != was.Availability || role != wasRole || !maps.Equal(n.Labels, was.Labels) {
			attrs := map[string]string{"availability": n.Availability, "role": role}
			if n.Availability != was.Availability {
				attrs["previous_availability"] = was.Availability
			}
			if role != wasRole {
				attrs["previous_role"] = wasRole
			}
			out = append(out, nodeEv(n, ActionUpdated, at(n.UpdatedAt), attrs))
		}
	}
	svcEv := func(s *api.Service, action string, t time.Time, attrs map[string]string) api.Event {
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["image"] = s.Spec.Image
		attrs["version"] = strconv.FormatUint(s.Version, 10)
		return api.Event{Time: t, Type: api.EventService, Action: action, ID: s.ID, Name: s.Spec.Name, Attributes: attrs}
	}
	for _, id := range sortedKeys(cur.services) {
		s, was := cur.services[id], old.services[id]
		if was == nil {
			attrs := map[string]string{"mode": s.Spec.Mode}
			if !api.GlobalMode(s.Spec.Mode) {
				attrs["replicas"] = strconv.FormatUint(s.Spec.Replicas, 10)
			}
			out = append(out, svcEv(s, ActionCreated, at(s.CreatedAt, s.UpdatedAt), attrs))
			continue
		}
		if !reflect.DeepEqual(s.Spec, was.Spec) {
			// Only the replica count differs: a scale, as `service scale` does.
			same := was.Spec
			same.Replicas = s.Spec.Replicas
			action := ActionUpdated
			if reflect.DeepEqual(s.Spec, same) {
				action = ActionScaled
			}
			attrs := map[string]string{}
			if s.Spec.Replicas != was.Spec.Replicas {
				attrs["replicas"] = strconv.FormatUint(s.Spec.Replicas, 10)
				attrs["previous_replicas"] = strconv.FormatUint(was.Spec.Replicas, 10)
			}
			if s.Spec.Image != was.Spec.Image {
				attrs["previous_image"] = was.Spec.Image
			}
			if r := autoscale.Reason(was, s); r != "" {
				attrs["reason"] = r // the autoscaler's (node/autoscale)
			}
			out = append(out, svcEv(s, action, at(s.UpdatedAt), attrs))
		}
		if us, wus := updateState(s), updateState(was); us != wus && us != "" {
			attrs := map[string]string{"state": us}
			if s.UpdateStatus.Message != "" {
				attrs["message"] = s.UpdateStatus.Message
			}
			out = append(out, svcEv(s, ActionUpdateStatus, at(s.UpdateStatus.CompletedAt, s.UpdatedAt), attrs))
		}
	}
	taskEv := func(t *api.Task, action string, tm time.Time, attrs map[string]string) api.Event {
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["service"] = t.Service
		attrs["slot"] = strconv.Itoa(t.Slot)
		attrs["state"] = t.State
		attrs["desired_state"] = t.DesiredState
		if t.NodeID != "" {
			attrs["node"] = hostname(t.NodeID)
		}
		return api.Event{Time: tm, Type: api.EventTask, Action: action, ID: t.ID, Name: t.Name, NodeID: t.NodeID, Attributes: attrs}
	}
	// Tasks in creation order, so a scale-up reads slot by slot.
	taskIDs := sortedKeys(cur.tasks)
	sort.SliceStable(taskIDs, func(i, j int) bool {
		a, b := cur.tasks[taskIDs[i]], cur.tasks[taskIDs[j]]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.Before(b.CreatedAt)
		}
		return a.Slot < b.Slot
	})
	for _, id := range taskIDs {
		t, was := cur.tasks[id], old.tasks[id]
		if was == nil {
			out = append(out, taskEv(t, t.State, at(t.UpdatedAt, t.CreatedAt), nil))
			continue
		}
		if t.State != was.State {
			attrs := map[string]string{"previous_state": was.State}
			if t.Error != "" {
				attrs["error"] = t.Error
			}
			if api.TaskTerminal(t.State) {
				attrs["exit_code"] = strconv.Itoa(t.ExitCode)
			}
			out = append(out, taskEv(t, t.State, at(t.UpdatedAt), attrs))
		}
		if t.DesiredState != was.DesiredState {
			out = append(out, taskEv(t, ActionDesiredState, at(t.UpdatedAt),
				map[string]string{"previous_desired_state": was.DesiredState}))
		}
		if t.Health != was.Health && t.Health != "" {
			out = append(out, taskEv(t, ActionHealthStatus, at(t.UpdatedAt), map[string]string{"health": t.Health}))
		}
	}
	for _, id := range sortedKeys(old.tasks) {
		if cur.tasks[id] == nil {
			out = append(out, taskEv(old.tasks[id], ActionRemoved, now.UTC(), nil))
		}
	}
	for _, id := range sortedKeys(old.services) {
		if cur.services[id] == nil {
			out = append(out, svcEv(old.services[id], ActionRemoved, now.UTC(), nil))
		}
	}
	for _, id := range sortedKeys(old.nodes) {
		if cur.nodes[id] == nil {
			out = append(out, nodeEv(old.nodes[id], ActionRemoved, now.UTC(), nil))
		}
	}
	return out
}

func updateState(s *api.Service) string {
	if s.UpdateStatus == nil {
		return ""
	}
	return s.UpdateStatus.State
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// ContainerActions returns the actions that lead from a container's last
// event (nil: none seen) to ev.
func ContainerActions(prev *runtime.Event, ev runtime.Event) []string {
	var out []string
	prevState, prevHealth := "", ""
	if prev != nil {
		prevState, prevHealth = prev.State, prev.Health
	}
	if ev.State != prevState {
		switch ev.State {
		case api.ContainerCreated:
			out = append(out, ActionCreate)
		case api.ContainerRunning:
			if prev == nil {
				out = append(out, ActionCreate)
			}
			out = append(out, ActionStart)
		case api.ContainerExited:
			if ev.OOMKilled {
				out = append(out, ActionOOM)
			}
			out = append(out, ActionDie)
		case runtime.EventRemoved:
			out = append(out, ActionDestroy)
		}
	}
	if ev.Health != prevHealth && ev.Health != "" && ev.State == api.ContainerRunning {
		out = append(out, ActionHealthStatus)
	}
	return out
}

// Hub keeps the bounded history and fans events out to streams. It is
// safe for concurrent use.
type Hub struct {
	mu   sync.Mutex
	ring []api.Event
	subs map[*Sub]struct{}
	now  func() time.Time
	// last is the time of the newest event published: none is stamped
	// before it (Publish).
	last time.Time
}

// Sub is one stream. Its channel (Events) is closed when the stream falls
// more than SubBuffer events behind, or on cancel.
type Sub struct {
	ch     chan api.Event
	closed bool
}

// Events returns the stream's channel; it is closed when the stream ends.
func (s *Sub) Events() <-chan api.Event { return s.ch }

// NewHub returns an empty hub; now dates the age limit of the history.
func NewHub(now func() time.Time) *Hub {
	return &Hub{subs: map[*Sub]struct{}{}, now: now}
}

// Publish appends events to the history and hands them to every stream.
// It never blocks: a stream that cannot keep up is ended.
//
// Events come in apply order, and an event is stamped no earlier than the
// one before it. Why: a record's time is the leader's clock (when an
// update completed), a removal's is this node's at the diff, and a diff
// may carry a record older than what the previous diff streamed. Docker's
// stream is in time order, and --since/--until and every reader that
// sorts by time assume it; the clamp moves a time by the lag between the
// two clocks' readings, never the order.
func (h *Hub) Publish(evs ...api.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	evs = slices.Clone(evs)
	for i := range evs {
		if evs[i].Time.Before(h.last) {
			evs[i].Time = h.last
		}
		h.last = evs[i].Time
	}
	h.ring = append(h.ring, evs...)
	cut := max(0, len(h.ring)-MaxEvents)
	limit := h.now().Add(-MaxEventAge)
	for cut < len(h.ring) && h.ring[cut].Time.Before(limit) {
		cut++
	}
	if cut > 0 {
		// Copy so the dropped head does not pin the array forever.
		h.ring = append([]api.Event(nil), h.ring[cut:]...)
	}
	for s := range h.subs {
		for _, ev := range evs {
			select {
			case s.ch <- ev:
			default:
				delete(h.subs, s)
				s.closed = true
				close(s.ch)
			}
			if s.closed {
				break
			}
		}
	}
}

// Subscribe returns the kept events from since on (none for a zero since)
// and a stream of the events published afterwards, with nothing lost or
// repeated between the two. cancel is safe to call twice.
func (h *Hub) Subscribe(since time.Time) ([]api.Event, *Sub, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var hist []api.Event
	if !since.IsZero() {
		for _, ev := range h.ring {
			if !ev.Time.Before(since) {
				hist = append(hist, ev)
			}
		}
	}
	s := &Sub{ch: make(chan api.Event, SubBuffer)}
	h.subs[s] = struct{}{}
	return hist, s, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !s.closed {
			delete(h.subs, s)
			s.closed = true
			close(s.ch)
		}
	}
}

// ErrBadFilter: a filter of an events request is malformed.
var ErrBadFilter = errors.New("invalid event filter")

// Filter is a parsed ?type=&name= filter: the same key ORs, different
// keys AND.
type Filter struct {
	types map[string]bool
	names map[string]bool
}

// ParseFilter parses the filter keys of a query (since and until are
// ignored). Errors wrap ErrBadFilter and say what is wrong.
func ParseFilter(q map[string][]string) (Filter, error) {
	f := Filter{types: map[string]bool{}, names: map[string]bool{}}
	for k, vs := range q {
		switch k {
		case "type":
			for _, v := range vs {
				switch v {
				case api.EventNode, api.EventService, api.EventTask, api.EventContainer:
					f.types[v] = true
				default:
					return f, fmt.Errorf("%w: type %q: want node, service, task or container", ErrBadFilter, v)
				}
			}
		case "name":
			for _, v := range vs {
				if v == "" {
					return f, fmt.Errorf("%w: empty name", ErrBadFilter)
				}
				f.names[v] = true
			}
		case "since", "until":
		default:
			return f, fmt.Errorf("%w: unknown key %q: want type or name", ErrBadFilter, k)
		}
	}
	return f, nil
}

// Match reports whether ev passes the filter. A name matches the event's
// name or ID, and the service of a task or container event, so
// `--filter name=web` follows a service and its tasks.
func (f Filter) Match(ev api.Event) bool {
	if len(f.types) > 0 && !f.types[ev.Type] {
		return false
	}
	if len(f.names) > 0 && !f.matchName(ev) {
		return false
	}
	return true
}

// matchName reports whether a name filter names ev: its name, its ID or a
// prefix of the ID (as docker's event filters), or, for task and container
// events, their service. Why prefixes: every listing shows 12-character
// IDs (`node ls`, `service ls`, `service ps`), and a filter copied from
// one matched nothing, silently.
func (f Filter) matchName(ev api.Event) bool {
	if f.names[ev.Name] || (ev.Attributes["service"] != "" && f.names[ev.Attributes["service"]]) {
		return true
	}
	if ev.ID == "" {
		return false
	}
	for n := range f.names {
		if strings.HasPrefix(ev.ID, n) {
			return true
		}
	}
	return false
}

// nodeRole is n's role as the API shows it: a stored empty role (nodes of
// releases before roles) is a manager.
func nodeRole(n *api.Node) string {
	if n.Role == "" {
		return api.RoleManager
	}
	return n.Role
}
