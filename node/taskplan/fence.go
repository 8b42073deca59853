package taskplan

import (
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
)

// FenceActions is the at-most-once fence. quiet is how long this node has
// not heard from a leader (0 on the leader, or while in touch). Every task
// assigned to nodeID that is meant to run, of a service that is at most once
// (specs: the services' current specs by ID; the task's own copy when
// missing) whose disconnect grace has passed in quiet, is fenced: its Start
// is dropped from acts and its running container is stopped. The leader may
// start its replacement elsewhere once the grace period and the stop grace
// period have passed since it marked this node down, which is never before
// this node last heard from it: so the two never run at once
// (node/scheduler/calm.go). acts is not changed; the result may share its
// backing array only when nothing is fenced.
func FenceActions(acts []Action, nodeID string, tasks []*api.Task, containers []api.Container, specs map[string]api.ServiceSpec, quiet time.Duration) []Action {
	if quiet <= 0 {
		return acts
	}
	fenced := map[string]*api.Task{}
	for _, t := range tasks {
		if t.NodeID != nodeID || t.DesiredState != api.TaskRunning || api.TaskTerminal(t.State) {
			continue
		}
		spec := SpecOf(t, specs)
		if spec.AtMostOnce && quiet >= servicespec.DisconnectGrace(spec) {
			fenced[t.ID] = t
		}
	}
	if len(fenced) == 0 {
		return acts
	}
	out := acts[:0:0]
	stopping := map[string]bool{}
	for _, act := range acts {
		if act.Task != nil && fenced[act.Task.ID] != nil {
			switch act.Kind {
			case Start:
				continue
			case Stop:
				stopping[act.Container.ID] = true
			}
		}
		out = append(out, act)
	}
	for _, c := range containers {
		t := fenced[c.TaskID]
		if t == nil || c.State != api.ContainerRunning || stopping[c.ID] {
			continue
		}
		cc := c
		out = append(out, Action{Kind: Stop, Task: t, Container: &cc})
	}
	return out
}

// Quiet is how long this node counts as cut off from a leader, for
// FenceActions: since contact (the last time it heard from a leader, or
// was one), or since its own record (self, from its replica; nil when
// unknown) was marked down, whichever is longer. A node that still hears
// the log but whose gossip does not reach the leader is marked down and
// will have its at-most-once tasks replaced, so it must count from the mark
// even though the leader's messages still arrive. The leader itself is
// never quiet: the caller passes 0 then and does not call Quiet.
func Quiet(now, contact time.Time, self *api.Node) time.Duration {
	q := now.Sub(contact)
	if self != nil && self.Status == api.NodeDown &&
		!self.StatusChangedAt.IsZero() && now.Sub(self.StatusChangedAt) > q {
		q = now.Sub(self.StatusChangedAt)
	}
	return q
}

// LeaseFloor is the shortest lease FenceLeases hands out. The reconciler
// renews the leases on its passes, which run at least every 2 s (more
// under a loaded CPU): a shorter lease would let the supervisor stop a
// healthy container between two passes of a live agent. With a disconnect
// grace below it, a killed agent's container is stopped up to LeaseFloor
// after the agent died rather than at the grace, still within the grace
// plus the stop grace the leader waits out after its down mark unless
// the stop grace is shorter than the difference.
const LeaseFloor = 5 * time.Second

// FenceLeases returns, by container ID, the lease the supervisor is to hold
// on each running container of nodeID's at-most-once tasks that are meant
// to run: the time left until FenceActions would fence it (its disconnect
// grace less quiet), at least LeaseFloor. The supervisor, which outlives
// the agent, stops the container when its lease runs out unrenewed, so a
// killed or hung agent cannot keep an at-most-once task running past the
// point where the leader replaces it (runtime/supervisor fence.go).
func FenceLeases(nodeID string, tasks []*api.Task, containers []api.Container, specs map[string]api.ServiceSpec, quiet time.Duration) map[string]time.Duration {
	byID := make(map[string]*api.Task, len(tasks))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	var out map[string]time.Duration
	for _, c := range containers {
		t := byID[c.TaskID]
		if c.State != api.ContainerRunning || t == nil || t.NodeID != nodeID || t.DesiredState != api.TaskRunning {
			continue
		}
		spec := SpecOf(t, specs)
		if !spec.AtMostOnce {
			continue
		}
		if out == nil {
			out = map[string]time.Duration{}
		}
		out[c.ID] = LeaseFor(spec, quiet)
	}
	return out
}

// LeaseFor is the lease of an at-most-once container of spec on a node
// that has not heard from a leader for quiet: the time left until
// FenceActions would fence it, at least LeaseFloor.
func LeaseFor(spec api.ServiceSpec, quiet time.Duration) time.Duration {
	return max(servicespec.DisconnectGrace(spec)-max(quiet, 0), LeaseFloor)
}

// SpecOf is the spec a task of this node runs by: its service's current
// one (specs, by service ID), or the task's own once the service is gone.
func SpecOf(t *api.Task, specs map[string]api.ServiceSpec) api.ServiceSpec {
	if spec, ok := specs[t.ServiceID]; ok {
		return spec
	}
	return t.Spec
}
