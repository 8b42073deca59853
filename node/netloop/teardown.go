package netloop

import (
	"log/slog"

	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// Teardown removes the data plane of a node that left its cluster: n's
// default overlay (dropped from n first, so nothing attaches to it any
// more), the load balancer's rules, and a kernel WireGuard device (the
// userspace one stops by itself when its socket goes with the cluster
// directory; a kernel link has no process to notice). Best effort: a
// failure is logged.
func Teardown(n *Attacher, log *slog.Logger) {
	if ov := n.Default(); ov != nil {
		n.SetDefault(nil)
		if err := ov.Teardown(); err != nil {
			log.Warn("remove the overlay after leaving the cluster", "err", err)
		}
	}
	if err := wireguard.DeleteKernelDevice("", wireguard.DefaultWireGuardName); err != nil {
		log.Warn("remove the WireGuard device after leaving the cluster", "err", err)
	}
	if l, err := lb.New(lb.DefaultConfig()); err == nil {
		if err := l.Teardown(); err != nil {
			log.Warn("remove the load balancer rules after leaving the cluster", "err", err)
		}
	}
}
