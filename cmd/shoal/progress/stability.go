package progress

import (
	"fmt"
	"time"
)

// Stability is the last step of a create or scale wait: docker's "verify:
// waiting N seconds to verify that tasks are stable". A service whose
// tasks reach running and die a second later (a bad command, a missing
// file, a crash at start) was reported "converged, 1/1 running" with exit
// code 0 by a wait that stopped at the first poll that saw them running.
// Now each running task of the current spec must have been seen running
// for the spec's monitor period (--update-monitor, 5s by default; 0 skips
// this); a task that dies meanwhile makes the service unconverged again,
// and its replacement starts its own period. Tasks already running at the
// first poll (those a scale keeps) count as stable at once. Updates and
// rollbacks need none of this: the leader's update monitor watches their
// tasks and the wait follows its update status.
//
// Pure: the caller passes the clock.
type Stability struct {
	seen  map[string]time.Time
	polls int
}

// Settled reports whether conv, done by Assess at now, has been stable
// long enough, and if not, the note to print while it waits.
func (s *Stability) Settled(conv Convergence, now time.Time) (bool, string) {
	first := s.polls == 0
	s.polls++
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	for _, id := range conv.RunningIDs {
		if _, ok := s.seen[id]; !ok {
			at := now
			if first {
				at = now.Add(-conv.Monitor)
			}
			s.seen[id] = at
		}
	}
	if !conv.Done || conv.Monitor <= 0 {
		return conv.Done, ""
	}
	var wait time.Duration
	for _, id := range conv.RunningIDs {
		wait = max(wait, conv.Monitor-now.Sub(s.seen[id]))
	}
	if wait <= 0 {
		return true, ""
	}
	return false, fmt.Sprintf("%s: verifying that tasks are stable (monitor %s)", conv.Name, conv.Monitor)
}
