package runtime

import (
	"context"
	"path/filepath"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/containeropts"
	"github.com/shoal-org/shoal/runtime/initproc"
)

// Stop sends SIGTERM (or the container's StopSignal) to the container,
// waits up to grace, then SIGKILLs it; grace 0 means the container's StopGrace or else Config.StopGrace, a
// negative grace kills at once. It returns once the container has exited
// (its exit code recorded). Stopping a container that is not running is a
// no-op.
func (r *Runtime) Stop(ctx context.Context, idOrName string, grace time.Duration) (api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return api.Container{}, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := r.stopLocked(ctx, c, grace); err != nil {
		return api.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.apiLocked(), nil
}

func (r *Runtime) stopLocked(ctx context.Context, c *container, grace time.Duration) error {
	r.mu.Lock()
	id, state, done, pid := c.rec.ID, c.rec.State, c.done, c.rec.Pid
	sig := stopSignal(c.rec.Spec.StopSignal)
	if grace == 0 {
		grace = c.rec.Spec.StopGrace
	}
	r.mu.Unlock()
	if state != api.ContainerRunning {
		return nil
	}
	if grace == 0 {
		grace = r.cfg.StopGrace
	}
	if grace > 0 {
		deadline := time.Now().Add(grace)
		initproc.WaitReady(ctx, pid, done, deadline)
		// Straight to the init (one pidfd) rather than through `runc
		// kill`, a process start per stop: an update of N tasks stops N
		// containers at once, on the CPU their replacements start on.
		// shoal-init passes every signal ParseSignal takes on to the
		// command (runtime/init).
		if err := initproc.Signal(pid, r.cgroupOf(id), sig); err != nil {
			if err := r.runc.Kill(ctx, id, int(sig), nil); err != nil && !isNotRunning(err) {
				r.log.Warn("runc kill", "signal", sig, "id", ShortID(id), "err", err)
			}
		}
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-done:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.runDone:
			return ErrClosed
		}
	}
	if err := r.runc.Kill(ctx, id, int(unix.SIGKILL), &runc.KillOpts{All: true}); err != nil && !isNotRunning(err) {
		r.log.Warn("runc kill KILL", "id", ShortID(id), "err", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.runDone:
		return ErrClosed
	}
}

// stopSignal is the signal a stop sends first: s, else (empty, or not a
// signal ParseSignal takes, which validation refused before) SIGTERM.
func stopSignal(s string) unix.Signal {
	if s == "" {
		return unix.SIGTERM
	}
	n, _, err := containeropts.ParseSignal(s)
	if err != nil {
		return unix.SIGTERM
	}
	return unix.Signal(n)
}

// cgroupOf is the cgroup path of container id (BuildSpec's CgroupsPath), as
// /proc/PID/cgroup lists it.
func (r *Runtime) cgroupOf(id string) string {
	return filepath.Join("/", r.cfg.CgroupParent, id)
}
