package node

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

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
