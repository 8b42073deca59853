// Package initproc talks to a container's init process directly, by pid,
// where the runtime would otherwise start a `runc kill`: whether the init
// takes SIGTERM yet (Ready, WaitReady), and sending it a signal through a pidfd once
// it is sure the pid is still that init's (Signal); and whether it has
// ended, through its pidfd (Exited).
//
// It exists apart from the runtime because both are questions about one
// process, answered from /proc and pidfds, and both are where a mistake
// costs: a SIGTERM sent before the init handles it is dropped (a PID 1 has
// no default action), so a stop would wait out its grace period; and a
// pid is reused once the supervisor reaps the init, so a signal sent
// without the check could reach a stranger.
package initproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WaitReady waits until the container's init (pid) handles SIGTERM,
// the container exits, or deadline passes. A PID 1 drops the signals it has
// no handler for, so a SIGTERM sent before the init has blocked it would be
// lost and the stop would cost the whole grace period.
func WaitReady(ctx context.Context, pid int, done <-chan struct{}, deadline time.Time) {
	for time.Now().Before(deadline) && !Ready(pid) {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Ready reports whether the init pid takes SIGTERM: it is no longer
// runc's init, and it blocks, catches or ignores it (statusTakesTERM), or
// it has started its child, which the init does only after blocking every
// signal (while it waits in sigtimedwait the kernel shows those signals
// unblocked, so the child is the lasting sign).
// A process that is gone counts as ready.
func Ready(pid int) bool {
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

// ErrNotInit: the process behind a recorded pid is not (or no longer) the
// container's init.
var ErrNotInit = errors.New("not the container's init")

// Signal sends sig to the process pid if it is the init of the
// container whose cgroup is cgroup, without `runc kill`. A pid is reused
// once its process is reaped (the supervisor reaps inits at once, before the
// agent hears of the exit), so the check runs on a pidfd: the process the
// pidfd holds is in cgroup, and is still unreaped after that read (so the
// read was of that process), and only then gets the signal. Any doubt is an
// error and nothing is sent; the caller falls back to runc kill.
func Signal(pid int, cgroup string, sig unix.Signal) error {
	if pid <= 0 {
		return ErrNotInit
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
		return fmt.Errorf("pid %d: %w", pid, ErrNotInit)
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

// Exited reports whether the process behind pidfd has ended.
func Exited(pidfd int) bool {
	n, _ := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 0)
	return n > 0
}
