package node

// Autoscaling (`--autoscale min=2,max=10,cpu=70%`).
//
// Usage stays off Raft. Every node samples the cgroups of its running task
// containers once a second (only tasks of services that autoscale) and keeps
// a rolling average per task over the last usageWindow: CPU cores used
// (the difference of two cumulative readings over the time between them) and
// the mean memory in use. The leader asks the nodes that run such tasks for
// those averages every autoscaleInterval (RPC `usage`, answered from memory,
// a few hundred bytes per node), turns them into one sample per service —
// the average over its running tasks of CPU as a share of the task's CPU
// limit (of one core without a limit) and memory as a share of its memory
// limit — and keeps a short history per service in memory. The decision is
// scheduler.DecideAutoscale, pure; only a change of the replica count is
// written (UpdateService, with the reason in Service.AutoscaleStatus, and a
// log line). A new leader starts with an empty history, so it waits a full
// delay before its first change: a leader change never causes one.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/scheduler"
)

const (
	// usageSampleInterval is how often a node reads its tasks' cgroups.
	usageSampleInterval = time.Second
	// usageWindow is the span of a task's rolling average.
	usageWindow = 10 * time.Second
	// autoscaleInterval is how often the leader gathers usage and decides.
	autoscaleInterval = 3 * time.Second
	// usagePollTimeout bounds one round of usage RPCs.
	usagePollTimeout = 2 * time.Second
	// maxAutoscaleSamples bounds a service's history on the leader.
	maxAutoscaleSamples = 1024
)

// rpcUsage asks a node for the rolling usage of its task containers.
const rpcUsage = "usage"

// taskUsage is one task's rolling average, as a node reports it.
type taskUsage struct {
	TaskID      string  `json:"task_id"`
	CPUCores    float64 `json:"cpu_cores"`
	MemoryBytes uint64  `json:"memory_bytes"`
}

// usageReport is the answer to rpcUsage.
type usageReport struct {
	Tasks []taskUsage `json:"tasks"`
}

// usagePoint is one cgroup reading of a task's container.
type usagePoint struct {
	At       time.Time
	CPUNanos uint64
	Memory   uint64
}

// usageSampler holds the recent readings of this node's task containers.
// The zero value is ready; it is safe for concurrent use.
type usageSampler struct {
	mu    sync.Mutex
	tasks map[string]*taskPoints // by task ID
}

type taskPoints struct {
	containerID string
	points      []usagePoint
}

// record adds a reading of a task's container, starting over when the
// container changed or its counter went back (a restart).
func (s *usageSampler) record(taskID, containerID string, p usagePoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks == nil {
		s.tasks = map[string]*taskPoints{}
	}
	tp := s.tasks[taskID]
	if tp == nil || tp.containerID != containerID {
		tp = &taskPoints{containerID: containerID}
		s.tasks[taskID] = tp
	}
	tp.points = addUsagePoint(tp.points, p, usageWindow)
}

// keepOnly forgets the tasks not in live.
func (s *usageSampler) keepOnly(live map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.tasks {
		if !live[id] {
			delete(s.tasks, id)
		}
	}
}

// report returns the rolling average of every task with enough readings.
func (s *usageSampler) report() usageReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := usageReport{Tasks: []taskUsage{}}
	for id, tp := range s.tasks {
		if cores, mem, ok := rollingUsage(tp.points); ok {
			rep.Tasks = append(rep.Tasks, taskUsage{TaskID: id, CPUCores: cores, MemoryBytes: mem})
		}
	}
	return rep
}

// addUsagePoint appends p and drops readings older than window before it.
// A counter that went back (a new container) starts a new series.
func addUsagePoint(points []usagePoint, p usagePoint, window time.Duration) []usagePoint {
	if n := len(points); n > 0 && (p.CPUNanos < points[n-1].CPUNanos || !p.At.After(points[n-1].At)) {
		points = points[:0]
	}
	points = append(points, p)
	from := p.At.Add(-window)
	i := 0
	for i < len(points)-1 && points[i].At.Before(from) {
		i++
	}
	return append(points[:0], points[i:]...)
}

// rollingUsage is the average CPU (cores) between the first and last
// reading and the mean memory; ok is false with fewer than two readings.
func rollingUsage(points []usagePoint) (cores float64, mem uint64, ok bool) {
	if len(points) < 2 {
		return 0, 0, false
	}
	first, last := points[0], points[len(points)-1]
	dt := last.At.Sub(first.At)
	if dt <= 0 || last.CPUNanos < first.CPUNanos {
		return 0, 0, false
	}
	cores = float64(last.CPUNanos-first.CPUNanos) / float64(dt.Nanoseconds())
	var sum uint64
	for _, p := range points {
		sum += p.Memory
	}
	return cores, sum / uint64(len(points)), true
}

// usageLoop samples this node's task containers of autoscaled services
// every usageSampleInterval while there are any; while there are none it
// sleeps until the state changes (an idle node runs no sampling timer).
func (a *Agent) usageLoop(ctx context.Context, cl *cluster) {
	storeCh, cancel := cl.store.Subscribe()
	defer cancel()
	tick := time.NewTicker(usageSampleInterval)
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
	defer cl.usage.keepOnly(live)
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
		cl.usage.record(c.TaskID, c.ID, usagePoint{At: time.Now(), CPUNanos: st.CPUNanos, Memory: st.MemoryBytes})
	}
	return true
}

// handleUsageRPC answers rpcUsage.
func (a *Agent) handleUsageRPC() (usageReport, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return usageReport{}, err
	}
	return cl.usage.report(), nil
}

// autoscaleLoop is the leader's autoscaler; it ends with leadership.
func (a *Agent) autoscaleLoop(ctx context.Context, cl *cluster) {
	hist := map[string][]scheduler.AutoscaleSample{}
	tick := time.NewTicker(autoscaleInterval)
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
		if sample, ok := serviceSample(s, tasks[s.ID], usage, now); ok {
			hist[s.ID] = trimSamples(append(hist[s.ID], sample), now, s.Spec.Autoscale)
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
func (a *Agent) gatherUsage(ctx context.Context, cl *cluster, nodes map[string]bool) map[string]taskUsage {
	ctx, cancel := context.WithTimeout(ctx, usagePollTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		out = map[string]taskUsage{}
		wg  sync.WaitGroup
	)
	add := func(rep usageReport) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range rep.Tasks {
			out[u.TaskID] = u
		}
	}
	for id := range nodes {
		if id == a.id.NodeID {
			add(cl.usage.report())
			continue
		}
		n, err := cl.store.Node(id)
		if err != nil || n.Status != api.NodeReady {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rep usageReport
			if err := callRPC(ctx, joinHostPort(n.Addr, n.ClusterPort), cl.client, rpcUsage, nil, &rep, nil); err != nil {
				a.log.Debug("autoscale: no usage from node", "node_id", shortID(n.ID), "err", err)
				return
			}
			add(rep)
		}()
	}
	wg.Wait()
	return out
}

// serviceSample averages the usage of a service's running tasks as shares
// of each task's limits (percent). ok is false when no task reported.
func serviceSample(s *api.Service, running []*api.Task, usage map[string]taskUsage, now time.Time) (scheduler.AutoscaleSample, bool) {
	var cpu, mem float64
	n := 0
	for _, t := range running {
		u, ok := usage[t.ID]
		if !ok {
			continue
		}
		lim := t.Spec.Resources.Limits
		cores := 1.0
		if lim.NanoCPUs > 0 {
			cores = float64(lim.NanoCPUs) / 1e9
		}
		cpu += 100 * u.CPUCores / cores
		if lim.MemoryBytes > 0 {
			mem += 100 * float64(u.MemoryBytes) / float64(lim.MemoryBytes)
		}
		n++
	}
	if n == 0 {
		return scheduler.AutoscaleSample{}, false
	}
	return scheduler.AutoscaleSample{
		At: now, Replicas: s.Spec.Replicas, Tasks: n,
		CPUPercent: cpu / float64(n), MemoryPercent: mem / float64(n),
	}, true
}

// trimSamples keeps the samples the decision can still look at: those of
// the longer delay (plus a few intervals), at most maxAutoscaleSamples.
func trimSamples(samples []scheduler.AutoscaleSample, now time.Time, cfg *api.AutoscaleConfig) []scheduler.AutoscaleSample {
	keep := max(cfg.ScaleUpDelay, cfg.ScaleDownDelay, scheduler.DefaultScaleUpDelay)
	if cfg.ScaleDownDelay == 0 {
		keep = max(keep, scheduler.DefaultScaleDownDelay)
	}
	from := now.Add(-keep - 3*autoscaleInterval)
	i := 0
	for i < len(samples) && samples[i].At.Before(from) {
		i++
	}
	if len(samples)-i > maxAutoscaleSamples {
		i = len(samples) - maxAutoscaleSamples
	}
	return append(samples[:0], samples[i:]...)
}

// autoscaleReason is the reason of the autoscaler's decision that changed
// service was into s, or "" when s carries no new decision (events.go puts
// it in the service's scaled event).
func autoscaleReason(was, s *api.Service) string {
	st := s.AutoscaleStatus
	if st == nil || st.To != s.Spec.Replicas || st.From != was.Spec.Replicas {
		return ""
	}
	if w := was.AutoscaleStatus; w != nil && w.At.Equal(st.At) {
		return ""
	}
	return st.Reason
}
