package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/rmtree"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// Remove deletes a container and everything it owns: runc state, cgroup,
// rootfs mount, upper dir, bundle and run dir, netns, logs. A running container is
// killed first when force is set, otherwise ErrRunning is returned.
//
// The state is checked under the container's lifecycle lock, after any
// start in flight has finished. A caller that decided to remove a container
// from an earlier List (a created or exited container it thinks is stale)
// must pass force=false: with force, a container that started meanwhile is
// SIGKILLed (exit code 137).
func (r *Runtime) Remove(ctx context.Context, idOrName string, force bool) error {
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return err
	}
	return r.remove(ctx, c, idOrName, force)
}

// remove is Remove once c is found; it does not wait for Run to be ready,
// so adoption can auto-remove --rm containers.
func (r *Runtime) remove(ctx context.Context, c *container, idOrName string, force bool) error {
	c.op.Lock()
	defer c.op.Unlock()
	r.mu.Lock()
	state, removed := c.rec.State, c.removed
	r.mu.Unlock()
	if removed {
		return fmt.Errorf("remove %s: %w", idOrName, ErrNotFound)
	}
	if state == api.ContainerRunning {
		if !force {
			return fmt.Errorf("remove %s: %w", idOrName, ErrRunning)
		}
		// Kill right away, as `docker rm -f` does.
		if err := r.stopLocked(ctx, c, -1); err != nil {
			return fmt.Errorf("kill %s: %w", idOrName, err)
		}
	}
	if err := r.awaitRelease(ctx, c); err != nil {
		return fmt.Errorf("remove %s: %w", idOrName, err)
	}
	r.mu.Lock()
	id, name := c.rec.ID, c.rec.Name
	c.removed = true
	stopHealth := c.stopHealth
	c.stopHealth = nil
	select {
	case <-c.done:
	default:
		close(c.done) // a created container that never ran: release waiters
	}
	r.mu.Unlock()
	if stopHealth != nil {
		stopHealth()
	}
	c.saveMu.Lock() // wait for an in-flight save
	c.saveMu.Unlock()
	r.sup.Forget(id)
	err := r.cleanup(ctx, id, r.pathsOf(c))
	r.mu.Lock()
	ev := Event{ContainerID: id, Name: name, TaskID: c.rec.Spec.TaskID, State: EventRemoved, ExitCode: c.rec.ExitCode, Time: time.Now().UTC()}
	delete(r.containers, id)
	if r.names[name] == id {
		delete(r.names, name)
	}
	r.mu.Unlock()
	r.events.Publish(ev)
	if err != nil {
		return fmt.Errorf("remove %s: %w", ShortID(id), err)
	}
	return nil
}

// cleanup deletes every resource of container id (its files at p), best
// effort, and reports what failed. The run dir goes before the container's
// dir, whose record keeps the container known until the end.
func (r *Runtime) cleanup(ctx context.Context, id string, p layout.Paths) error {
	var errs []error
	if err := r.runcDelete(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("runc delete: %w", err))
	}
	if r.cfg.Network != nil {
		if err := r.cfg.Network.Detach(ctx, id, p.Netns); err != nil {
			errs = append(errs, fmt.Errorf("detach network: %w", err))
		}
	}
	if err := netns.Remove(p.Netns); err != nil {
		errs = append(errs, err)
	}
	if err := rootfs.Unmount(p.Rootfs); err != nil {
		errs = append(errs, err)
	}
	if p.Etc != "" {
		if err := rootfs.Unmount(p.Etc); err != nil {
			errs = append(errs, err)
		}
	}
	removeCgroups(filepath.Join(r.cfg.CgroupParent, id))
	for _, d := range []string{p.Run, p.Dir} {
		if d == "" {
			continue
		}
		// The container wrote upper/ as it liked: however deep, with a few
		// descriptors, never following its links (runtime/rmtree).
		if err := rmtree.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the container's cgroup in every hierarchy; runc
// delete normally did it already.
func removeCgroups(rel string) {
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	_ = os.Remove(filepath.Join("/sys/fs/cgroup", rel)) // pure v2
	for _, e := range ents {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), rel))
	}
}
