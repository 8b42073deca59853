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

// fence answers a "fence" request: one container's lease. The agents of
// this release send "leases"; "fence" stays for an older agent, which a
// supervisor of a newer release outlives after a rollback (it holds the
// containers, so it is not replaced with the agent).
func (s *supervisor) fence(req Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaseLocked(Lease{ID: req.ID, FenceAfterMs: req.FenceAfterMs, StopGraceMs: req.StopGraceMs, Signal: req.Signal})
}

// leases answers a "leases" request: every lease of one reconciler pass,
// under one lock, so that the agent's renewals cost one round trip a pass
// rather than one per at-most-once container. It returns the error of
// each lease it refused, by container ID (nil when none).
func (s *supervisor) leases(ls []Lease) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var failed map[string]string
	for _, l := range ls {
		if err := s.leaseLocked(l); err != nil {
			if failed == nil {
				failed = map[string]string{}
			}
			failed[l.ID] = err.Error()
		}
	}
	return failed
}

// leaseLocked checks one lease and arms, re-arms or disarms it.
func (s *supervisor) leaseLocked(l Lease) error {
	if !ValidName(l.ID) {
		return errors.New("bad fence request: a container id is required")
	}
	if l.FenceAfterMs < 0 || l.StopGraceMs < 0 {
		return errors.New("bad fence request: negative duration")
	}
	sig := unix.Signal(l.Signal)
	if l.Signal == 0 {
		sig = unix.SIGTERM
	}
	if unix.SignalName(sig) == "" {
		return fmt.Errorf("bad fence request: unknown signal %d", l.Signal)
	}
	c := s.conts[l.ID]
	if c == nil || c.exit != nil {
		if l.FenceAfterMs == 0 {
			return nil // nothing to disarm
		}
		return fmt.Errorf("container %s is not supervised", shortID(l.ID))
	}
	s.fenceLocked(c, time.Duration(l.FenceAfterMs)*time.Millisecond, time.Duration(l.StopGraceMs)*time.Millisecond, sig)
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
