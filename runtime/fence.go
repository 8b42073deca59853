package runtime

import (
	"context"
	"fmt"
	"time"
)

// Fence hands the supervisor, which outlives the agent, a deadline for a
// running container: unless Fence is called again for it within after, the
// supervisor stops it (its stop signal, then SIGKILL after grace, the
// container's own stop grace when 0), as the agent itself would. The
// reconciler renews it on every pass for the containers of at-most-once
// tasks, so that a killed or hung agent cannot leave one running after the
// leader has replaced it elsewhere. after 0 disarms the lease.
func (r *Runtime) Fence(ctx context.Context, idOrName string, after, grace time.Duration) error {
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return err
	}
	r.mu.Lock()
	id := c.rec.ID
	sig := stopSignal(c.rec.Spec.StopSignal)
	if grace == 0 {
		grace = c.rec.Spec.StopGrace
	}
	r.mu.Unlock()
	if grace == 0 {
		grace = r.cfg.StopGrace
	}
	if err := r.sup.Fence(ctx, id, after, grace, sig); err != nil {
		return fmt.Errorf("fence container %s: %w", ShortID(id), err)
	}
	return nil
}
