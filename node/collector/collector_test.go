package collector

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/runtime/cgstats"
)

// lintCollector emits one sample of every scrape-time metric, so promlint
// sees all of them without a running cluster.
type lintCollector struct{}

var lintSamples = map[*prometheus.Desc]struct {
	kind   prometheus.ValueType
	labels []string
}{
	descNodeInfo:      {prometheus.GaugeValue, []string{"n1", "h1"}},
	descRaftLeader:    {prometheus.GaugeValue, nil},
	descRaftTerm:      {prometheus.GaugeValue, nil},
	descRaftLast:      {prometheus.GaugeValue, nil},
	descRaftCommit:    {prometheus.GaugeValue, nil},
	descRaftApplied:   {prometheus.GaugeValue, nil},
	descRaftVoters:    {prometheus.GaugeValue, nil},
	descRaftLogBytes:  {prometheus.GaugeValue, nil},
	descGossipMembers: {prometheus.GaugeValue, []string{"alive"}},
	descNodes:         {prometheus.GaugeValue, []string{"ready"}},
	descServices:      {prometheus.GaugeValue, nil},
	descTasks:         {prometheus.GaugeValue, []string{"running"}},
	descNodeTasks:     {prometheus.GaugeValue, []string{"running"}},
	descPendingTasks:  {prometheus.GaugeValue, nil},
	descLBBackends:    {prometheus.GaugeValue, []string{"web", "front"}},
	descOverlayPeers:  {prometheus.GaugeValue, nil},
	descContainers:    {prometheus.GaugeValue, []string{"running"}},
	descContainerCPU:  {prometheus.CounterValue, []string{"web", "web.1", "c1"}},
	descContainerMem:  {prometheus.GaugeValue, []string{"web", "web.1", "c1"}},
	descContainerRx:   {prometheus.CounterValue, []string{"web", "web.1", "c1"}},
	descContainerTx:   {prometheus.CounterValue, []string{"web", "web.1", "c1"}},
}

func (lintCollector) Describe(ch chan<- *prometheus.Desc) { State{}.Describe(ch) }
func (lintCollector) Collect(ch chan<- prometheus.Metric) {
	for d, s := range lintSamples {
		ch <- prometheus.MustNewConstMetric(d, s.kind, 1, s.labels...)
	}
}

// TestMetricsLint runs promlint over every metric the agent exports, and
// checks the names carry the shoal_ prefix.
func TestMetricsLint(t *testing.T) {
	if len(lintSamples) != len(StateDescriptions) {
		t.Fatalf("lintSamples covers %d of %d scrape-time metrics: add the new ones", len(lintSamples), len(StateDescriptions))
	}
	m := metrics.New()
	m.PlanDuration.Observe(0.01)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(metrics.SinkCollectors()...)
	reg.MustRegister(lintCollector{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "shoal_") {
			t.Errorf("metric %s lacks the shoal_ prefix", mf.GetName())
		}
	}
}

// fakeRuntime lists fixed containers; Stats knows only c1.
type fakeRuntime struct{ cs []api.Container }

func (f fakeRuntime) List() []api.Container { return f.cs }
func (f fakeRuntime) Stats(id string) (cgstats.Stats, error) {
	if id != "c1" {
		return cgstats.Stats{}, errors.New("no cgroup")
	}
	return cgstats.Stats{CPUNanos: 2_500_000_000, MemoryUsageBytes: 4096, HasCPU: true, HasMemory: true}, nil
}

// TestStateWithoutCluster: outside a cluster a scrape reports this node and
// its containers, and nothing of Raft, gossip or the replica.
func TestStateWithoutCluster(t *testing.T) {
	rt := fakeRuntime{cs: []api.Container{
		{ID: "c1", Name: "one", State: api.ContainerRunning},
		{ID: "c2", Name: "two", State: api.ContainerRunning},
		{ID: "c3", Name: "three", State: api.ContainerExited},
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewState(Config{NodeID: "n1", Hostname: "h1",
		Runtime: func() Runtime { return rt },
		Cluster: func() (Cluster, bool) { return Cluster{}, false },
	}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			got[key] = v
		}
	}
	want := map[string]float64{
		"shoal_node_info,hostname=h1,node_id=n1":                               1,
		"shoal_containers,state=running":                                       2,
		"shoal_containers,state=exited":                                        1,
		"shoal_containers,state=created":                                       0,
		"shoal_container_cpu_usage_seconds_total,container=one,service=,task=": 2.5,
		"shoal_container_memory_usage_bytes,container=one,service=,task=":      4096,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "shoal_raft") || strings.HasPrefix(k, "shoal_nodes") || strings.HasPrefix(k, "shoal_tasks") {
			t.Errorf("%s reported outside a cluster", k)
		}
	}
	// No runtime yet: only the node's identity.
	reg = prometheus.NewRegistry()
	reg.MustRegister(NewState(Config{NodeID: "n1", Hostname: "h1",
		Runtime: func() Runtime { return nil },
		Cluster: func() (Cluster, bool) { return Cluster{}, false },
	}))
	if mfs, err = reg.Gather(); err != nil || len(mfs) != 1 || mfs[0].GetName() != "shoal_node_info" {
		t.Fatalf("without a runtime: %d families, err %v", len(mfs), err)
	}
}
