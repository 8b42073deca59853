package node

// The every-node half of autoscaling (node/leaderloop polls and decides on
// the leader): this node samples its autoscaled tasks' cgroups into a
// rolling average (autoscale.Sampler) and answers the leader's usage RPC
// from it.

import (
	"context"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/autoscale"
)

// usageLoop samples this node's task containers of autoscaled services
// every autoscale.SampleInterval while there are any; while there are none
// it sleeps until the state changes (an idle node runs no sampling timer).
func (a *Agent) usageLoop(ctx context.Context, cl *cluster) {
	storeCh, cancel := cl.store.Subscribe()
	defer cancel()
	tick := time.NewTicker(autoscale.SampleInterval)
	defer tick.Stop()
	for {
		var tickCh <-chan time.Time
		if a.sampleUsage(cl) {
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

// sampleUsage records a usage point of every running task container of an
// autoscaled service here; it reports whether any service is autoscaled.
func (a *Agent) sampleUsage(cl *cluster) bool {
	live := map[string]bool{}
	defer cl.usage.KeepOnly(live)
	if a.rt == nil {
		return false
	}
	autoscaled := map[string]bool{}
	for _, s := range cl.store.Services() {
		if s.Spec.Autoscale != nil {
			autoscaled[s.ID] = true
		}
	}
	if len(autoscaled) == 0 {
		return false
	}
	for _, t := range cl.store.TasksByNode(a.id.NodeID) {
		if autoscaled[t.ServiceID] {
			live[t.ID] = false // assigned here; confirmed below if running
		}
	}
	for _, c := range a.rt.List() {
		if c.TaskID == "" || c.State != api.ContainerRunning {
			continue
		}
		if _, ok := live[c.TaskID]; !ok {
			continue
		}
		st, err := a.rt.Stats(c.ID)
		if err != nil {
			continue // it just ended, or no cgroup: no reading
		}
		live[c.TaskID] = true
		cl.usage.Record(c.TaskID, c.ID, autoscale.Point{At: time.Now(), CPUNanos: st.CPUNanos, Memory: st.MemoryBytes})
	}
	return true
}

// handleUsageRPC answers wire.MethodUsage.
func (a *Agent) handleUsageRPC() (autoscale.Report, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return autoscale.Report{}, err
	}
	return cl.usage.Report(), nil
}
