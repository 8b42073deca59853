package runtime

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

// Stop sends SIGTERM to the container, waits up to grace, then SIGKILLs
// it; grace 0 means the container's StopGrace or else Config.StopGrace, a
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
		r.waitInitReady(ctx, pid, done, deadline)
		if err := r.runc.Kill(ctx, id, int(unix.SIGTERM), nil); err != nil && !isNotRunning(err) {
			r.log.Warn("runc kill TERM", "id", ShortID(id), "err", err)
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

// waitInitReady waits until the container's init (pid) handles SIGTERM,
// the container exits, or deadline passes. A PID 1 drops the signals it has
// no handler for, so a SIGTERM sent before the init has blocked it would be
// lost and the stop would cost the whole grace period.
func (r *Runtime) waitInitReady(ctx context.Context, pid int, done <-chan struct{}, deadline time.Time) {
	for time.Now().Before(deadline) && !initReady(pid) {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// initReady reports whether the init pid takes SIGTERM: it blocks, catches
// or ignores it (/proc/PID/status), or it has started its child, which tini
// does only after blocking every signal (while it waits in sigtimedwait the
// kernel shows those signals unblocked, so the child is the lasting sign).
// A process that is gone counts as ready.
func initReady(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	bit := uint64(1) << (uint(unix.SIGTERM) - 1)
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "SigBlk" && k != "SigCgt" && k != "SigIgn") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&bit != 0 {
			return true
		}
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(kids))) > 0
}
