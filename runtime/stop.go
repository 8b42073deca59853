package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		// Straight to the init (one pidfd) rather than through `runc
		// kill`, a process start per stop: an update of N tasks stops N
		// containers at once, on the CPU their replacements start on.
		if err := signalInit(pid, r.cgroupOf(id), unix.SIGTERM); err != nil {
			if err := r.runc.Kill(ctx, id, int(unix.SIGTERM), nil); err != nil && !isNotRunning(err) {
				r.log.Warn("runc kill TERM", "id", ShortID(id), "err", err)
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

// initReady reports whether the init pid takes SIGTERM: it is no longer
// runc's init, and it blocks, catches or ignores it (statusTakesTERM), or
// it has started its child, which the init does only after blocking every
// signal (while it waits in sigtimedwait the kernel shows those signals
// unblocked, so the child is the lasting sign).
// A process that is gone counts as ready.
func initReady(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	if ready, known := statusTakesTERM(string(b)); known {
		return ready
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(kids))) > 0
}

// statusTakesTERM reads /proc/PID/status: not ready while the process is
// still runc's own init (a Go program: it catches everything, then execs
// the container's init, and a signal sent now is lost), ready when SIGTERM
// is blocked, caught or ignored; otherwise unknown.
func statusTakesTERM(status string) (ready, known bool) {
	bit := uint64(1) << (uint(unix.SIGTERM) - 1)
	for _, l := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		if k == "Name" && strings.HasPrefix(strings.TrimSpace(v), "runc:[") {
			return false, true
		}
		if k != "SigBlk" && k != "SigCgt" && k != "SigIgn" {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&bit != 0 {
			return true, true
		}
	}
	return false, false
}

// errNotInit: the process behind a recorded pid is not (or no longer) the
// container's init.
var errNotInit = errors.New("not the container's init")

// cgroupOf is the cgroup path of container id (BuildSpec's CgroupsPath), as
// /proc/PID/cgroup lists it.
func (r *Runtime) cgroupOf(id string) string {
	return filepath.Join("/", r.cfg.CgroupParent, id)
}

// signalInit sends sig to the process pid if it is the init of the
// container whose cgroup is cgroup, without `runc kill`. A pid is reused
// once its process is reaped (the supervisor reaps inits at once, before the
// agent hears of the exit), so the check runs on a pidfd: the process the
// pidfd holds is in cgroup, and is still unreaped after that read (so the
// read was of that process), and only then gets the signal. Any doubt is an
// error and nothing is sent; the caller falls back to runc kill.
func signalInit(pid int, cgroup string, sig unix.Signal) error {
	if pid <= 0 {
		return errNotInit
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("cgroup of %d: %w", pid, err)
	}
	if !inCgroup(string(b), cgroup) {
		return fmt.Errorf("pid %d: %w", pid, errNotInit)
	}
	// Still the process the pidfd holds (the pid was not reused between
	// the open and the read).
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// inCgroup reports whether a /proc/PID/cgroup listing puts the process in
// cgroup (in any hierarchy: v1 lines "N:controllers:/path", v2 "0::/path").
func inCgroup(listing, cgroup string) bool {
	for _, l := range strings.Split(listing, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && parts[2] == cgroup {
			return true
		}
	}
	return false
}
