// Package collector serves --metrics-addr: the registry of every metric of
// the agent, the /metrics server, and the collector that reads the agent's
// state at scrape time (node/metrics holds the instruments, the go-metrics
// sink and the container network counters).
package collector

// Most of what an operator wants to see is state the agent already holds,
// so it is read at scrape time by one Collector (State) — the
// replica of the store, the Raft and gossip views, the runtime's containers
// and their cgroups — instead of instrumenting every loop. What is only
// visible while it happens is timed where it happens (metrics.Set).
// TestMetricsLint runs promlint over a scrape.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/hostguard"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/runtime/cgstats"
)

// Runtime is what the collector reads of this node's containers.
type Runtime interface {
	List() []api.Container
	Stats(id string) (cgstats.Stats, error)
}

// Cluster is the running cluster instance the collector reads.
type Cluster struct {
	Store   *consensus.Store
	Raft    *raftnode.Raft
	Members *membership.Membership
	// RaftDir is where the Raft log store lives (its size is a metric).
	RaftDir string
}

// Config is what State reads at scrape time. The funcs are called on every
// scrape and must not block.
type Config struct {
	NodeID, Hostname string
	// Runtime returns this node's runtime, nil while there is none.
	Runtime func() Runtime
	// Cluster returns the running cluster, false while the node is in none.
	Cluster func() (Cluster, bool)
}

// Registry gathers every metric of the agent: the Go runtime's and the
// process's, the state read at scrape time (cfg), the instruments of m and
// the go-metrics sink's.
func Registry(cfg Config, m *metrics.Set) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		State{cfg: cfg},
	)
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(metrics.SinkCollectors()...)
	return reg
}

// idleTimeout closes a kept-alive connection that sends no next request;
// without it (net/http's default is none) every connection a peer opened
// and left idle held a descriptor and a goroutine of the agent for good. A
// variable for tests.
var idleTimeout = 60 * time.Second

// Serve binds listenAddr (--metrics-addr) and serves reg at /metrics until
// stop is called; stop returns once the server has stopped. The listener is
// bound before it returns (addr is its address), so a taken port fails the
// agent's start with a clear error.
func Serve(listenAddr string, reg *prometheus.Registry, log *slog.Logger) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return "", nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	metrics.InstallSink()
	mux := http.NewServeMux()
	// A scrape walks every container's cgroup and the whole state: a few at
	// a time, each bounded, so repeated scrapes (any container can reach
	// the address) cannot pile work up in the agent.
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 20 * time.Second}))
	// On a loopback address, only to loopback names (DNS rebinding).
	srv := &http.Server{Handler: hostguard.Handler(hostguard.LoopbackAddr(ln.Addr()), mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: idleTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
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

	descNodes        = prometheus.NewDesc("shoal_nodes", "Nodes of the cluster by status.", []string{"status"}, nil)
	descServices     = prometheus.NewDesc("shoal_services", "Services of the cluster.", nil, nil)
	descTasks        = prometheus.NewDesc("shoal_tasks", "Tasks of the cluster by observed state.", []string{"state"}, nil)
	descNodeTasks    = prometheus.NewDesc("shoal_node_tasks", "Tasks assigned to this node by observed state.", []string{"state"}, nil)
	descPendingTasks = prometheus.NewDesc("shoal_scheduler_pending_tasks", "Tasks that should run but are not placed on a node yet.", nil, nil)
	descLBBackends   = prometheus.NewDesc("shoal_lb_backends", "Backends this node's load balancer sends a service's traffic to, per network (empty: the default one).", []string{"service", "network"}, nil)
	descOverlayPeers = prometheus.NewDesc("shoal_overlay_peers", "Other nodes this node's overlay has a route, neighbour and FDB entry for.", nil, nil)
	descContainers   = prometheus.NewDesc("shoal_containers", "Containers on this node by state.", []string{"state"}, nil)
	containerLabels  = []string{"service", "task", "container"}
	descContainerCPU = prometheus.NewDesc("shoal_container_cpu_usage_seconds_total", "CPU time a running container used (cgroup).", containerLabels, nil)
	descContainerMem = prometheus.NewDesc("shoal_container_memory_usage_bytes", "Memory a running container uses, page cache included (cgroup).", containerLabels, nil)
	descContainerRx  = prometheus.NewDesc("shoal_container_network_receive_bytes_total", "Bytes a running container received on its interfaces.", containerLabels, nil)
	descContainerTx  = prometheus.NewDesc("shoal_container_network_transmit_bytes_total", "Bytes a running container sent on its interfaces.", containerLabels, nil)
	// StateDescriptions are the metrics State emits.
	StateDescriptions = []*prometheus.Desc{descNodeInfo, descRaftLeader, descRaftTerm, descRaftLast, descRaftCommit,
		descRaftApplied, descRaftVoters, descRaftLogBytes, descGossipMembers, descNodes, descServices, descTasks,
		descNodeTasks, descPendingTasks, descLBBackends, descOverlayPeers, descContainers, descContainerCPU,
		descContainerMem, descContainerRx, descContainerTx}
)

// State reads the agent's state at scrape time. Collect takes no lock the
// agent's loops hold for long: every source is a copy or a snapshot.
type State struct{ cfg Config }

// NewState returns the collector of the state cfg names.
func NewState(cfg Config) State { return State{cfg: cfg} }

// Describe sends StateDescriptions.
func (c State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range StateDescriptions {
		ch <- d
	}
}

// Collect reads the containers, Raft, gossip and the replica once.
func (c State) Collect(ch chan<- prometheus.Metric) {
	a := c.cfg
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descNodeInfo, 1, a.NodeID, a.Hostname)
	cl, inCluster := a.Cluster()

	// Runtime: this node's containers.
	if rt := a.Runtime(); rt != nil {
		byState := map[string]int{api.ContainerCreated: 0, api.ContainerRunning: 0, api.ContainerExited: 0}
		for _, ct := range rt.List() {
			byState[ct.State]++
			if ct.State != api.ContainerRunning {
				continue
			}
			svc, task := "", ""
			if ct.TaskID != "" && inCluster {
				if t, err := cl.Store.Task(ct.TaskID); err == nil {
					svc, task = t.Service, t.Name
				}
			}
			if st, err := rt.Stats(ct.ID); err == nil {
				if st.HasCPU {
					counter(descContainerCPU, float64(st.CPUNanos)/1e9, svc, task, ct.Name)
				}
				if st.HasMemory {
					gauge(descContainerMem, float64(st.MemoryUsageBytes), svc, task, ct.Name)
				}
			}
			if rx, tx, ok := metrics.ReadNetUsage(ct.Pid); ok {
				counter(descContainerRx, float64(rx), svc, task, ct.Name)
				counter(descContainerTx, float64(tx), svc, task, ct.Name)
			}
		}
		for st, n := range byState {
			gauge(descContainers, float64(n), st)
		}
	}
	if !inCluster {
		return
	}

	// Raft.
	leader := 0.0
	if cl.Raft.IsLeader() {
		leader = 1
	}
	gauge(descRaftLeader, leader)
	stats := cl.Raft.Stats()
	for d, key := range map[*prometheus.Desc]string{descRaftTerm: "term", descRaftLast: "last_log_index",
		descRaftCommit: "commit_index", descRaftApplied: "applied_index"} {
		if v, err := strconv.ParseUint(stats[key], 10, 64); err == nil {
			gauge(d, float64(v))
		}
	}
	if servers, err := cl.Raft.Servers(); err == nil {
		gauge(descRaftVoters, float64(countVoters(servers)))
	}
	gauge(descRaftLogBytes, float64(metrics.DirFilesSize(cl.RaftDir)))

	// Gossip, against the nodes of the state.
	snap := cl.Store.Snapshot()
	nodes := snap.Nodes()
	members := cl.Members.MemberStates()
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
		if t.NodeID == a.NodeID {
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
	ns := netplan.Read(snap)
	lbState, _, _ := netplan.Traffic(ns, cl.Members.AliveSet(), a.NodeID)
	for _, s := range lbState.Services {
		gauge(descLBBackends, float64(len(s.Backends)), s.Name, s.Network)
	}
	gauge(descOverlayPeers, float64(len(netplan.OverlayPeers(ns, a.NodeID))))
}

func countVoters(servers []raftnode.Server) int {
	n := 0
	for _, s := range servers {
		if s.Voter {
			n++
		}
	}
	return n
}
