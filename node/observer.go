package node

// The agent's event history and metrics (node/events, node/metrics), and
// the wiring of --metrics-addr: node/collector serves the registry and
// reads the agent's state at scrape time through collector.Config.

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-org/shoal/node/collector"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/metrics"
)

// observer holds an agent's event history and its metrics. The zero value
// is ready: both are made on first use, so loops may report into them
// whether or not --metrics-addr is set.
type observer struct {
	once sync.Once
	h    *events.Hub
	mm   *metrics.Set
}

func (o *observer) init() {
	o.once.Do(func() {
		o.h = events.NewHub(time.Now)
		o.mm = metrics.New()
	})
}

func (o *observer) hub() *events.Hub { o.init(); return o.h }
func (o *observer) m() *metrics.Set  { o.init(); return o.mm }

// registry gathers every metric of the agent (collector.Registry).
func (a *Agent) registry() *prometheus.Registry {
	return collector.Registry(collector.Config{
		NodeID: a.id.NodeID, Hostname: a.id.Hostname,
		Runtime: func() collector.Runtime {
			if a.rt == nil {
				return nil
			}
			return a.rt
		},
		Cluster: func() (collector.Cluster, bool) {
			cl, err := a.clusterOrErr()
			if err != nil {
				return collector.Cluster{}, false
			}
			return collector.Cluster{Store: cl.Store, Raft: cl.Raft, Members: cl.Members,
				RaftDir: filepath.Join(instance.Dir(a.cfg.DataDir), "raft")}, true
		},
	}, a.obs.m())
}

// serveMetrics binds --metrics-addr and serves /metrics until stop is
// called (collector.Serve).
func (a *Agent) serveMetrics() (addr string, stop func(), err error) {
	return collector.Serve(a.cfg.MetricsAddr, a.registry(), a.log)
}
