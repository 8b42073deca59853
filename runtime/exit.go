package runtime

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/cgstats"
	"github.com/shoal-org/shoal/runtime/exitrecord"
	"github.com/shoal-org/shoal/runtime/initproc"
)

// watch waits, on a goroutine owned by Run, for the supervisor to report
// that c's init (pid) ended, then records the exit. Should the supervisor
// lose the container, it falls back to watchPidfd. If Run's context ends
// first, the container is left running for the next agent.
func (r *Runtime) watch(c *container, pid int) {
	sl := r.sup.Slot(c.rec.ID)
	r.watched(c)
	r.spawn(func() {
		select {
		case <-sl.Done:
			r.finishExit(c, pid)
		case <-sl.Lost:
			if fileExists(filepath.Join(r.pathsOf(c).Dir, exitRecordFile)) {
				r.finishExit(c, pid)
				return
			}
			r.log.Warn("the supervisor lost a container: its exit code will not be known", "id", ShortID(c.rec.ID), "pid", pid)
			r.watchPidfd(c, pid)
		case <-r.runCtx.Done():
		}
	})
}

// watched opens a new run's release barrier (see awaitRelease); finishExit
// closes it.
func (r *Runtime) watched(c *container) {
	r.mu.Lock()
	c.released = make(chan struct{})
	r.mu.Unlock()
}

// watchPidfd waits, on a goroutine owned by Run, for the process pid to
// end, for containers no supervisor holds, then records the exit.
func (r *Runtime) watchPidfd(c *container, pid int) {
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		r.log.Warn("pidfd_open of container", "id", ShortID(c.rec.ID), "pid", pid, "err", err)
		r.spawn(func() { r.finishExit(c, pid) })
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	ok := r.spawn(func() {
		defer f.Close()
		stop := context.AfterFunc(r.runCtx, func() { _ = f.SetReadDeadline(time.Now()) })
		defer stop()
		rc, err := f.SyscallConn()
		if err != nil {
			r.log.Error("pidfd conn", "pid", pid, "err", err)
			return
		}
		exited := false
		err = rc.Read(func(fd uintptr) bool {
			exited = initproc.Exited(int(fd))
			return exited
		})
		if !exited {
			if r.runCtx.Err() == nil {
				r.log.Error("watch container", "pid", pid, "err", err)
			}
			return
		}
		r.finishExit(c, pid)
	})
	if !ok {
		f.Close()
	}
}

// finishExit records that the container's init (pid) ended, with the exit
// status from the supervisor's exit record (or, for a container started by
// an older Shoal, its init's state file), else 137 and an error saying why.
// It publishes the exit before it releases the network and deletes the runc
// state: the exit is what the node reports and what the scheduler waits for
// to start a replacement, and under a burst of stops each `runc delete`
// queues for the CPU behind the others (tens of milliseconds apiece on two
// cores). What must not overlap that cleanup (a restart, a remove) waits on
// c.released. Then, for --rm containers, it removes the container. It does
// nothing unless c is running as pid, so a second report of one exit is
// harmless.
func (r *Runtime) finishExit(c *container, pid int) {
	r.mu.Lock()
	if c.rec.State != api.ContainerRunning || c.rec.Pid != pid || c.removed {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	id := c.rec.ID
	p := r.pathsOf(c)
	code, errMsg, finishedAt := exitrecord.Outcome(p.Dir, p.State)
	ctx := context.WithoutCancel(r.runCtx)
	oom := cgstats.OOMKilled(filepath.Join(r.cfg.CgroupParent, id)) // before runc delete removes the cgroup
	r.mu.Lock()
	c.rec.Exited(code, errMsg, finishedAt, oom)
	stopHealth := c.stopHealth
	c.stopHealth = nil
	released := c.released
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	remove := c.rec.Spec.Remove
	r.mu.Unlock()
	if stopHealth != nil {
		stopHealth()
	}
	if err := r.save(c); err != nil {
		r.log.Warn("save record", "id", ShortID(id), "err", err)
	}
	r.log.Info("container exited", "id", ShortID(id), "exit_code", code)
	r.emit(c)
	r.release(ctx, c)
	// Forget this run's exit slot before the barrier opens: a restart
	// waiting on it makes the next run's slot, which must survive us.
	r.sup.Forget(id)
	if released != nil {
		close(released)
	}
	if remove {
		if err := r.remove(ctx, c, id, false); err != nil && !errors.Is(err, ErrNotFound) {
			r.log.Warn("auto-remove", "id", ShortID(id), "err", err)
		}
	}
}

// runcDelete force-deletes runc's container id, unless runc holds no state
// for it: the exit of a run already deleted it, and a `runc delete` process
// that finds nothing still costs tens of milliseconds of CPU (one per
// removed container in a rolling update).
func (r *Runtime) runcDelete(ctx context.Context, id string) error {
	if _, err := os.Lstat(filepath.Join(r.cfg.RuncRoot, id)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil && !isNotExist(err) {
		return err
	}
	return nil
}

// release deletes runc's state of c's ended run and releases its network.
func (r *Runtime) release(ctx context.Context, c *container) {
	id := c.rec.ID
	if err := r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil && !isNotExist(err) {
		r.log.Warn("runc delete", "id", ShortID(id), "err", err)
	}
	if r.cfg.Network != nil {
		if err := r.cfg.Network.Detach(ctx, id, r.pathsOf(c).Netns); err != nil {
			r.log.Warn("detach network", "id", ShortID(id), "err", err)
		}
	}
}

// awaitRelease waits until the cleanup of c's last run (finishExit's runc
// delete and network release) is over, so that a restart or a remove does
// not race it: a restart's new network attachment must not be released by
// the old run's cleanup. A container not watched in this process has none
// to wait for.
func (r *Runtime) awaitRelease(ctx context.Context, c *container) error {
	r.mu.Lock()
	rel := c.released
	r.mu.Unlock()
	if rel == nil {
		return nil
	}
	select {
	case <-rel:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
