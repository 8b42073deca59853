package leaderloop

// The leader's autoscaler (node/autoscale holds the sampler and the pure
// per-service sample; autoscale.Decide decides): every node
// samples its autoscaled tasks' cgroups into a rolling average and answers
// the leader's usage RPC from it (node/autoscale/sampling.go); the leader polls,
// decides and writes a changed replica count.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/autoscale"
)

// autoscaleLoop is the leader's autoscaler; it ends with leadership. It
// ticks only while some service is autoscaled: otherwise it waits for a
// state change that may add one, so an idle leader of a cluster without
// autoscaling does not wake every autoscale.Interval for nothing.
func (l *Loop) autoscaleLoop(ctx context.Context) {
	ch, cancel := l.cfg.Store.Subscribe()
	defer cancel()
	hist := map[string][]autoscale.Sample{}
	tick := time.NewTicker(autoscale.Interval)
	defer tick.Stop()
	for {
		var tickCh <-chan time.Time
		if Autoscaled(l.cfg.Store.Services()) {
			tickCh = tick.C
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
			continue
		case <-tickCh:
		}
		l.autoscalePass(ctx, hist, time.Now().UTC())
	}
}

// Autoscaled reports whether any of svcs is one the autoscaler samples.
func Autoscaled(svcs []*api.Service) bool {
	for _, s := range svcs {
		if isAutoscaled(s) {
			return true
		}
	}
	return false
}

func isAutoscaled(s *api.Service) bool {
	return s.Spec.Autoscale != nil && s.Spec.Mode == api.ModeReplicated
}

// autoscalePass gathers usage once and applies the decision for every
// autoscaled service.
func (l *Loop) autoscalePass(ctx context.Context, hist map[string][]autoscale.Sample, now time.Time) {
	var svcs []*api.Service
	for _, s := range l.cfg.Store.Services() {
		if isAutoscaled(s) {
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
	owner := map[string]string{} // task ID → the node it runs on
	nodes := map[string]bool{}
	for _, s := range svcs {
		for _, t := range l.cfg.Store.TasksByService(s.ID) {
			if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
				tasks[s.ID] = append(tasks[s.ID], t)
				owner[t.ID] = t.NodeID
				nodes[t.NodeID] = true
			}
		}
	}
	usage := l.gatherUsage(ctx, nodes, owner)
	for _, s := range svcs {
		if sample, ok := autoscale.ServiceSample(s, tasks[s.ID], usage, now); ok {
			hist[s.ID] = autoscale.TrimSamples(append(hist[s.ID], sample), now, s.Spec.Autoscale)
		}
		var last time.Time
		if s.AutoscaleStatus != nil {
			last = s.AutoscaleStatus.At
		}
		d := autoscale.Decide(autoscale.Input{
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
		_, err := l.cfg.Raft.Apply(wctx, &command.UpdateService{Service: next, ExpectVersion: s.Version})
		cancel()
		if err != nil {
			if !errors.Is(err, consensus.ErrVersionMismatch) && ctx.Err() == nil {
				l.log.Warn("autoscale: could not scale service", "service", s.Name, "replicas", d.Replicas, "err", err)
			}
			continue // the next pass decides again on the new state
		}
		l.log.Info("autoscaled service", "service", s.Name, "from", s.Spec.Replicas, "to", d.Replicas, "reason", d.Reason)
	}
}

// gatherUsage asks every node in nodes (ready ones) for its tasks' usage,
// in parallel; a node that does not answer in time contributes nothing,
// and a node's answer counts only for the tasks owner puts on it
// (autoscale.Own).
func (l *Loop) gatherUsage(ctx context.Context, nodes map[string]bool, owner map[string]string) map[string]autoscale.TaskUsage {
	ctx, cancel := context.WithTimeout(ctx, autoscale.PollTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		out = map[string]autoscale.TaskUsage{}
		wg  sync.WaitGroup
	)
	add := func(node string, rep autoscale.Report) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range autoscale.Own(node, rep, owner) {
			out[u.TaskID] = u
		}
	}
	for id := range nodes {
		if id == l.cfg.NodeID {
			add(id, l.cfg.LocalUsage())
			continue
		}
		n, err := l.cfg.Store.Node(id)
		if err != nil || n.Status != api.NodeReady {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := l.cfg.Usage(ctx, joinHostPort(n.Addr, n.ClusterPort))
			if err != nil {
				l.log.Debug("autoscale: no usage from node", "node_id", api.ShortID(n.ID), "err", err)
				return
			}
			add(n.ID, rep)
		}()
	}
	wg.Wait()
	return out
}
