package node

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
// calls, routed into histograms by a small sink (hashiSink).
//
// Names follow Prometheus conventions (shoal_ prefix, base units in the
// name, _total for counters); TestMetricsLint runs promlint over a scrape.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-org/shoal/api"
)

// observer holds an agent's event history and its metrics. The zero value
// is ready: both are made on first use, so loops may report into them
// whether or not --metrics-addr is set.
type observer struct {
	once sync.Once
	h    *eventHub
	mm   *metrics
}

func (o *observer) init() {
	o.once.Do(func() {
		o.h = newEventHub(time.Now)
		o.mm = newMetrics()
	})
}

func (o *observer) hub() *eventHub { o.init(); return o.h }
func (o *observer) m() *metrics    { o.init(); return o.mm }

// metrics are the instruments loops report into.
type metrics struct {
	planDuration      prometheus.Histogram
	lbSyncDuration    prometheus.Histogram
	containerStart    prometheus.Histogram
	overlaySyncErrors prometheus.Counter
}

// Buckets for work that takes from a millisecond to tens of seconds.
var durationBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 12) // 1ms … ~60s

func newMetrics() *metrics {
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets})
	}
	return &metrics{
		planDuration:      h("shoal_scheduler_plan_duration_seconds", "Time the leader's scheduler took to compute one plan."),
		lbSyncDuration:    h("shoal_lb_sync_duration_seconds", "Time of one load balancer and DNS sync on this node."),
		containerStart:    h("shoal_container_start_duration_seconds", "Time from a container's creation to its process running."),
		overlaySyncErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_overlay_sync_errors_total", Help: "Overlay peer syncs that failed on this node."}),
	}
}

// timed runs f and records its duration in h.
func timed[T any](h prometheus.Observer, f func() T) T {
	t0 := time.Now()
	defer func() { h.Observe(time.Since(t0).Seconds()) }()
	return f()
}

// observeSince records the time since t0 in h: `defer observeSince(h, time.Now())`.
func observeSince(h prometheus.Observer, t0 time.Time) { h.Observe(time.Since(t0).Seconds()) }

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
			Help: "Time from the leader dispatching a log entry to its commit (leader only).", Buckets: durationBuckets}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_raft_apply_duration_seconds",
			Help: "Time the state machine took to apply one committed log entry.", Buckets: durationBuckets}),
		gossipProbe: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shoal_gossip_probe_duration_seconds",
			Help: "Time of one gossip failure-detector probe, ack or timeout (a round trip when the peer is up).", Buckets: durationBuckets}),
	}
)

// installSink makes hashiSink the global go-metrics sink, once.
func installSink() {
	sinkOnce.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		cfg.TimerGranularity = time.Millisecond
		_, _ = gometrics.NewGlobal(cfg, sink)
	})
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

// registry gathers every metric of the agent.
func (a *Agent) registry() *prometheus.Registry {
	m := a.obs.m()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.planDuration, m.lbSyncDuration, m.containerStart, m.overlaySyncErrors,
		sink.raftCommit, sink.raftApply, sink.gossipProbe,
		stateCollector{a: a},
	)
	return reg
}

// serveMetrics binds --metrics-addr and serves /metrics until stop is
// called; stop returns once the server has stopped. The listener is bound
// before it returns (addr is its address), so a taken port fails the
// agent's start with a clear error.
func (a *Agent) serveMetrics() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return "", nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	installSink()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry(), promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	return ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
		<-done
	}, nil
}

// Descriptions of the metrics read at scrape time.
var (
	descNodeInfo = prometheus.NewDesc("shoal_node_info", "This node's identity (always 1).", []string{"node_id", "hostname"}, nil)

	descRaftLeader   = prometheus.NewDesc("shoal_raft_leader", "1 when this node is the Raft leader, else 0.", nil, nil)
	descRaftTerm     = prometheus.NewDesc("shoal_raft_term", "Current Raft term.", nil, nil)
	descRaftLast     = prometheus.NewDesc("shoal_raft_last_log_index", "Index of the last entry in this node's Raft log.", nil, nil)
	descRaftCommit   = prometheus.NewDesc("shoal_raft_commit_index", "Highest Raft log index known committed.", nil, nil)
	descRaftApplied  = prometheus.NewDesc("shoal_raft_applied_index", "Highest Raft log index applied to this node's state.", nil, nil)
	descRaftVoters   = prometheus.NewDesc("shoal_raft_voters", "Voters in the Raft configuration.", nil, nil)
	descRaftLogBytes = prometheus.NewDesc("shoal_raft_log_size_bytes", "Size on disk of this node's Raft log store.", nil, nil)

	descGossipMembers = prometheus.NewDesc("shoal_gossip_members", "Nodes of the cluster by gossip state as this node sees them.", []string{"state"}, nil)

	descNodes         = prometheus.NewDesc("shoal_nodes", "Nodes of the cluster by status.", []string{"status"}, nil)
	descServices      = prometheus.NewDesc("shoal_services", "Services of the cluster.", nil, nil)
	descTasks         = prometheus.NewDesc("shoal_tasks", "Tasks of the cluster by observed state.", []string{"state"}, nil)
	descNodeTasks     = prometheus.NewDesc("shoal_node_tasks", "Tasks assigned to this node by observed state.", []string{"state"}, nil)
	descPendingTasks  = prometheus.NewDesc("shoal_scheduler_pending_tasks", "Tasks that should run but are not placed on a node yet.", nil, nil)
	descLBBackends    = prometheus.NewDesc("shoal_lb_backends", "Backends this node's load balancer sends a service's traffic to, per network (empty: the default one).", []string{"service", "network"}, nil)
	descOverlayPeers  = prometheus.NewDesc("shoal_overlay_peers", "Other nodes this node's overlay has a route, neighbour and FDB entry for.", nil, nil)
	descContainers    = prometheus.NewDesc("shoal_containers", "Containers on this node by state.", []string{"state"}, nil)
	containerLabels   = []string{"service", "task", "container"}
	descContainerCPU  = prometheus.NewDesc("shoal_container_cpu_usage_seconds_total", "CPU time a running container used (cgroup).", containerLabels, nil)
	descContainerMem  = prometheus.NewDesc("shoal_container_memory_usage_bytes", "Memory a running container uses, page cache included (cgroup).", containerLabels, nil)
	descContainerRx   = prometheus.NewDesc("shoal_container_network_receive_bytes_total", "Bytes a running container received on its interfaces.", containerLabels, nil)
	descContainerTx   = prometheus.NewDesc("shoal_container_network_transmit_bytes_total", "Bytes a running container sent on its interfaces.", containerLabels, nil)
	stateDescriptions = []*prometheus.Desc{descNodeInfo, descRaftLeader, descRaftTerm, descRaftLast, descRaftCommit,
		descRaftApplied, descRaftVoters, descRaftLogBytes, descGossipMembers, descNodes, descServices, descTasks,
		descNodeTasks, descPendingTasks, descLBBackends, descOverlayPeers, descContainers, descContainerCPU,
		descContainerMem, descContainerRx, descContainerTx}
)

// stateCollector reads the agent's state at scrape time. Collect takes no
// lock the agent's loops hold for long: every source is a copy or a
// snapshot.
type stateCollector struct{ a *Agent }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescriptions {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descNodeInfo, 1, a.id.NodeID, a.id.Hostname)
	cl, _ := a.clusterOrErr()

	// Runtime: this node's containers.
	if a.rt != nil {
		byState := map[string]int{api.ContainerCreated: 0, api.ContainerRunning: 0, api.ContainerExited: 0}
		for _, ct := range a.rt.List() {
			byState[ct.State]++
			if ct.State != api.ContainerRunning {
				continue
			}
			svc, task := "", ""
			if ct.TaskID != "" && cl != nil {
				if t, err := cl.store.Task(ct.TaskID); err == nil {
					svc, task = t.Service, t.Name
				}
			}
			u := readContainerUsage(a.cgroupParent(), ct.ID, ct.Pid)
			if u.cpuOK {
				counter(descContainerCPU, u.cpuSeconds, svc, task, ct.Name)
			}
			if u.memOK {
				gauge(descContainerMem, float64(u.memBytes), svc, task, ct.Name)
			}
			if u.netOK {
				counter(descContainerRx, float64(u.rxBytes), svc, task, ct.Name)
				counter(descContainerTx, float64(u.txBytes), svc, task, ct.Name)
			}
		}
		for st, n := range byState {
			gauge(descContainers, float64(n), st)
		}
	}
	if cl == nil {
		return
	}

	// Raft.
	leader := 0.0
	if cl.raft.IsLeader() {
		leader = 1
	}
	gauge(descRaftLeader, leader)
	stats := cl.raft.Stats()
	for d, key := range map[*prometheus.Desc]string{descRaftTerm: "term", descRaftLast: "last_log_index",
		descRaftCommit: "commit_index", descRaftApplied: "applied_index"} {
		if v, err := strconv.ParseUint(stats[key], 10, 64); err == nil {
			gauge(d, float64(v))
		}
	}
	if servers, err := cl.raft.Servers(); err == nil {
		gauge(descRaftVoters, float64(countVoters(servers)))
	}
	gauge(descRaftLogBytes, float64(dirFilesSize(filepath.Join(clusterDir(a.cfg.DataDir), "raft"))))

	// Gossip, against the nodes of the state.
	snap := cl.store.Snapshot()
	nodes := snap.Nodes()
	members := map[string]memberlist.NodeStateType{}
	for _, m := range cl.members.ml.Members() {
		members[m.Name] = m.State
	}
	gm := map[string]int{"alive": 0, "suspect": 0, "dead": 0}
	for _, st := range members {
		if st == memberlist.StateSuspect {
			gm["suspect"]++
		} else {
			gm["alive"]++
		}
	}
	nodeStatus := map[string]int{api.NodeReady: 0, api.NodeDown: 0}
	for _, n := range nodes {
		nodeStatus[n.Status]++
		if _, ok := members[n.ID]; !ok {
			gm["dead"]++
		}
	}
	for st, n := range gm {
		gauge(descGossipMembers, float64(n), st)
	}
	for st, n := range nodeStatus {
		gauge(descNodes, float64(n), st)
	}

	// Scheduler's view: services and tasks of the whole cluster.
	gauge(descServices, float64(len(snap.Services())))
	all, mine := map[string]int{}, map[string]int{}
	for st := range api.TaskStateOrder {
		all[st], mine[st] = 0, 0
	}
	pending := 0
	for _, t := range snap.Tasks() {
		all[t.State]++
		if t.NodeID == a.id.NodeID {
			mine[t.State]++
		}
		if t.DesiredState == api.TaskRunning && (t.NodeID == "" || t.State == api.TaskNew) {
			pending++
		}
	}
	for st, n := range all {
		gauge(descTasks, float64(n), st)
	}
	for st, n := range mine {
		gauge(descNodeTasks, float64(n), st)
	}
	gauge(descPendingTasks, float64(pending))

	// Data plane as this node would program it now.
	ns := readNetState(snap)
	lbState, _, _ := trafficState(ns, cl.members.aliveSet(), a.id.NodeID)
	for _, s := range lbState.Services {
		gauge(descLBBackends, float64(len(s.Backends)), s.Name, s.Network)
	}
	gauge(descOverlayPeers, float64(len(overlayPeers(ns, a.id.NodeID))))
}

// containerUsage is what the cgroups and the container's network
// namespace say about one container; each part may be missing.
type containerUsage struct {
	cpuSeconds       float64
	memBytes         uint64
	rxBytes, txBytes uint64
	cpuOK, memOK     bool
	netOK            bool
}

// readContainerUsage reads the container's cgroup under parent — cgroup v1
// controllers first (this platform is hybrid: runc puts containers in the
// v1 hierarchies), then the unified v2 layout — and its interfaces'
// counters from /proc/PID/net/dev.
func readContainerUsage(parent, id string, pid int) containerUsage {
	var u containerUsage
	rel := filepath.Join(parent, id)
	if v, ok := readUint(filepath.Join("/sys/fs/cgroup/cpuacct", rel, "cpuacct.usage")); ok {
		u.cpuSeconds, u.cpuOK = float64(v)/1e9, true
	} else if v, ok := readKeyed(filepath.Join("/sys/fs/cgroup", rel, "cpu.stat"), "usage_usec"); ok {
		u.cpuSeconds, u.cpuOK = float64(v)/1e6, true
	}
	if v, ok := readUint(filepath.Join("/sys/fs/cgroup/memory", rel, "memory.usage_in_bytes")); ok {
		u.memBytes, u.memOK = v, true
	} else if v, ok := readUint(filepath.Join("/sys/fs/cgroup", rel, "memory.current")); ok {
		u.memBytes, u.memOK = v, true
	}
	if pid > 0 {
		if b, err := readCapped(filepath.Join("/proc", strconv.Itoa(pid), "net", "dev"), 64<<10); err == nil {
			u.rxBytes, u.txBytes, u.netOK = parseNetDev(string(b))
		}
	}
	return u
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

func readUint(path string) (uint64, bool) {
	b, err := readCapped(path, 64)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

func readCapped(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// dirFilesSize sums the sizes of the regular files directly in dir.
func dirFilesSize(dir string) int64 {
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
