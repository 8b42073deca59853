// Package metrics holds the instruments the agent's loops report into, the
// sink that routes the hashicorp libraries' go-metrics calls into
// histograms, and the readers of a container's cgroup and network
// counters. The agent (node) serves them at --metrics-addr together with
// the collector that reads its state at scrape time.
package metrics

// Prometheus metrics at --metrics-addr (off by default).
//
// Most of what an operator wants to see is state the agent already holds,
// so it is read at scrape time by one Collector (stateCollector) — the
// replica of the store, the Raft and gossip views, the runtime's containers
// and their cgroups — instead of instrumenting every loop. What is only
// visible while it happens is timed where it happens, one line at the call
// site: a scheduling plan, a load-balancer sync, an overlay peer sync
// error, a container start (eventsLoop). Raft's commit and apply latency and
// memberlist's probe time come from the hashicorp libraries' own go-metrics
// calls, routed into histograms by a small sink (hashiSink, InstallSink).
//
// Names follow Prometheus conventions (shoal_ prefix, base units in the
// name, _total for counters); TestMetricsLint runs promlint over a scrape.

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Set is the instruments loops report into; New makes one per agent.
type Set struct {
	PlanDuration      prometheus.Histogram
	LBSyncDuration    prometheus.Histogram
	ContainerStart    prometheus.Histogram
	OverlaySyncErrors prometheus.Counter
}

// Buckets for work that takes from a millisecond to tens of seconds.
var DurationBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 12) // 1ms … ~60s

// New returns a fresh set of instruments (none registered anywhere).
func New() *Set {
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: DurationBuckets})
	}
	return &Set{
		PlanDuration:      h("shoal_scheduler_plan_duration_seconds", "Time the leader's scheduler took to compute one plan."),
		LBSyncDuration:    h("shoal_lb_sync_duration_seconds", "Time of one load balancer and DNS sync on this node."),
		ContainerStart:    h("shoal_container_start_duration_seconds", "Time from a container's creation to its process running."),
		OverlaySyncErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_overlay_sync_errors_total", Help: "Overlay peer syncs that failed on this node."}),
	}
}

// Collectors returns the set's instruments, to register.
func (m *Set) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.PlanDuration, m.LBSyncDuration, m.ContainerStart, m.OverlaySyncErrors}
}

// Timed runs f and records its duration in h.
func Timed[T any](h prometheus.Observer, f func() T) T {
	t0 := time.Now()
	defer func() { h.Observe(time.Since(t0).Seconds()) }()
	return f()
}

// ObserveSince records the time since t0 in h: `defer ObserveSince(h, time.Now())`.
func ObserveSince(h prometheus.Observer, t0 time.Time) { h.Observe(time.Since(t0).Seconds()) }

// hashiSink receives the go-metrics calls of hashicorp/raft and memberlist
// (process-wide: go-metrics has one global sink) and keeps the few that
// answer an operator's questions. Every other key is dropped.
type hashiSink struct {
	gometrics.BlackholeSink
	raftCommit  prometheus.Histogram
	raftApply   prometheus.Histogram
	gossipProbe prometheus.Histogram
}

var (
	sinkOnce sync.Once
	sink     = &hashiSink{
		raftCommit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_raft_commit_duration_seconds",
			Help: "Time from the leader dispatching a log entry to its commit (leader only).", Buckets: DurationBuckets}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_raft_apply_duration_seconds",
			Help: "Time the state machine took to apply one committed log entry.", Buckets: DurationBuckets}),
		gossipProbe: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_gossip_probe_duration_seconds",
			Help: "Time of one gossip failure-detector probe, ack or timeout (a round trip when the peer is up).", Buckets: DurationBuckets}),
	}
)

// InstallSink makes hashiSink the global go-metrics sink, once. It is safe
// to call from every agent of a process.
func InstallSink() {
	sinkOnce.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		cfg.TimerGranularity = time.Millisecond
		_, _ = gometrics.NewGlobal(cfg, sink)
	})
}

// SinkCollectors returns the histograms the sink fills, to register. They
// are process-wide, as go-metrics' sink is.
func SinkCollectors() []prometheus.Collector {
	return []prometheus.Collector{sink.raftCommit, sink.raftApply, sink.gossipProbe}
}

func (s *hashiSink) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

// AddSampleWithLabels gets timings in milliseconds (TimerGranularity).
func (s *hashiSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	var h prometheus.Histogram
	switch strings.Join(key, ".") {
	case "raft.commitTime":
		h = s.raftCommit
	case "raft.fsm.apply":
		h = s.raftApply
	case "memberlist.probeNode":
		h = s.gossipProbe
	default:
		return
	}
	h.Observe(float64(val) / 1000)
}

// ReadNetUsage sums the byte counters of a container's interfaces (but
// loopback) from /proc/PID/net/dev. Its CPU and memory come from the
// runtime's cgroup reader (runtime/cgstats), the one the autoscaler uses.
func ReadNetUsage(pid int) (rx, tx uint64, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	b, err := readCapped(filepath.Join("/proc", strconv.Itoa(pid), "net", "dev"), 64<<10)
	if err != nil {
		return 0, 0, false
	}
	return parseNetDev(string(b))
}

// parseNetDev sums the byte counters of every interface but loopback in
// the text of /proc/net/dev.
func parseNetDev(s string) (rx, tx uint64, ok bool) {
	for _, line := range strings.Split(s, "\n") {
		name, rest, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rx, tx, ok = rx+r, tx+t, true
	}
	return rx, tx, ok
}

func readCapped(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// DirFilesSize sums the sizes of the regular files directly in dir.
func DirFilesSize(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	return total
}
