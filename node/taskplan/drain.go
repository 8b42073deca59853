package taskplan

import (
	"time"

	"github.com/shoal-org/shoal/api"
)

// DrainPeriod is the most a node keeps the container of a task that served
// traffic running after it first sees the leader's order to stop it. Every
// node applies the same Raft entry at about the same time and drops the task
// from its load balancer then; the container must outlive the slowest of
// them, or a connection some node still sends it is refused. Nodes say how
// far their load balancer got (gossip metadata, node/netloop/lbsync.go), so the stop
// usually goes out as soon as the last of them got there; this period is the
// cap for a node that does not say (an older agent) or whose word is slow to
// arrive. Swarm waits a fixed 2s. Connections already
// established keep their conntrack entry and finish within this period.
const DrainPeriod = 2 * time.Second

// DrainMark is what a node notes when it first sees the order to stop a task
// that served traffic: when, and its store's index then (at or after the
// entry that gave the order).
type DrainMark struct {
	At    time.Time
	Index uint64
}

// DrainDemand is the highest index the drains in seen (DrainStops's map)
// wait for, 0 when none: what this node gossips as its demand, so that the
// other nodes gossip their load balancer index until they pass it
// (membership.ShouldPublishLB).
func DrainDemand(seen map[string]DrainMark) uint64 {
	var d uint64
	for _, m := range seen {
		d = max(d, m.Index)
	}
	return d
}

// DrainStops holds back every stop of a container whose task was told to
// stop while it served traffic until every live node's load balancer has
// synced through the index this node had applied when it first saw that
// order (lbs: node ID → index, this node included), or period has passed
// since then. serves is the load balancers' rule for a backend (node's
// servesTraffic): a task serves traffic while serves says so, and the drain
// must go by the very rule the load balancers drop backends by (or a stop
// is held for nothing, or a backend dies while still routed to), so the
// rule comes in rather than being restated here. seen maps task ID to that
// first sight (the caller keeps it between passes; DrainStops does not
// change it); index is the store's index read after the tasks the actions
// were computed from. DrainStops returns the actions to do now (acts itself
// is not changed), the map to keep (tasks whose stop is being drained or
// was just released), and the earliest time a held stop is due anyway
// (zero when none is held): the caller must run a pass by then, or on the
// next change of lbs. Stops of tasks that served no traffic (never healthy,
// no address, already reported stopped) and of tasks still meant to run
// (unhealthy, fenced) are not delayed.
func DrainStops(acts []Action, seen map[string]DrainMark, now time.Time, index uint64, lbs map[string]uint64, period time.Duration, serves func(*api.Task) bool) ([]Action, map[string]DrainMark, time.Time) {
	out := acts[:0:0]
	next := map[string]DrainMark{}
	var wake time.Time
	for _, act := range acts {
		if act.Kind != Stop || act.Task.DesiredState == api.TaskRunning || !serves(act.Task) {
			out = append(out, act)
			continue
		}
		first, ok := seen[act.Task.ID]
		if !ok {
			first = DrainMark{At: now, Index: index}
		}
		next[act.Task.ID] = first
		if due := first.At.Add(period); now.Before(due) && !LBsPast(lbs, first.Index) {
			if wake.IsZero() || due.Before(wake) {
				wake = due
			}
			continue
		}
		out = append(out, act)
	}
	return out, next, wake
}

// LBsPast reports whether every load balancer in lbs has synced through
// index (false when there are none, or index is 0: nobody said).
func LBsPast(lbs map[string]uint64, index uint64) bool {
	if len(lbs) == 0 || index == 0 {
		return false
	}
	for _, i := range lbs {
		if i < index {
			return false
		}
	}
	return true
}
