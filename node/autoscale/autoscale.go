// Package autoscale holds the pure parts of autoscaling: a node's rolling
// usage of its task containers (Sampler) and the report it answers the
// leader with, the leader's per-service sample (ServiceSample) and history
// bound (TrimSamples), and the reason a scaled event carries (Reason). The
// decision itself is autoscale.Decide; the agent (node) runs the
// sampling and deciding loops and the RPC.
package autoscale

// Autoscaling (`--autoscale min=2,max=10,cpu=70%`).
//
// Usage stays off Raft. Every node samples the cgroups of its running task
// containers once a second (only tasks of services that autoscale) and keeps
// a rolling average per task over the last Window: CPU cores used
// (the difference of two cumulative readings over the time between them) and
// the mean memory in use. The leader asks the nodes that run such tasks for
// those averages every Interval (RPC `usage`, answered from memory,
// a few hundred bytes per node), turns them into one sample per service —
// the average over its running tasks of CPU as a share of the task's CPU
// limit (of one core without a limit) and memory as a share of its memory
// limit — and keeps a short history per service in memory. The decision is
// autoscale.Decide, pure; only a change of the replica count is
// written (UpdateService, with the reason in Service.AutoscaleStatus, and a
// log line). A new leader starts with an empty history, so it waits a full
// delay before its first change: a leader change never causes one.

import (
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
)

const (
	// SampleInterval is how often a node reads its tasks' cgroups.
	SampleInterval = time.Second
	// Window is the span of a task's rolling average.
	Window = 10 * time.Second
	// Interval is how often the leader gathers usage and decides.
	Interval = 3 * time.Second
	// PollTimeout bounds one round of usage RPCs.
	PollTimeout = 2 * time.Second
	// MaxSamples bounds a service's history on the leader.
	MaxSamples = 1024
)

// TaskUsage is one task's rolling average, as a node reports it.
type TaskUsage struct {
	TaskID      string  `json:"task_id"`
	CPUCores    float64 `json:"cpu_cores"`
	MemoryBytes uint64  `json:"memory_bytes"`
}

// Report is a node's answer to the leader's usage RPC.
type Report struct {
	Tasks []TaskUsage `json:"tasks"`
}

// Own is the part of node's report the leader may believe: the usage of
// tasks the state assigns to node (owner maps task ID to node ID). A node
// speaks only for itself: without this, one node (a valid certificate is
// all it takes) could report any usage for the tasks of others and drive
// an autoscaled service to its max or min.
func Own(node string, rep Report, owner map[string]string) []TaskUsage {
	var out []TaskUsage
	for _, u := range rep.Tasks {
		if owner[u.TaskID] == node && node != "" {
			out = append(out, u)
		}
	}
	return out
}

// Point is one cgroup reading of a task's container.
type Point struct {
	At       time.Time
	CPUNanos uint64
	Memory   uint64
}

// Sampler holds the recent readings of this node's task containers.
// The zero value is ready; it is safe for concurrent use.
type Sampler struct {
	mu    sync.Mutex
	tasks map[string]*taskPoints // by task ID
}

type taskPoints struct {
	containerID string
	points      []Point
}

// Record adds a reading of a task's container, starting over when the
// container changed or its counter went back (a restart).
func (s *Sampler) Record(taskID, containerID string, p Point) {
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
	tp.points = AddPoint(tp.points, p, Window)
}

// KeepOnly forgets the tasks not in live.
func (s *Sampler) KeepOnly(live map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.tasks {
		if !live[id] {
			delete(s.tasks, id)
		}
	}
}

// Report returns the rolling average of every task with enough readings.
func (s *Sampler) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := Report{Tasks: []TaskUsage{}}
	for id, tp := range s.tasks {
		if cores, mem, ok := Rolling(tp.points); ok {
			rep.Tasks = append(rep.Tasks, TaskUsage{TaskID: id, CPUCores: cores, MemoryBytes: mem})
		}
	}
	return rep
}

// AddPoint appends p and drops readings older than window before it.
// A counter that went back (a new container) starts a new series.
func AddPoint(points []Point, p Point, window time.Duration) []Point {
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

// Rolling is the average CPU (cores) between the first and last
// reading and the mean memory; ok is false with fewer than two readings.
func Rolling(points []Point) (cores float64, mem uint64, ok bool) {
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

// ServiceSample averages the usage of a service's running tasks as shares
// of each task's limits (percent). ok is false when no task reported.
func ServiceSample(s *api.Service, running []*api.Task, usage map[string]TaskUsage, now time.Time) (Sample, bool) {
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
		return Sample{}, false
	}
	return Sample{
		At: now, Replicas: s.Spec.Replicas, Tasks: n,
		CPUPercent: cpu / float64(n), MemoryPercent: mem / float64(n),
	}, true
}

// TrimSamples keeps the samples the decision can still look at: those of
// the longer delay (plus a few intervals), at most MaxSamples.
func TrimSamples(samples []Sample, now time.Time, cfg *api.AutoscaleConfig) []Sample {
	keep := max(cfg.ScaleUpDelay, cfg.ScaleDownDelay, DefaultScaleUpDelay)
	if cfg.ScaleDownDelay == 0 {
		keep = max(keep, DefaultScaleDownDelay)
	}
	from := now.Add(-keep - 3*Interval)
	i := 0
	for i < len(samples) && samples[i].At.Before(from) {
		i++
	}
	if len(samples)-i > MaxSamples {
		i = len(samples) - MaxSamples
	}
	return append(samples[:0], samples[i:]...)
}

// Reason is the reason of the autoscaler's decision that changed service
// was into s, or "" when s carries no new decision (node/events puts it in
// the service's scaled event).
func Reason(was, s *api.Service) string {
	st := s.AutoscaleStatus
	if st == nil || st.To != s.Spec.Replicas || st.From != was.Spec.Replicas {
		return ""
	}
	if w := was.AutoscaleStatus; w != nil && w.At.Equal(st.At) {
		return ""
	}
	return st.Reason
}
