package node

// The agent's side of autoscaling (node/autoscale holds the sampler and the
// pure per-service sample; scheduler.DecideAutoscale decides): every node
// samples its autoscaled tasks' cgroups into a rolling average and answers
// the leader's usage RPC from it; the leader polls, decides and writes a
// changed replica count.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/wire"
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

// autoscaleLoop is the leader's autoscaler; it ends with leadership.
func (a *Agent) autoscaleLoop(ctx context.Context, cl *cluster) {
	hist := map[string][]scheduler.AutoscaleSample{}
	tick := time.NewTicker(autoscale.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.autoscalePass(ctx, cl, hist, time.Now().UTC())
	}
}

// autoscalePass gathers usage once and applies the decision for every
// autoscaled service.
func (a *Agent) autoscalePass(ctx context.Context, cl *cluster, hist map[string][]scheduler.AutoscaleSample, now time.Time) {
	var svcs []*api.Service
	for _, s := range cl.store.Services() {
		if s.Spec.Autoscale != nil && s.Spec.Mode == api.ModeReplicated {
			svcs = append(svcs, s)
		}
	}
	keep := map[string]bool{}
	for _, s := range svcs {
		keep[s.ID] = true
	}
	for id := range hist {
		if !keep[id] {
			delete(hist, id)
		}
	}
	if len(svcs) == 0 {
		return
	}
	tasks := map[string][]*api.Task{}
	nodes := map[string]bool{}
	for _, s := range svcs {
		for _, t := range cl.store.TasksByService(s.ID) {
			if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
				tasks[s.ID] = append(tasks[s.ID], t)
				nodes[t.NodeID] = true
			}
		}
	}
	usage := a.gatherUsage(ctx, cl, nodes)
	for _, s := range svcs {
		if sample, ok := autoscale.ServiceSample(s, tasks[s.ID], usage, now); ok {
			hist[s.ID] = autoscale.TrimSamples(append(hist[s.ID], sample), now, s.Spec.Autoscale)
		}
		var last time.Time
		if s.AutoscaleStatus != nil {
			last = s.AutoscaleStatus.At
		}
		d := scheduler.DecideAutoscale(scheduler.AutoscaleInput{
			Config: *s.Spec.Autoscale, Replicas: s.Spec.Replicas, Samples: hist[s.ID], LastScale: last, Now: now,
		})
		if d.Replicas == s.Spec.Replicas {
			continue
		}
		next := *s
		next.Spec.Replicas = d.Replicas
		next.UpdatedAt = now
		next.AutoscaleStatus = &api.AutoscaleStatus{
			From: s.Spec.Replicas, To: d.Replicas, Reason: d.Reason, At: now,
			CPUPercent: d.CPUPercent, MemoryPercent: d.MemoryPercent,
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cl.raft.Apply(wctx, &consensus.UpdateService{Service: next, ExpectVersion: s.Version})
		cancel()
		if err != nil {
			if !errors.Is(err, consensus.ErrVersionMismatch) && ctx.Err() == nil {
				a.log.Warn("autoscale: could not scale service", "service", s.Name, "replicas", d.Replicas, "err", err)
			}
			continue // the next pass decides again on the new state
		}
		a.log.Info("autoscaled service", "service", s.Name, "from", s.Spec.Replicas, "to", d.Replicas, "reason", d.Reason)
	}
}

// gatherUsage asks every node in nodes (ready ones) for its tasks' usage,
// in parallel; a node that does not answer in time contributes nothing.
func (a *Agent) gatherUsage(ctx context.Context, cl *cluster, nodes map[string]bool) map[string]autoscale.TaskUsage {
	ctx, cancel := context.WithTimeout(ctx, autoscale.PollTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		out = map[string]autoscale.TaskUsage{}
		wg  sync.WaitGroup
	)
	add := func(rep autoscale.Report) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range rep.Tasks {
			out[u.TaskID] = u
		}
	}
	for id := range nodes {
		if id == a.id.NodeID {
			add(cl.usage.Report())
			continue
		}
		n, err := cl.store.Node(id)
		if err != nil || n.Status != api.NodeReady {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rep autoscale.Report
			if err := callRPC(ctx, joinHostPort(n.Addr, n.ClusterPort), cl.client, wire.MethodUsage, nil, &rep, nil); err != nil {
				a.log.Debug("autoscale: no usage from node", "node_id", shortID(n.ID), "err", err)
				return
			}
			add(rep)
		}()
	}
	wg.Wait()
	return out
}
