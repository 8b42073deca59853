package autoscale

// The every-node half of autoscaling (node/leaderloop polls and decides on
// the leader): this node samples its autoscaled tasks' cgroups into a
// rolling average (Sampler) and answers the leader's usage RPC from it
// (the agent serves Sampler.Report).

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/cgstats"
)

// Replica is what sampling reads of the local replica (*consensus.Store).
type Replica interface {
	// Subscribe signals state changes, coalesced (consensus.Store).
	Subscribe() (<-chan uint64, func())
	Services() []*api.Service
	TasksByNode(nodeID string) []*api.Task
}

// Containers is the part of *runtime.Runtime sampling reads: this node's
// containers and their cgroup counters.
type Containers interface {
	List() []api.Container
	Stats(id string) (cgstats.Stats, error)
}

// SampleLoop samples nodeID's task containers of autoscaled services into
// s every SampleInterval while there are any; while there are none it
// sleeps until the state changes (an idle node runs no sampling timer). It
// blocks until ctx ends. rt may be nil (no runtime: nothing is sampled).
func SampleLoop(ctx context.Context, s *Sampler, nodeID string, replica Replica, rt Containers) {
	storeCh, cancel := replica.Subscribe()
	defer cancel()
	tick := time.NewTicker(SampleInterval)
	defer tick.Stop()
	for {
		var tickCh <-chan time.Time
		if SampleOnce(s, nodeID, replica, rt, time.Now) {
			tickCh = tick.C
		}
		select {
		case <-ctx.Done():
			return
		case <-tickCh:
		case <-storeCh:
			// A burst of changes samples at most once per interval.
			if tickCh != nil {
				select {
				case <-ctx.Done():
					return
				case <-tickCh:
				}
			}
		}
	}
}

// SampleOnce records into s a usage point, stamped now(), of every running
// task container of an autoscaled service assigned to nodeID, and forgets
// every other task; it reports whether any service is autoscaled.
func SampleOnce(s *Sampler, nodeID string, replica Replica, rt Containers, now func() time.Time) bool {
	live := map[string]bool{}
	defer s.KeepOnly(live)
	if rt == nil {
		return false
	}
	autoscaled := map[string]bool{}
	for _, svc := range replica.Services() {
		if svc.Spec.Autoscale != nil {
			autoscaled[svc.ID] = true
		}
	}
	if len(autoscaled) == 0 {
		return false
	}
	for _, t := range replica.TasksByNode(nodeID) {
		if autoscaled[t.ServiceID] {
			live[t.ID] = false // assigned here; confirmed below if running
		}
	}
	for _, c := range rt.List() {
		if c.TaskID == "" || c.State != api.ContainerRunning {
			continue
		}
		if _, ok := live[c.TaskID]; !ok {
			continue
		}
		st, err := rt.Stats(c.ID)
		if err != nil {
			continue // it just ended, or no cgroup: no reading
		}
		live[c.TaskID] = true
		s.Record(c.TaskID, c.ID, Point{At: now(), CPUNanos: st.CPUNanos, Memory: st.MemoryBytes})
	}
	return true
}
