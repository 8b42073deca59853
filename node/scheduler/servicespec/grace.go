package servicespec

import (
	"time"

	"github.com/shoal-org/shoal/api"
)

// DefaultDisconnectGrace is how long tasks of a down node are kept for it
// when the service does not say (ServiceSpec.DisconnectGrace 0).
const DefaultDisconnectGrace = 60 * time.Second

// DisconnectGrace returns the service's disconnect grace period: how long
// the tasks of a down node are kept for it, and how long a node that hears
// from no leader keeps running at-most-once tasks.
func DisconnectGrace(spec api.ServiceSpec) time.Duration {
	if spec.DisconnectGrace > 0 {
		return spec.DisconnectGrace
	}
	return DefaultDisconnectGrace
}
