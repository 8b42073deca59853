package supervisor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The fence lease: the agent's reconciler stops an at-most-once task when it
// has not heard from a leader for the service's disconnect grace, because by
// then the leader may start its replacement elsewhere (node/taskplan
// FenceActions). A killed or hung agent stops nothing, though, and its
// containers outlive it here: the leader would replace the task while the
// original still ran. So the agent also hands the deadline to the
// supervisor, which outlives it ("fence": Request.FenceAfterMs from now,
// renewed on every reconciler pass). When a deadline passes without a
// renewal the supervisor stops the container itself: the stop signal, then
// SIGKILL after the stop grace, which the leader waits out before it
// replaces the task. FenceAfterMs 0 disarms.

// fenceLocked arms, re-arms or (after 0) disarms c's fence.
func (s *supervisor) fenceLocked(c *supCont, after, grace time.Duration, sig unix.Signal) {
	if c.fence != nil {
		c.fence.Stop()
		c.fence = nil
	}
	if after <= 0 {
		return
	}
	c.fence = time.AfterFunc(after, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.fence == nil || c.exit != nil || c.pid <= 0 || s.byPid[c.pid] != c {
			return // disarmed, renewed since, or already ended
		}
		c.fence = nil
		fmt.Fprintf(os.Stderr, "shoal-supervisor: fence: container %s: its lease of %s was not renewed by the agent: sending %s, SIGKILL after %s\n",
			shortID(c.id), after, unix.SignalName(sig), grace)
		// The init is our child (we are its subreaper) and still in
		// byPid: not reaped, so its pid is not reused yet.
		_ = unix.Kill(c.pid, sig)
		pid := c.pid
		c.fenceKill = time.AfterFunc(grace, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if c.exit == nil && s.byPid[pid] == c {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		})
	})
}

// fence answers a "fence" request.
func (s *supervisor) fence(req Request) error {
	if !ValidName(req.ID) {
		return errors.New("bad fence request: a container id is required")
	}
	if req.FenceAfterMs < 0 || req.StopGraceMs < 0 {
		return errors.New("bad fence request: negative duration")
	}
	sig := unix.Signal(req.Signal)
	if req.Signal == 0 {
		sig = unix.SIGTERM
	}
	if unix.SignalName(sig) == "" {
		return fmt.Errorf("bad fence request: unknown signal %d", req.Signal)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conts[req.ID]
	if c == nil || c.exit != nil {
		if req.FenceAfterMs == 0 {
			return nil // nothing to disarm
		}
		return fmt.Errorf("container %s is not supervised", shortID(req.ID))
	}
	s.fenceLocked(c, time.Duration(req.FenceAfterMs)*time.Millisecond, time.Duration(req.StopGraceMs)*time.Millisecond, sig)
	return nil
}

// stopFenceLocked drops c's fence timers (c ended).
func stopFenceLocked(c *supCont) {
	if c.fence != nil {
		c.fence.Stop()
		c.fence = nil
	}
	if c.fenceKill != nil {
		c.fenceKill.Stop()
		c.fenceKill = nil
	}
}
