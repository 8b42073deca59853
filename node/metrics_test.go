package node

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoal-org/shoal/node/metrics"
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

func (lintCollector) Describe(ch chan<- *prometheus.Desc) { stateCollector{}.Describe(ch) }
func (lintCollector) Collect(ch chan<- prometheus.Metric) {
	for d, s := range lintSamples {
		ch <- prometheus.MustNewConstMetric(d, s.kind, 1, s.labels...)
	}
}

// TestMetricsLint runs promlint over every metric the agent exports, and
// checks the names carry the shoal_ prefix.
func TestMetricsLint(t *testing.T) {
	if len(lintSamples) != len(stateDescriptions) {
		t.Fatalf("lintSamples covers %d of %d scrape-time metrics: add the new ones", len(lintSamples), len(stateDescriptions))
	}
	a := newTestAgent(t)
	m := a.obs.m()
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

// TestMetricsEndpoint serves an agent's registry (no cluster) and parses
// the answer with the Prometheus text parser.
func TestMetricsEndpoint(t *testing.T) {
	a := newTestAgent(t)
	a.cfg.MetricsAddr = "127.0.0.1:0"
	addr, stop, err := a.serveMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// A second agent on the same address is refused with a clear error.
	b := newTestAgent(t)
	b.cfg.MetricsAddr = addr
	if _, _, err := b.serveMetrics(); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("second bind of %s: %v", addr, err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	for _, name := range []string{"shoal_node_info", "shoal_scheduler_plan_duration_seconds", "shoal_raft_commit_duration_seconds", "go_goroutines"} {
		if mfs[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "shoal_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestConfigMetricsAddr(t *testing.T) {
	base := DefaultConfig()
	base.DataDir = t.TempDir()
	base.AdvertiseAddr = "127.0.0.1"
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9323": true, ":9323": true, "[::1]:9323": true,
		"localhost:9323": false, "127.0.0.1": false, "127.0.0.1:99999": false, "127.0.0.1:x": false,
	} {
		c := base
		c.MetricsAddr = addr
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("--metrics-addr %q: err=%v, want ok=%v", addr, err, ok)
		}
	}
}
