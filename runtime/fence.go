package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/runtime/supclient"
	"github.com/shoal-org/shoal/runtime/supervisor"
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

// Lease is one container's lease for FenceAll: as Fence's after (0
// disarms) and grace (0: the container's own stop grace).
type Lease struct {
	ID    string
	After time.Duration
	Grace time.Duration
}

// FenceAll sets every lease in ls as Fence would, in one request to the
// supervisor (supclient.Leases), and returns the error of each lease not
// set, by its ID in ls (nil when all were).
//
// Why: the reconciler renews each at-most-once container's lease on every
// pass (2 s); one round trip per container per pass cost the node's
// supervisor a connection and a goroutine per container, all for a
// deadline it could take in a batch. A supervisor of the release before
// the batch (it outlives an agent upgrade while it holds containers) gets
// one "fence" per lease, as before.
func (r *Runtime) FenceAll(ctx context.Context, ls []Lease) map[string]error {
	failed := map[string]error{}
	if len(ls) == 0 {
		return nil
	}
	if err := r.waitReady(ctx); err != nil {
		for _, l := range ls {
			failed[l.ID] = err
		}
		return failed
	}
	if !r.sup.TakesLeases() {
		for i, l := range ls {
			err := r.Fence(ctx, l.ID, l.After, l.Grace)
			if errors.Is(err, supclient.ErrNoLease) {
				// A supervisor without any lease: the rest would be
				// refused too, one round trip each.
				for _, l := range ls[i:] {
					failed[l.ID] = err
				}
				break
			}
			if err != nil {
				failed[l.ID] = err
			}
		}
		return nilIfEmpty(failed)
	}
	batch := make([]supervisor.Lease, 0, len(ls))
	ref := make(map[string]string, len(ls)) // container ID -> the ID in ls
	for _, l := range ls {
		sl, err := r.supLease(l)
		if err != nil {
			failed[l.ID] = err
			continue
		}
		ref[sl.ID] = l.ID
		batch = append(batch, sl)
	}
	refused, err := r.sup.Leases(ctx, batch)
	for _, sl := range batch {
		switch {
		case err != nil:
			failed[ref[sl.ID]] = fmt.Errorf("fence container %s: %w", ShortID(sl.ID), err)
		case refused[sl.ID] != nil:
			failed[ref[sl.ID]] = fmt.Errorf("fence container %s: %w", ShortID(sl.ID), refused[sl.ID])
		}
	}
	return nilIfEmpty(failed)
}

// supLease resolves l's container and fills in its stop signal and grace.
func (r *Runtime) supLease(l Lease) (supervisor.Lease, error) {
	c, err := r.lookup(l.ID)
	if err != nil {
		return supervisor.Lease{}, err
	}
	r.mu.Lock()
	id := c.rec.ID
	sig := stopSignal(c.rec.Spec.StopSignal)
	grace := l.Grace
	if grace == 0 {
		grace = c.rec.Spec.StopGrace
	}
	r.mu.Unlock()
	if grace == 0 {
		grace = r.cfg.StopGrace
	}
	sl := supervisor.Lease{ID: id, Signal: int(sig)}
	if l.After > 0 {
		sl.FenceAfterMs = max(l.After.Milliseconds(), 1)
		sl.StopGraceMs = max(grace.Milliseconds(), 0)
	}
	return sl, nil
}

func nilIfEmpty(m map[string]error) map[string]error {
	if len(m) == 0 {
		return nil
	}
	return m
}
