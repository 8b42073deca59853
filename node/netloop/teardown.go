package netloop

import (
	"log/slog"

	"github.com/shoal-org/shoal/lb"
)

// Teardown removes the data plane of a node that left its cluster: n's
// default overlay (dropped from n first, so nothing attaches to it any
// more) and the load balancer's rules. Best effort: a failure is logged.
func Teardown(n *Attacher, log *slog.Logger) {
	if ov := n.Default(); ov != nil {
		n.SetDefault(nil)
		if err := ov.Teardown(); err != nil {
			log.Warn("remove the overlay after leaving the cluster", "err", err)
		}
	}
	if l, err := lb.New(lb.DefaultConfig()); err == nil {
		if err := l.Teardown(); err != nil {
			log.Warn("remove the load balancer rules after leaving the cluster", "err", err)
		}
	}
}
